//! The SQLite store behind the [`Backend`] interface: one database in WAL mode, written
//! by one actor and read by others, each on its own thread.
//!
//! - [`db`]: the schema and every statement, as plain methods of [`Db`].
//! - [`select`]: the reads of `GET /logs` (filters, text search, totals, pages).
//! - [`borrowed`]: the writer's insert statements, binding text without copying it.
//! - [`writer`]: the actor that owns the write connection; group commit of queued
//!   batches, retention in between, the live feed after each commit.
//! - [`checkpointer`]: the actor that copies the WAL into the database, off the
//!   writer's path.
//! - [`reader`]: the actors that own the read connections and answer queries within
//!   their deadlines.

pub mod borrowed;
pub mod checkpointer;
pub mod db;
pub mod reader;
pub mod select;
pub mod writer;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::Arbiter;
use anyhow::Context as _;

use self::checkpointer::Checkpointer;
use self::db::Db;
use self::reader::Readers;
use self::writer::Writer;
use crate::config::AggregatorConfig;
use crate::metrics::Metrics;
use crate::query::LogQuery;
use crate::record::Record;
use crate::store::{Answer, Backend, Counts, Feed, FeedSender, Health, Inserted, Page, StoreError};

/// What the writer reports and `/health` reads.
#[derive(Debug)]
pub struct Status {
    writable: AtomicBool,
}

impl Status {
    pub fn set_writable(&self, writable: bool) {
        self.writable.store(writable, Ordering::Relaxed);
    }
}

/// The running SQLite store: its actors' addresses and their threads.
pub struct Sqlite {
    writer: actix::Addr<Writer>,
    readers: Readers,
    status: Arc<Status>,
    feed: FeedSender,
    metrics: Metrics,
    /// Stopped and joined by [`Backend::stop`].
    arbiters: Mutex<Vec<Arbiter>>,
}

impl Sqlite {
    /// Opens (creating when missing) the database in `DATA_DIR` and starts its actors.
    pub fn start(config: &AggregatorConfig, metrics: &Metrics) -> anyhow::Result<Sqlite> {
        let dir = &config.data_dir;
        let writer_db = Db::open_writer(dir, config.sync_mode)
            .with_context(|| format!("cannot open the store in DATA_DIR={}", dir.display()))?;
        let stored = writer_db.stored()?;
        let checkpoint_db = Db::open_checkpointer(dir, config.sync_mode)
            .context("cannot open the store's checkpoint connection")?;
        let mut reader_dbs = Vec::with_capacity(config.reader_threads);
        for _ in 0..config.reader_threads {
            reader_dbs.push(Db::open_reader(dir).context("cannot open a store reader")?);
        }
        log::info!(
            data_dir = dir.display().to_string().as_str(),
            records = stored,
            sqlite = Db::sqlite_version(),
            sync_mode = format!("{:?}", config.sync_mode).to_lowercase().as_str();
            "Store opened."
        );
        let status = Arc::new(Status {
            writable: AtomicBool::new(true),
        });
        let feed = FeedSender::default();
        let writer_arbiter = Arbiter::new();
        let writer = Writer::start(
            &writer_arbiter.handle(),
            writer_db,
            status.clone(),
            feed.clone(),
            metrics.clone(),
            config.retention,
        );
        let checkpoint_arbiter = Arbiter::new();
        Checkpointer::start(&checkpoint_arbiter.handle(), checkpoint_db);
        let (readers, reader_arbiters) = Readers::start(reader_dbs, metrics);
        let mut arbiters = vec![writer_arbiter, checkpoint_arbiter];
        arbiters.extend(reader_arbiters);
        Ok(Sqlite {
            writer,
            readers,
            status,
            feed,
            metrics: metrics.clone(),
            arbiters: Mutex::new(arbiters),
        })
    }
}

impl Backend for Sqlite {
    fn ingest(&self, records: Vec<Record>) -> Answer<Inserted> {
        let sent = self.writer.send(writer::Ingest(records));
        Box::pin(async move { sent.await.unwrap_or(Err(StoreError::Unavailable("writer"))) })
    }

    fn query(&self, query: LogQuery, deadline: Instant) -> Answer<Page> {
        let (reader, held) = self.readers.pick();
        let sent = reader.send(reader::Query {
            query,
            deadline,
            asked: Instant::now(),
        });
        Box::pin(async move {
            let answer = sent.await.unwrap_or(Err(StoreError::Unavailable("reader")));
            drop(held);
            answer
        })
    }

    fn count(&self, deadline: Instant) -> Answer<Counts> {
        let (reader, held) = self.readers.pick();
        let sent = reader.send(reader::Count {
            deadline,
            asked: Instant::now(),
        });
        Box::pin(async move {
            let answer = sent.await.unwrap_or(Err(StoreError::Unavailable("reader")));
            drop(held);
            answer
        })
    }

    fn clear(&self) -> Answer<u64> {
        let sent = self.writer.send(writer::Clear);
        Box::pin(async move { sent.await.unwrap_or(Err(StoreError::Unavailable("writer"))) })
    }

    fn health(&self) -> Health {
        Health {
            writable: self.status.writable.load(Ordering::Relaxed) && self.writer.connected(),
            stored: self.metrics.records_stored.get().max(0) as u64,
            running: self.writer.connected() && self.readers.connected(),
            problems: Vec::new(),
        }
    }

    fn subscribe(&self) -> Feed {
        self.feed.subscribe()
    }

    fn stop(&self) {
        let arbiters =
            std::mem::take(&mut *self.arbiters.lock().unwrap_or_else(|e| e.into_inner()));
        for arbiter in arbiters {
            arbiter.stop();
            let _ = arbiter.join();
        }
    }
}
