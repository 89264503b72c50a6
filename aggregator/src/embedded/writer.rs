//! The writer actor: a thin shell over [`Engine`], on its own thread.
//!
//! Group commit: an [`Ingest`] only queues its batch and the
//! mailbox is drained before one commit logs every queued batch with one write (and one
//! `fdatasync` with `SYNC_MODE=full`); each batch is answered after that. After a
//! commit the buffer may be sealed and handed to the flusher; its answer comes back as
//! the reply to that request, and the writer puts the segment in place. A tick runs
//! the age flush, compaction and retention. While memory is full (two flushes under
//! way and a full buffer), batches stay queued, which makes senders wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::engine::{Engine, RetentionStep, Sealed};
use super::flusher::{Compact, Flush, Flusher, Rewrite};
use super::Status;
use crate::config::Retention;
use crate::metrics::Metrics;
use crate::record::Record;
use crate::store::{FeedSender, Inserted, StoreError};

type Reply = tokio::sync::oneshot::Sender<Result<Inserted, StoreError>>;

/// Batches waiting for the writer; a full mailbox makes senders wait.
pub const WRITER_MAILBOX: usize = 64;
/// How often the writer looks at the buffer's age, compaction and retention.
pub const TICK: Duration = Duration::from_secs(1);
/// How long after a failed flush it is tried again.
pub const FLUSH_RETRY: Duration = Duration::from_secs(5);
/// Small segments merged at once, at least.
pub const COMPACT_FAN_IN: usize = 4;

/// Store a batch; answered once it is in the log.
#[derive(Message)]
#[rtype(result = "Result<Inserted, StoreError>")]
pub struct Ingest(pub Vec<Record>);

/// Commits every queued batch as one group, then answers each.
#[derive(Message)]
#[rtype(result = "()")]
struct Commit;

/// Delete every record; answers how many there were.
#[derive(Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct Clear;

pub struct Writer {
    engine: Engine,
    flusher: Addr<Flusher>,
    status: Arc<Status>,
    feed: FeedSender,
    metrics: Metrics,
    retention: Retention,
    last_retention: Instant,
    /// A compaction or a retention rewrite is with the flusher.
    compacting: bool,
    queued: Vec<(Vec<Record>, Reply)>,
}

impl Writer {
    pub fn start(
        arbiter: &ArbiterHandle,
        engine: Engine,
        flusher: Addr<Flusher>,
        status: Arc<Status>,
        feed: FeedSender,
        metrics: Metrics,
        retention: Retention,
    ) -> Addr<Writer> {
        Writer::start_in_arbiter(arbiter, move |ctx: &mut Context<Writer>| {
            ctx.set_mailbox_capacity(WRITER_MAILBOX);
            Writer {
                engine,
                flusher,
                status,
                feed,
                metrics,
                retention,
                last_retention: Instant::now(),
                compacting: false,
                queued: Vec::new(),
            }
        })
    }

    fn commit(&mut self, ctx: &mut Context<Self>) {
        if self.queued.is_empty() || self.engine.must_wait() {
            return;
        }
        let queued = std::mem::take(&mut self.queued);
        let (batches, replies): (Vec<_>, Vec<_>) = queued.into_iter().unzip();
        let start = Instant::now();
        let feed = self.feed.wanted();
        let outcome = self.engine.commit(batches, feed);
        self.metrics
            .batch_commit
            .observe(start.elapsed().as_secs_f64());
        match outcome {
            Ok(c) => {
                self.status.set_writable(true);
                for (reply, done) in replies.into_iter().zip(c.done) {
                    self.metrics.records_stored.add(done.stored as i64);
                    // A requester that went away gets no answer; its batch is stored.
                    let _ = reply.send(Ok(done));
                }
                if feed {
                    self.feed.publish(c.records);
                }
            }
            Err(e) => {
                log::error!(error = e.to_string().as_str(); "A commit failed; its batches are refused.");
                self.status.set_writable(false);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        self.seal(ctx, false);
    }

    /// Seals the buffer when due and hands it to the flusher.
    fn seal(&mut self, ctx: &mut Context<Self>, force: bool) {
        match self.engine.seal_if_due(force) {
            Ok(Some(sealed)) => self.flush(ctx, sealed),
            Ok(None) => {}
            Err(e) => {
                log::error!(error = e.to_string().as_str(); "Cannot seal the memory buffer; it stays in memory and in the log.");
            }
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>, sealed: Sealed) {
        let (owner, epoch) = (sealed.owner, sealed.epoch);
        let sent = self.flusher.send(Flush(sealed));
        ctx.spawn(sent.into_actor(self).map(move |answer, act, ctx| {
            let done = match answer {
                Ok(Ok(tmp)) => act.engine.install_flush(owner, epoch, &tmp),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Unavailable("flusher")),
            };
            match done {
                Ok(()) => {
                    act.status.set_flush_problem(None);
                    // Batches held while memory was full can go now.
                    ctx.notify(Commit);
                    act.compact(ctx);
                }
                Err(e) => {
                    log::error!(error = e.to_string().as_str(); "A flush failed; its records stay in memory and in the log, and it is tried again.");
                    act.status.set_flush_problem(Some(format!("flushing to a segment failed: {e}")));
                    ctx.run_later(FLUSH_RETRY, move |act, ctx| {
                        if let Some(sealed) = act.engine.flush_again(owner) {
                            act.flush(ctx, sealed);
                        }
                    });
                }
            }
        }));
    }

    fn compact(&mut self, ctx: &mut Context<Self>) {
        if self.compacting {
            return;
        }
        let Some(inputs) = self
            .engine
            .compaction_due(COMPACT_FAN_IN, self.engine.limits().flush_rows as u64)
        else {
            return;
        };
        self.compacting = true;
        let owners: Vec<i64> = inputs.iter().map(|s| s.first_id).collect();
        let sent = self.flusher.send(Compact(inputs));
        ctx.spawn(sent.into_actor(self).map(move |answer, act, ctx| {
            act.compacting = false;
            let done = match answer {
                Ok(Ok((tmp, last))) => act.engine.install_compaction(&owners, &tmp, last),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Unavailable("flusher")),
            };
            match done {
                Ok(()) => act.compact(ctx),
                Err(e) => {
                    log::warn!(error = e.to_string().as_str(); "A compaction failed; the segments stay as they are.");
                }
            }
        }));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.seal(ctx, false);
        let r = self.retention;
        if (r.max_records.is_some() || r.max_age.is_some())
            && self.last_retention.elapsed() >= r.interval
        {
            self.last_retention = Instant::now();
            self.retain(ctx);
        }
    }

    /// One retention pass: whole segments at once, then a flush or one rewrite.
    fn retain(&mut self, ctx: &mut Context<Self>) {
        let r = self.retention;
        let min_ts = r.max_age.map(|age| {
            let age_us = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
            chrono::Utc::now().timestamp_micros().saturating_sub(age_us)
        });
        let (n, step) = self.engine.retain(r.max_records, min_ts);
        self.pruned(n);
        match step {
            RetentionStep::Nothing => {}
            RetentionStep::Flush => self.seal(ctx, true),
            RetentionStep::Rewrite {
                segment,
                drop_oldest,
                min_ts_us,
            } => {
                if self.compacting {
                    return;
                }
                self.compacting = true;
                let owner = segment.first_id;
                let sent = self.flusher.send(Rewrite {
                    segment,
                    drop_oldest,
                    min_ts_us,
                });
                ctx.spawn(sent.into_actor(self).map(move |answer, act, ctx| {
                    act.compacting = false;
                    let done = match answer {
                        Ok(Ok(rewritten)) => act.engine.install_rewrite(owner, rewritten),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(StoreError::Unavailable("flusher")),
                    };
                    match done {
                        Ok(n) => {
                            act.pruned(n);
                            act.compact(ctx);
                        }
                        Err(e) => {
                            log::warn!(error = e.to_string().as_str(); "A retention rewrite failed; it will retry.");
                        }
                    }
                }));
            }
        }
    }

    fn pruned(&self, n: u64) {
        if n > 0 {
            self.metrics.records_pruned.inc_by(n);
            self.metrics.records_stored.sub(n as i64);
            log::debug!(deleted = n; "Retention deleted old records.");
        }
    }
}

impl Drop for Writer {
    /// A clean shutdown (the writer's thread stops) writes the buffer to a segment, so
    /// that the next start replays no log. A crash skips this, which is safe: the log
    /// holds the buffer.
    fn drop(&mut self) {
        // After a panic the buffer may not hold every logged record: the log stays, and
        // the next start replays it.
        if std::thread::panicking() {
            return;
        }
        let start = Instant::now();
        match self.engine.flush_now(super::segment::ROW_GROUP_ROWS) {
            Ok(()) => {
                log::info!(ms = start.elapsed().as_millis() as u64; "The memory buffer was written to a segment at shutdown.")
            }
            Err(e) => {
                log::warn!(error = e.to_string().as_str(); "Cannot write the memory buffer at shutdown; the log keeps it for the next start.")
            }
        }
    }
}

impl Actor for Writer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics.records_stored.set(self.engine.stored() as i64);
        let tick = TICK.min(self.retention.interval);
        ctx.run_interval(tick, |act, ctx| act.tick(ctx));
        // A buffer recovered from the log may already be due.
        self.seal(ctx, false);
        self.compact(ctx);
    }
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

    fn handle(&mut self, _: Commit, ctx: &mut Context<Self>) {
        self.commit(ctx);
    }
}

impl Handler<Clear> for Writer {
    type Result = Result<u64, StoreError>;

    fn handle(&mut self, _: Clear, ctx: &mut Context<Self>) -> Self::Result {
        // Batches queued before the clear are committed (and then cleared), as their
        // order of arrival says.
        self.commit(ctx);
        let n = self
            .engine
            .clear()
            .inspect_err(|_| self.status.set_writable(false))?;
        self.status.set_writable(true);
        self.metrics.records_stored.set(0);
        Ok(n)
    }
}
