//! The embedded log store, built for logs: a write-ahead log with group commit, a
//! memory buffer, and immutable zstd-compressed Parquet segments, behind the
//! [`Backend`] interface.
//!
//! In the order a record meets them:
//! - [`writer`]: the actor that owns the [`engine`]: dedup, log, buffer, flushes,
//!   clear; its upkeep (compaction, retention) in `engine/upkeep.rs`.
//! - [`dedup`]: exact deduplication by `event_id`: ranges per stream, hashes per
//!   segment confirmed against the text.
//! - [`wal`]: the write-ahead log and its replay.
//! - [`memory`]: the buffer's chunks and the [`memory::View`] queries read.
//! - [`flusher`]: the actor that writes segments and merges small ones.
//! - [`segment`]: the Parquet files, written and read (only the pages a query needs);
//!   [`index`]: what their footers say about each row group and its blocks.
//! - [`reader`] and [`search`]: queries over the buffer and the segments together;
//!   [`filter`]: a query as a predicate, and text search's words; [`scan`]: the pages
//!   of a time range that Loki's API reads; `bodies`: the stored texts of a page's rows;
//!   `lookup`: the rows of a row group that hold a request id.
//! - [`recover`]: start-up after any crash; [`import`]: a SQLite store brought over.
//!
//! Layout of `DATA_DIR`: `wal/*.wal`, `segments/*.parquet`, `damaged/` for segments
//! that could not be read; see docs/log-aggregator.md.

mod bodies;
mod count_ahead;
pub mod dedup;
pub mod engine;
pub mod filter;
pub mod flusher;
mod group_text;
pub mod import;
pub mod index;
mod lookup;
pub mod memory;
pub mod reader;
pub mod recover;
pub mod scan;
pub mod search;
pub mod segment;
pub mod terms;
pub mod wal;
pub mod writer;

#[cfg(test)]
mod lookup_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod text_tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::Arbiter;

use self::engine::{Engine, Limits};
use self::flusher::Flusher;
use self::memory::SharedView;
use self::reader::Readers;
use self::writer::Writer;
use crate::config::AggregatorConfig;
use crate::metrics::Metrics;
use crate::query::LogQuery;
use crate::record::Record;
use crate::store::{
    Answer, Backend, Counts, Feed, FeedSender, Health, Inserted, Page, ScanPage, ScanQuery,
    StoreError,
};

/// What the writer reports and `/health` reads.
#[derive(Debug, Default)]
pub struct Status {
    writable: AtomicBool,
    flush_problem: Mutex<Option<String>>,
    /// Found at start (damaged segments moved aside).
    found: Vec<String>,
}

impl Status {
    pub fn set_writable(&self, writable: bool) {
        self.writable.store(writable, Ordering::Relaxed);
    }

    pub fn set_flush_problem(&self, problem: Option<String>) {
        *self.flush_problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    fn problems(&self) -> Vec<String> {
        let mut p = self.found.clone();
        p.extend(
            self.flush_problem
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        );
        p
    }
}

/// The running embedded store.
pub struct Embedded {
    writer: actix::Addr<Writer>,
    readers: Readers,
    view: SharedView,
    status: Arc<Status>,
    feed: FeedSender,
    arbiters: Mutex<Vec<Arbiter>>,
}

impl Embedded {
    /// Recovers the store in `DATA_DIR` (importing a SQLite store found there first)
    /// and starts its actors.
    pub fn start(config: &AggregatorConfig, metrics: &Metrics) -> anyhow::Result<Embedded> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create DATA_DIR={}: {e}", dir.display()))?;
        import::import_sqlite(dir)?;
        let started = Instant::now();
        let (recovered, found) = recover::recover(dir)?;
        let view = SharedView::default();
        let limits = Limits {
            flush_rows: config.flush_records,
            ..Limits::default()
        };
        let engine = Engine::new(dir, config.sync_mode, limits, recovered, view.clone())?;
        log::info!(
            data_dir = dir.display().to_string().as_str(),
            records = engine.stored(),
            segments = engine.segment_count(),
            recovery_ms = started.elapsed().as_millis() as u64,
            sync_mode = format!("{:?}", config.sync_mode).to_lowercase().as_str();
            "Store opened."
        );
        let status = Arc::new(Status {
            writable: AtomicBool::new(true),
            flush_problem: Mutex::new(None),
            found,
        });
        let feed = FeedSender::default();
        let flusher_arbiter = Arbiter::new();
        let flusher = Flusher::start(
            &flusher_arbiter.handle(),
            dir.clone(),
            segment::ROW_GROUP_ROWS,
        );
        let writer_arbiter = Arbiter::new();
        let writer = Writer::start(
            &writer_arbiter.handle(),
            engine,
            flusher,
            status.clone(),
            feed.clone(),
            metrics.clone(),
            config.retention,
        );
        let (readers, reader_arbiters) = Readers::start(config.reader_threads, &view, metrics);
        let mut arbiters = vec![writer_arbiter, flusher_arbiter];
        arbiters.extend(reader_arbiters);
        Ok(Embedded {
            writer,
            readers,
            view,
            status,
            feed,
            arbiters: Mutex::new(arbiters),
        })
    }
}

impl Backend for Embedded {
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

    fn scan(&self, query: ScanQuery, deadline: Instant) -> Answer<ScanPage> {
        let (reader, held) = self.readers.pick();
        let sent = reader.send(scan::Scan {
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

    fn clear(&self) -> Answer<u64> {
        let sent = self.writer.send(writer::Clear);
        Box::pin(async move { sent.await.unwrap_or(Err(StoreError::Unavailable("writer"))) })
    }

    fn health(&self) -> Health {
        Health {
            writable: self.status.writable.load(Ordering::Relaxed) && self.writer.connected(),
            stored: self.view.get().stored,
            running: self.writer.connected() && self.readers.connected(),
            problems: self.status.problems(),
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
