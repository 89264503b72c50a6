//! The tailer actor: follows the log files and feeds chunks of lines to the enricher.
//!
//! First stage of the pipeline. The file logic is in [`crate::files`]; this actor runs
//! the read loop (read a chunk, `send(..).await` it to the enricher, read the next; when
//! nothing is new, wait for a file event from [`crate::watch`], or in poll mode for the
//! poll interval), applies the acknowledgements the forwarder sends back, and writes the
//! checkpoint file at most every checkpoint interval. Because it awaits each hand-over,
//! a stalled pipeline stops the reading, but not the discovery: a file event, and a
//! timer (the rescan interval, or the poll interval in poll mode), still run it, so every
//! file is opened (and held open, up to `MAX_OPEN_FILES`) while it is still to be found. Discoveries are at
//! least a poll interval apart, however many events arrive.
//!
//! Under supervision: the read positions and checkpoints live in the actor's fields and
//! survive a restart. A chunk lost in a failure was never counted as handed over, so it
//! is read again from the same position, with the same `event_id`s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::batch::Acked;
use crate::config::WatchMode;
use crate::enricher::{Enricher, LineBatch};
use crate::fault::Fault;
use crate::files::{Event, FileSet};
use crate::metrics::{Metrics, Readiness};
use crate::watch::{Wake, Watch};

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

/// When the tailer looks at its files.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub mode: WatchMode,
    /// Poll mode: how often files are looked at. Events mode: the shortest time
    /// between two discoveries.
    pub poll_interval: Duration,
    /// Events mode: how often files are looked at without any event.
    pub rescan_interval: Duration,
    pub checkpoint_interval: Duration,
}

pub struct Tailer {
    files: FileSet,
    enricher: Addr<Enricher>,
    timing: Timing,
    watch: Option<Watch>,
    /// A file event came since the last discovery.
    woken: bool,
    /// The next read step or discovery, when one is waiting for its time.
    step_timer: Option<SpawnHandle>,
    discover_timer: Option<SpawnHandle>,
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
        timing: Timing,
        fault: Fault,
        metrics: Metrics,
        readiness: Arc<Readiness>,
    ) -> Tailer {
        Tailer {
            files,
            enricher,
            timing,
            watch: None,
            woken: false,
            step_timer: None,
            discover_timer: None,
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
        self.woken = false;
        let mut events = self.files.discover(now);
        if first {
            events.extend(self.files.recover(now));
        }
        for event in events {
            log_event(&event, &self.metrics);
        }
        self.metrics.files_tracked.set(self.files.len() as i64);
        self.metrics.files_open.set(self.files.open_files() as i64);
    }

    /// The next read step, `after` from now; it replaces one already waiting, so that
    /// at most one is ever waiting.
    fn schedule(&mut self, ctx: &mut Context<Self>, after: Duration) {
        if let Some(timer) = self.step_timer.take() {
            ctx.cancel_future(timer);
        }
        let step = ReadStep {
            generation: self.generation,
        };
        if after.is_zero() {
            ctx.notify(step);
        } else {
            self.step_timer = Some(ctx.notify_later(step, after));
        }
    }

    /// How long an idle tailer waits before it looks at its files unasked: the rescan
    /// interval while file events are watched, else the poll interval.
    fn idle_interval(&self) -> Duration {
        match (self.timing.mode, &self.watch) {
            (WatchMode::Events, Some(_)) => self.timing.rescan_interval,
            _ => self.timing.poll_interval,
        }
    }

    /// How long until a discovery is allowed (discoveries are a poll interval apart).
    fn until_discovery(&self, now: Instant) -> Duration {
        match self.last_discover {
            None => Duration::ZERO,
            Some(t) => self
                .timing
                .poll_interval
                .saturating_sub(now.duration_since(t)),
        }
    }

    /// The timer that looks at the files even when no event comes: discovers (the
    /// pipeline may be stalled, the read loop waiting), re-establishes the watch, and
    /// wakes the read loop.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if let Some(watch) = &mut self.watch {
            watch.ensure();
        }
        if !self.stopped && self.last_discover.is_some() {
            self.discover(Instant::now());
            if !self.sending && self.step_timer.is_none() {
                self.schedule(ctx, Duration::ZERO);
            }
        }
        let generation = self.generation;
        ctx.run_later(self.idle_interval(), move |act, ctx| {
            if act.generation == generation {
                act.tick(ctx);
            }
        });
    }

    /// A file event while the read loop waits for the pipeline: discovers now, or as
    /// soon as a discovery is allowed, so that a file created and renamed away meanwhile
    /// is still opened.
    fn discover_soon(&mut self, ctx: &mut Context<Self>) {
        let wait = self.until_discovery(Instant::now());
        if wait.is_zero() {
            self.discover(Instant::now());
        } else if self.discover_timer.is_none() {
            self.discover_timer = Some(ctx.run_later(wait, |act, _| {
                act.discover_timer = None;
                if act.woken && !act.stopped {
                    act.discover(Instant::now());
                }
            }));
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
        Event::ClosedForLimit { path } => {
            metrics
                .open_file_limit
                .with_label_values(&["released"])
                .inc();
            log::warn!(path = path.display().to_string().as_str(); "MAX_OPEN_FILES reached: a rotated log file, read to its end and acknowledged, was closed before ROTATE_WAIT; lines still written to it are not read.")
        }
        Event::Parked {
            path,
            rotated,
            unread,
        } => {
            metrics.open_file_limit.with_label_values(&["parked"]).inc();
            log::warn!(path = path.display().to_string().as_str(), rotated = *rotated, unread_bytes = *unread; "MAX_OPEN_FILES reached: a log file was closed, its position kept; it is opened again when there is room (if it is deleted meanwhile, its unread rest is lost).")
        }
        Event::Reopened { path } => {
            metrics
                .open_file_limit
                .with_label_values(&["reopened"])
                .inc();
            log::info!(path = path.display().to_string().as_str(); "A log file closed for MAX_OPEN_FILES was opened again.")
        }
        Event::Lost { path, unread } => {
            metrics.open_file_limit.with_label_values(&["lost"]).inc();
            metrics.parked_lost_bytes.inc_by(*unread);
            log::error!(path = path.display().to_string().as_str(), unread_bytes = *unread; "A log file closed for MAX_OPEN_FILES is gone (deleted or moved away); what was not read of it is lost. Raise MAX_OPEN_FILES.")
        }
    }
}

impl Actor for Tailer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(TAILER_MAILBOX);
        self.sending = false;
        self.step_timer = None;
        self.discover_timer = None;
        ctx.run_interval(self.timing.checkpoint_interval, |act, _| act.save());
        // A new watch at every start: the old one's wake-ups went to the old context.
        self.watch = None;
        if self.timing.mode == WatchMode::Events {
            match Watch::new(self.files.pattern()) {
                Ok((watch, wakes)) => {
                    ctx.add_stream(wakes);
                    self.watch = Some(watch);
                }
                Err(e) => {
                    log::warn!(error = e.to_string().as_str(); "Cannot watch the log directory for changes; polling every POLL_INTERVAL instead.")
                }
            }
        }
        // Discovery runs on its own clock, not only between reads: while a chunk waits
        // for the pipeline (the aggregator down, say), rotations must still be seen, or
        // a file created and renamed away meanwhile would never be opened.
        let generation = self.generation;
        ctx.run_later(self.idle_interval(), move |act, ctx| {
            if act.generation == generation {
                act.tick(ctx);
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
        // This step may run before a waiting one (woken by an event): that one is moot.
        if let Some(timer) = self.step_timer.take() {
            ctx.cancel_future(timer);
        }
        let now = Instant::now();
        let until = self.until_discovery(now);
        if until.is_zero() {
            self.discover(now);
        }
        let Some(chunk) = self.files.read(now) else {
            // An event not yet discovered (a new file, say), or a truncation the read
            // found, is looked at as soon as a discovery is allowed; otherwise the next
            // event, or the idle interval.
            let wait = if self.files.wants_discovery() {
                self.until_discovery(Instant::now())
            } else if self.woken && !until.is_zero() {
                until
            } else {
                self.idle_interval()
            };
            self.schedule(ctx, wait);
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
                    act.schedule(ctx, act.timing.poll_interval);
                }
            }
        }));
    }
}

impl StreamHandler<Wake> for Tailer {
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.woken = true;
        if self.stopped || self.last_discover.is_none() {
            return;
        }
        if self.sending {
            self.discover_soon(ctx);
        } else {
            self.schedule(ctx, Duration::ZERO);
        }
    }

    /// The watch ended (it never does while it lives): the timer goes on alone.
    fn finished(&mut self, _: &mut Context<Self>) {}
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
