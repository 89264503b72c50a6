//! The forwarder actor: batches records, POSTs them, retries, and reports acknowledgements.
//!
//! Third stage of the pipeline. Records arrive from the enricher as NDJSON pieces; a
//! batch closes on count, size or linger time and is POSTed (gzip optional, bearer token
//! optional). At most `max_in_flight_batches` closed batches exist at once: while they
//! are all unacknowledged and the open batch is full, the reply to the enricher is held
//! back, which holds the enricher, which holds the tailer, which stops reading: the file
//! is the buffer and memory stays bounded. A failed POST is retried for ever, with
//! exponential backoff and jitter; nothing is dropped. On a 2xx the batch's file
//! positions go back to the tailer, in batch order ([`AckOrder`]), for checkpointing.
//!
//! Under supervision: the batches live in the actor's fields, which survive a restart;
//! only the POSTs in flight are lost with the old context, so `restarting()` queues every
//! unacknowledged batch again. A batch sent twice is stored once by the aggregator,
//! thanks to the records' `event_id`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use futures::channel::oneshot;
use futures::FutureExt;

use crate::batch::{Ack, AckOrder, Backoff, Batch, Builder};
use crate::fault::Fault;
use crate::metrics::{Metrics, Readiness};
use crate::tailer::Acked;

/// Messages waiting for the forwarder; the enricher sends one at a time.
pub const FORWARDER_MAILBOX: usize = 4;
/// Largest aggregator answer read (it is a small JSON object).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How often the aggregator's `/health` is probed until it first answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Records for the aggregator: an NDJSON piece and the file position it completes.
#[derive(Message)]
#[rtype(result = "Result<(), Refused>")]
pub struct Records {
    pub body: Vec<u8>,
    pub records: usize,
    pub ack: Option<Ack>,
}

/// Close the open batch now (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Batches not yet acknowledged, the open one included (shutdown waits for 0).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Outstanding;

/// A stage did not take a message; the sender keeps it and tries again.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the next stage did not take the message")]
pub struct Refused;

/// Where and how to POST.
#[derive(Debug, Clone)]
pub struct ForwarderSettings {
    pub url: String,
    pub token: Option<String>,
    pub gzip: bool,
    pub batch_max_records: usize,
    pub batch_max_bytes: usize,
    pub batch_linger: Duration,
    pub max_in_flight_batches: usize,
    pub request_timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    Sending,
    Waiting,
}

struct Pending {
    batch: Batch,
    state: State,
    attempts: u32,
}

enum Outcome {
    Accepted { duplicates: u64 },
    Rejected { status: u16, body: String },
    Failed { error: String },
}

pub struct Forwarder {
    settings: ForwarderSettings,
    health_url: String,
    client: awc::Client,
    builder: Builder,
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
    order: AckOrder,
    acks_to: Recipient<Acked>,
    waiters: VecDeque<oneshot::Sender<()>>,
    backoff: Backoff,
    linger_armed: Option<Instant>,
    flushing: bool,
    fault: Fault,
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

impl Forwarder {
    pub fn new(
        settings: ForwarderSettings,
        acks_to: Recipient<Acked>,
        fault: Fault,
        metrics: Metrics,
        readiness: Arc<Readiness>,
    ) -> Forwarder {
        let health_url = health_url(&settings.url);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id());
        Forwarder {
            client: client(&settings),
            backoff: Backoff::new(settings.retry_initial, settings.retry_max, seed),
            settings,
            health_url,
            builder: Builder::default(),
            next_seq: 0,
            pending: BTreeMap::new(),
            order: AckOrder::default(),
            acks_to,
            waiters: VecDeque::new(),
            linger_armed: None,
            flushing: false,
            fault,
            metrics,
            readiness,
        }
    }

    fn builder_full(&self) -> bool {
        self.builder.is_full(
            self.settings.batch_max_records,
            self.settings.batch_max_bytes,
        )
    }

    fn has_room(&self) -> bool {
        self.pending.len() < self.settings.max_in_flight_batches
    }

    /// Closes the open batch when it is due and there is room, else arms its linger timer.
    fn maybe_close(&mut self, ctx: &mut Context<Self>) {
        if self.builder.is_empty() {
            return;
        }
        let now = Instant::now();
        let deadline = self
            .builder
            .deadline(self.settings.batch_linger)
            .unwrap_or(now);
        let due = self.builder_full() || self.flushing || deadline <= now;
        if due && self.has_room() {
            self.close(ctx, now);
        } else if !due && self.linger_armed != Some(deadline) {
            self.linger_armed = Some(deadline);
            ctx.run_later(deadline - now, |act, ctx| {
                act.linger_armed = None;
                act.maybe_close(ctx);
            });
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let batch = self.builder.close(seq, self.settings.gzip, now);
        if batch.records == 0 {
            // Only skipped bytes (the rest of a cut line): nothing to POST, but the file
            // position still moves on, in order.
            let released = self.order.complete(seq, batch.acks);
            if !released.is_empty() {
                self.acks_to.do_send(Acked(released));
            }
            self.wake_waiters();
            return;
        }
        self.pending.insert(
            seq,
            Pending {
                batch,
                state: State::Queued,
                attempts: 0,
            },
        );
        self.metrics
            .batches_in_flight
            .set(self.pending.len() as i64);
        self.pump(ctx);
    }

    /// Starts a POST for every queued batch.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let queued: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.state == State::Queued)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in queued {
            self.launch(seq, ctx);
        }
    }

    fn launch(&mut self, seq: u64, ctx: &mut Context<Self>) {
        let Some(p) = self.pending.get_mut(&seq) else {
            return;
        };
        p.state = State::Sending;
        if p.attempts > 0 {
            self.metrics.retries.inc();
        }
        let mut req = self
            .client
            .post(&self.settings.url)
            .insert_header((CONTENT_TYPE, "application/x-ndjson"));
        if self.settings.gzip {
            req = req.insert_header((CONTENT_ENCODING, "gzip"));
        }
        if let Some(token) = &self.settings.token {
            req = req.bearer_auth(token);
        }
        let body = p.batch.body.clone();
        let fut = async move {
            match req.send_body(body).await {
                Err(e) => Outcome::Failed {
                    error: e.to_string(),
                },
                Ok(mut res) => {
                    let status = res.status();
                    let answer = res.body().limit(MAX_ANSWER_BYTES).await.unwrap_or_default();
                    if status.is_success() {
                        let duplicates =
                            serde_json::from_slice::<shared::wire::IngestResponse>(&answer)
                                .map(|r| r.duplicates)
                                .unwrap_or(0);
                        Outcome::Accepted { duplicates }
                    } else {
                        Outcome::Rejected {
                            status: status.as_u16(),
                            body: String::from_utf8_lossy(&answer).chars().take(300).collect(),
                        }
                    }
                }
            }
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |outcome, act, ctx| act.answered(seq, outcome, ctx)),
        );
    }

    fn answered(&mut self, seq: u64, outcome: Outcome, ctx: &mut Context<Self>) {
        if !matches!(outcome, Outcome::Failed { .. }) {
            self.readiness.set_aggregator_answered();
        }
        let Some(p) = self.pending.get_mut(&seq) else {
            return;
        };
        match outcome {
            Outcome::Accepted { duplicates } => {
                if p.attempts > 0 {
                    log::info!(batch = seq, attempts = p.attempts + 1; "The aggregator took a batch after retries.");
                }
                let Some(p) = self.pending.remove(&seq) else {
                    return;
                };
                let m = &self.metrics;
                m.records_forwarded.inc_by(p.batch.records as u64);
                m.forwarded_bytes.inc_by(p.batch.body.len() as u64);
                m.batches_sent.inc();
                m.duplicates_reported.inc_by(duplicates);
                m.ack_latency
                    .observe(p.batch.closed_at.elapsed().as_secs_f64());
                m.batches_in_flight.set(self.pending.len() as i64);
                let released = self.order.complete(seq, p.batch.acks);
                if !released.is_empty() {
                    // Acks are tiny and at most one message per batch, bounded by the
                    // batches in flight: `do_send` cannot grow the tailer's queue unboundedly.
                    self.acks_to.do_send(Acked(released));
                }
                self.maybe_close(ctx);
                self.wake_waiters();
                self.pump(ctx);
            }
            Outcome::Rejected { .. } | Outcome::Failed { .. } => {
                p.attempts += 1;
                p.state = State::Waiting;
                let attempts = p.attempts;
                let delay = self.backoff.delay(attempts);
                if matches!(outcome, Outcome::Failed { .. }) {
                    // A fresh client: a broken connection pool must not fail every retry.
                    self.client = client(&self.settings);
                }
                let (error_type, detail) = match &outcome {
                    Outcome::Rejected { status, body } => (format!("http_{status}"), body.clone()),
                    Outcome::Failed { error } => ("connection".to_owned(), error.clone()),
                    Outcome::Accepted { .. } => unreachable!("handled above"),
                };
                self.metrics
                    .batch_failures
                    .with_label_values(&[&error_type])
                    .inc();
                // One line per batch's first failure, then one every tenth attempt.
                if attempts == 1 || attempts % 10 == 0 {
                    log::warn!(
                        batch = seq,
                        attempts = attempts,
                        error_type = error_type.as_str(),
                        detail = detail.as_str(),
                        retry_in_ms = delay.as_millis() as u64;
                        "The aggregator did not take a batch; it is kept and retried."
                    );
                }
                ctx.run_later(delay, move |act, ctx| {
                    if let Some(p) = act.pending.get_mut(&seq) {
                        if p.state == State::Waiting {
                            p.state = State::Queued;
                        }
                    }
                    act.pump(ctx);
                });
            }
        }
    }

    fn wake_waiters(&mut self) {
        if self.builder_full() {
            return;
        }
        while let Some(w) = self.waiters.pop_front() {
            let _ = w.send(());
        }
    }

    fn probe(&mut self, ctx: &mut Context<Self>) {
        if self.readiness.aggregator_answered() {
            return;
        }
        let req = self.client.get(&self.health_url);
        ctx.spawn(
            async move { req.send().await.is_ok() }
                .into_actor(self)
                .map(|answered, act, ctx| {
                    if answered {
                        act.readiness.set_aggregator_answered();
                    } else {
                        ctx.run_later(PROBE_INTERVAL, |act, ctx| act.probe(ctx));
                    }
                }),
        );
    }
}

/// One client, its timeout the request timeout; awc keeps connections alive.
fn client(settings: &ForwarderSettings) -> awc::Client {
    awc::Client::builder()
        .timeout(settings.request_timeout)
        .disable_redirects()
        .finish()
}

/// `http://host:port/logs` → `http://host:port/health`.
pub fn health_url(url: &str) -> String {
    match url.parse::<awc::http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}/health"),
            _ => url.to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

impl Actor for Forwarder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(FORWARDER_MAILBOX);
        self.linger_armed = None;
        self.probe(ctx);
        self.maybe_close(ctx);
        self.pump(ctx);
    }
}

impl Supervised for Forwarder {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        log::warn!(unacknowledged_batches = self.pending.len(); "The forwarder failed and restarts; its unacknowledged batches are sent again.");
        self.metrics
            .actor_restarts
            .with_label_values(&["forwarder"])
            .inc();
        // The old context's POSTs and timers are gone; the batches are not.
        for p in self.pending.values_mut() {
            p.state = State::Queued;
        }
        self.client = client(&self.settings);
    }
}

impl Handler<Records> for Forwarder {
    type Result = ResponseFuture<Result<(), Refused>>;

    fn handle(&mut self, msg: Records, ctx: &mut Context<Self>) -> Self::Result {
        if self.fault.fires() {
            log::error!("Injected fault: the forwarder fails while taking records.");
            ctx.stop();
            return Box::pin(async { Err(Refused) });
        }
        let now = Instant::now();
        if self
            .builder
            .would_overflow(msg.body.len(), self.settings.batch_max_bytes)
            && self.has_room()
        {
            self.close(ctx, now);
        }
        // A batch closes at the first piece that reaches the limit: room for one more.
        let reserve = self.settings.batch_max_bytes + msg.body.len();
        self.builder
            .push(&msg.body, msg.records, msg.ack, now, reserve);
        self.maybe_close(ctx);
        if self.builder_full() {
            // No room for another piece until a batch is acknowledged: hold the reply.
            let (tx, rx) = oneshot::channel();
            self.waiters.push_back(tx);
            Box::pin(rx.map(|r| r.map_err(|_| Refused)))
        } else {
            Box::pin(async { Ok(()) })
        }
    }
}

impl Handler<Flush> for Forwarder {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flushing = true;
        self.maybe_close(ctx);
    }
}

impl Handler<Outstanding> for Forwarder {
    type Result = usize;

    fn handle(&mut self, _: Outstanding, ctx: &mut Context<Self>) -> usize {
        self.maybe_close(ctx);
        self.pending.len() + usize::from(!self.builder.is_empty()) + self.order.held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_url_keeps_the_authority() {
        assert_eq!(
            health_url("http://log-aggregator:8080/logs"),
            "http://log-aggregator:8080/health"
        );
        assert_eq!(health_url("https://a.b/x/y?z"), "https://a.b/health");
    }
}
