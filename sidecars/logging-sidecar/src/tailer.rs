//! The tailer actor: follows the log files and feeds chunks of lines to the enricher.
//!
//! First stage of the pipeline. The file logic is in [`crate::files`]; this actor runs
//! the read loop (read a chunk, `send(..).await` it to the enricher, read the next; when
//! nothing is new, poll again after the poll interval), applies the acknowledgements the
//! forwarder sends back, and writes the checkpoint file at most every checkpoint
//! interval. Because it awaits each hand-over, a stalled pipeline stops the reading, but
//! not the discovery: that runs every poll interval whatever the pipeline does, so every
//! file is opened (and held open) while it is still to be found.
//!
//! Under supervision: the read positions and checkpoints live in the actor's fields and
//! survive a restart. A chunk lost in a failure was never counted as handed over, so it
//! is read again from the same position, with the same `event_id`s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::batch::Acked;
use crate::enricher::{Enricher, LineBatch};
use crate::fault::Fault;
use crate::files::{Event, FileSet};
use crate::metrics::{Metrics, Readiness};

/// Acknowledgements waiting for the tailer (at most one per batch in flight).
pub const TAILER_MAILBOX: usize = 64;

/// Stop reading (shutdown): what was read is still delivered and acknowledged.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopReading;

/// Write the checkpoint file now if it changed (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveCheckpoints;

/// One turn of the read loop; `generation` drops turns scheduled before a restart.
#[derive(Message)]
#[rtype(result = "()")]
struct ReadStep {
    generation: u64,
}

pub struct Tailer {
    files: FileSet,
    enricher: Addr<Enricher>,
    poll_interval: Duration,
    checkpoint_interval: Duration,
    last_discover: Option<Instant>,
    sending: bool,
    stopped: bool,
    generation: u64,
    fault: Fault,
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

impl Tailer {
    pub fn new(
        files: FileSet,
        enricher: Addr<Enricher>,
        poll_interval: Duration,
        checkpoint_interval: Duration,
        fault: Fault,
        metrics: Metrics,
        readiness: Arc<Readiness>,
    ) -> Tailer {
        Tailer {
            files,
            enricher,
            poll_interval,
            checkpoint_interval,
            last_discover: None,
            sending: false,
            stopped: false,
            generation: 0,
            fault,
            metrics,
            readiness,
        }
    }

    fn discover(&mut self, now: Instant) {
        let first = self.last_discover.is_none();
        self.last_discover = Some(now);
        let mut events = self.files.discover(now);
        if first {
            events.extend(self.files.recover(now));
        }
        for event in events {
            log_event(&event, &self.metrics);
        }
        self.metrics.files_tracked.set(self.files.len() as i64);
    }

    fn schedule(&self, ctx: &mut Context<Self>, after: Duration) {
        let step = ReadStep {
            generation: self.generation,
        };
        if after.is_zero() {
            ctx.notify(step);
        } else {
            ctx.notify_later(step, after);
        }
    }

    fn save(&mut self) {
        match self.files.save_checkpoints() {
            Ok(true) => self.metrics.checkpoint_writes.inc(),
            Ok(false) => {}
            Err(e) => {
                self.metrics.checkpoint_errors.inc();
                log::warn!(error = e.to_string().as_str(); "Cannot write the checkpoint file; it is tried again, and lines may be read twice after a restart (the aggregator drops the repeats).");
            }
        }
        self.metrics.lag_bytes.reset();
        for (path, lag) in self.files.lag() {
            self.metrics
                .lag_bytes
                .with_label_values(&[&path])
                .set(lag as i64);
        }
    }
}

fn log_event(event: &Event, metrics: &Metrics) {
    match event {
        Event::Opened { path, offset } => {
            log::info!(path = path.display().to_string().as_str(), offset = *offset; "Following a log file.")
        }
        Event::Rotated { path } => {
            metrics.rotations.with_label_values(&["rename"]).inc();
            log::info!(path = path.display().to_string().as_str(); "A log file was rotated away; it is read to its end.")
        }
        Event::Truncated { path } => {
            metrics.rotations.with_label_values(&["truncate"]).inc();
            log::info!(path = path.display().to_string().as_str(); "A log file was truncated; it is read again from its start.")
        }
        Event::Released {
            path,
            unacknowledged,
        } => {
            if *unacknowledged > 0 {
                log::warn!(path = path.display().to_string().as_str(), unacknowledged_bytes = *unacknowledged; "A rotated log file was closed before the aggregator acknowledged all of it; it is still being delivered, but a crash now would lose that part.")
            } else {
                log::info!(path = path.display().to_string().as_str(); "A rotated log file was read to its end and closed.")
            }
        }
        Event::Copy { path, offset } => {
            metrics.rotations.with_label_values(&["copy"]).inc();
            log::info!(path = path.display().to_string().as_str(), offset = *offset; "A new file is a copy of a known one (copytruncate); its backlog is read from the known file's acknowledged position.")
        }
        Event::Recovered { path, offset } => {
            log::info!(path = path.display().to_string().as_str(), offset = *offset; "Found a file rotated while the sidecar was down; reading its rest first.")
        }
        Event::Forgotten { path } => {
            log::info!(path = path.display().to_string().as_str(); "A checkpointed file no longer exists; its checkpoint is dropped.")
        }
    }
}

impl Actor for Tailer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(TAILER_MAILBOX);
        self.sending = false;
        ctx.run_interval(self.checkpoint_interval, |act, _| act.save());
        // Discovery runs on its own clock, not only between reads: while a chunk waits
        // for the pipeline (the aggregator down, say), rotations must still be seen, or
        // a file created and renamed away meanwhile would never be opened.
        ctx.run_interval(self.poll_interval, |act, _| {
            if !act.stopped && act.last_discover.is_some() {
                act.discover(Instant::now());
            }
        });
        self.readiness.set_tailing();
        self.schedule(ctx, Duration::ZERO);
    }
}

impl Supervised for Tailer {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        log::warn!(
            "The tailer failed and restarts; it reads on from its last handed-over position."
        );
        self.metrics
            .actor_restarts
            .with_label_values(&["tailer"])
            .inc();
        self.generation += 1;
        self.sending = false;
    }
}

impl Handler<ReadStep> for Tailer {
    type Result = ();

    fn handle(&mut self, msg: ReadStep, ctx: &mut Context<Self>) {
        if msg.generation != self.generation || self.stopped || self.sending {
            return;
        }
        let now = Instant::now();
        let due = match self.last_discover {
            None => true,
            Some(t) => now.duration_since(t) >= self.poll_interval,
        };
        if due {
            self.discover(now);
        }
        let Some(chunk) = self.files.read(now) else {
            self.schedule(ctx, self.poll_interval);
            return;
        };
        if self.fault.fires() {
            log::error!("Injected fault: the tailer fails holding a chunk it read.");
            ctx.stop();
            return;
        }
        self.metrics.lines_read.inc_by(chunk.lines.len() as u64);
        self.metrics.read_bytes.inc_by(chunk.data.len() as u64);
        let position = chunk.position;
        self.sending = true;
        let sent = self.enricher.send(LineBatch {
            key: chunk.key,
            stream: chunk.stream,
            data: chunk.data,
            lines: chunk.lines,
            end_offset: position.end_offset,
            source: chunk.source,
        });
        ctx.spawn(sent.into_actor(self).map(move |result, act, ctx| {
            act.sending = false;
            match result {
                Ok(Ok(())) => {
                    act.files.handed_over(position);
                    act.schedule(ctx, Duration::ZERO);
                }
                _ => {
                    log::warn!("The enricher did not take a chunk; it is read again.");
                    act.schedule(ctx, act.poll_interval);
                }
            }
        }));
    }
}

impl Handler<Acked> for Tailer {
    type Result = ();

    fn handle(&mut self, msg: Acked, _: &mut Context<Self>) {
        self.files.acknowledge(&msg.0);
    }
}

impl Handler<StopReading> for Tailer {
    type Result = ();

    fn handle(&mut self, _: StopReading, _: &mut Context<Self>) {
        self.stopped = true;
    }
}

impl Handler<SaveCheckpoints> for Tailer {
    type Result = ();

    fn handle(&mut self, _: SaveCheckpoints, _: &mut Context<Self>) {
        self.save();
    }
}
