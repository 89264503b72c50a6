//! The writer actor: the one owner of the store's write connection.
//!
//! It runs on its own arbiter (a dedicated thread), because SQLite calls block. Batches
//! are answered only after their commit, which is what makes a `POST /logs`
//! acknowledgement durable. Group commit: an [`Ingest`] only queues its batch; the
//! mailbox is drained first, then one [`Commit`] stores every queued batch in one
//! transaction. Under load, batches that arrived during a commit share the next one;
//! alone, a batch is committed at once. The queue is bounded by the HTTP side's ingest
//! slots. Retention runs here too, between commits, one bounded chunk per turn, so it
//! never stalls ingestion for long.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::db::Db;
use super::Status;
use crate::config::Retention;
use crate::metrics::Metrics;
use crate::record::Record;
use crate::store::{CommittedRecord, FeedSender, Inserted, StoreError};

type Reply = tokio::sync::oneshot::Sender<Result<Inserted, StoreError>>;

/// Batches waiting for the writer; a full mailbox makes senders wait (backpressure).
pub const WRITER_MAILBOX: usize = 64;
/// Records deleted per retention turn; small enough to keep a batch's wait short.
pub const PRUNE_CHUNK: usize = 5_000;

/// Store a batch; answered once it is committed.
#[derive(Message)]
#[rtype(result = "Result<Inserted, StoreError>")]
pub struct Ingest(pub Vec<Record>);

/// Stores every queued batch in one transaction, then answers each.
#[derive(Message)]
#[rtype(result = "()")]
struct Commit;

/// Delete every record; answers how many there were.
#[derive(Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct Clear;

pub struct Writer {
    store: Db,
    status: Arc<Status>,
    feed: FeedSender,
    metrics: Metrics,
    retention: Retention,
    /// A retention pass is in progress (continued turn by turn).
    pruning: bool,
    /// Batches waiting for the next commit, with where each answer goes.
    queued: Vec<(Vec<Record>, Reply)>,
}

impl Writer {
    /// Starts the writer on `arbiter`, taking the open store.
    pub fn start(
        arbiter: &ArbiterHandle,
        store: Db,
        status: Arc<Status>,
        feed: FeedSender,
        metrics: Metrics,
        retention: Retention,
    ) -> Addr<Writer> {
        Writer::start_in_arbiter(arbiter, move |ctx: &mut Context<Writer>| {
            ctx.set_mailbox_capacity(WRITER_MAILBOX);
            Writer {
                store,
                status,
                feed,
                metrics,
                retention,
                pruning: false,
                queued: Vec::new(),
            }
        })
    }

    /// One retention turn; schedules the next at once while there is more to delete.
    fn prune_turn(&mut self, ctx: &mut Context<Self>) {
        let min_ts = self.retention.max_age.map(|age| {
            let age_us = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
            chrono::Utc::now().timestamp_micros().saturating_sub(age_us)
        });
        match self
            .store
            .prune(self.retention.max_records, min_ts, PRUNE_CHUNK)
        {
            Ok(n) => {
                self.metrics.records_pruned.inc_by(n);
                self.metrics.records_stored.sub(n as i64);
                if n as usize >= PRUNE_CHUNK {
                    self.pruning = true;
                    ctx.run_later(Duration::ZERO, |act, ctx| act.prune_turn(ctx));
                    return;
                }
                if n > 0 {
                    log::debug!(deleted = n; "Retention deleted old records.");
                }
            }
            Err(e) => {
                log::warn!(error = e.to_string().as_str(); "Retention failed; it will retry.")
            }
        }
        self.pruning = false;
    }
}

impl Actor for Writer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match self.store.stored() {
            Ok(n) => self.metrics.records_stored.set(n as i64),
            Err(e) => log::warn!(error = e.to_string().as_str(); "Cannot count stored records."),
        }
        if self.retention.max_records.is_some() || self.retention.max_age.is_some() {
            ctx.run_interval(self.retention.interval, |act, ctx| {
                if !act.pruning {
                    act.prune_turn(ctx);
                }
            });
        }
    }
}

impl Writer {
    /// Commits every queued batch in one transaction and answers each.
    fn commit(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        let queued = std::mem::take(&mut self.queued);
        let batches: Vec<&[Record]> = queued.iter().map(|(r, _)| r.as_slice()).collect();
        let start = Instant::now();
        let mut kept = Vec::new();
        let want_feed = self.feed.wanted();
        let outcome = self
            .store
            .insert_batches(&batches, want_feed.then_some(&mut kept));
        self.metrics
            .batch_commit
            .observe(start.elapsed().as_secs_f64());
        match outcome {
            Ok(done) => {
                self.status.set_writable(true);
                let mut records = Vec::with_capacity(queued.len());
                for ((batch, reply), done) in queued.into_iter().zip(done) {
                    self.metrics.records_stored.add(done.stored as i64);
                    // A requester that went away gets no answer; its batch is stored.
                    let _ = reply.send(Ok(done));
                    records.push(batch);
                }
                if want_feed {
                    self.feed.publish(committed(records, kept));
                }
            }
            Err(e) => {
                log::error!(error = e.to_string().as_str(); "A commit failed; its batches are refused.");
                self.status.set_writable(false);
                let shared = StoreError::from(e);
                for (_, reply) in queued {
                    let _ = reply.send(Err(shared.clone()));
                }
            }
        }
    }
}

/// The stored records of a commit, moved out of their batches; `kept` holds their
/// `(batch, index, id)` in order.
fn committed(batches: Vec<Vec<Record>>, kept: Vec<(usize, usize, i64)>) -> Vec<CommittedRecord> {
    let mut out = Vec::with_capacity(kept.len());
    let mut kept = kept.into_iter().peekable();
    for (b, batch) in batches.into_iter().enumerate() {
        for (i, record) in batch.into_iter().enumerate() {
            if let Some(&(_, _, id)) = kept.peek().filter(|&&(kb, ki, _)| (kb, ki) == (b, i)) {
                out.push(CommittedRecord { id, record });
                kept.next();
            }
        }
    }
    out
}

impl Handler<Ingest> for Writer {
    type Result = ResponseFuture<Result<Inserted, StoreError>>;

    fn handle(&mut self, msg: Ingest, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.queued.is_empty() {
            // Runs once the mailbox is drained, so batches queued meanwhile join in.
            ctx.notify(Commit);
        }
        self.queued.push((msg.0, reply));
        Box::pin(async move {
            answer
                .await
                .unwrap_or(Err(StoreError::Unavailable("writer")))
        })
    }
}

impl Handler<Commit> for Writer {
    type Result = ();

    fn handle(&mut self, _: Commit, _: &mut Context<Self>) {
        self.commit();
    }
}

impl Handler<Clear> for Writer {
    type Result = Result<u64, StoreError>;

    fn handle(&mut self, _: Clear, _: &mut Context<Self>) -> Self::Result {
        // Batches queued before the clear are committed (and then cleared), as their
        // order of arrival says.
        self.commit();
        let n = self
            .store
            .clear()
            .inspect_err(|_| self.status.set_writable(false))?;
        self.status.set_writable(true);
        self.metrics.records_stored.set(0);
        Ok(n)
    }
}
