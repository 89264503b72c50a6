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

//! The forwarder actor: a thin shell that runs the POSTs and timers of an [`Outbox`].
//!
//! Third stage of the pipeline. Records arrive from the enricher as NDJSON pieces, each
//! within the batch limits. Every decision (which batch a piece goes into, when a batch
//! closes, what an answer means, splitting a refused batch, rewriting a refused record,
//! the order of acknowledgements) is the [`Outbox`]'s; this actor only POSTs, arms
//! timers, counts and logs. A piece the outbox cannot take yet is parked and its reply
//! held back, which holds the enricher, which holds the tailer: the file is the buffer
//! and memory stays bounded (`MAX_IN_FLIGHT_BATCHES` batches, the open one, one parked
//! piece). On a 2xx the batch's file positions go back, in batch order, to whoever was
//! given as the acknowledgement recipient (the tailer), by `send`: the forwarder knows
//! nothing of the tailer.
//!
//! Under supervision: the outbox lives in the actor's fields, which survive a restart;
//! only the POSTs in flight are lost with the old context, so `restarting()` queues every
//! unacknowledged part again. A part sent twice is stored once by the aggregator, thanks
//! to the records' `event_id`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use futures::channel::oneshot;
use futures::FutureExt;

use crate::batch::{Ack, Acked, Backoff};
use crate::enrich::Splicer;
use crate::fault::Fault;
use crate::metrics::{Metrics, Readiness};
use crate::outbox::{Answer, Limits, Outbox, PartId, Piece, Verdict};

/// Messages waiting for the forwarder; the enricher sends one at a time.
pub const FORWARDER_MAILBOX: usize = 4;
/// Largest aggregator answer read (it is a small JSON object).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How often the aggregator's `/health` is probed until it first answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// POSTs running at once at most, splits of a refused batch included.
pub const MAX_POSTS: usize = 8;

/// Records for the aggregator: an NDJSON piece and the file position it completes.
#[derive(Message)]
#[rtype(result = "Result<(), Refused>")]
pub struct Records(pub Piece);

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

pub struct Forwarder {
    settings: ForwarderSettings,
    health_url: String,
    client: awc::Client,
    outbox: Outbox,
    acks_to: Recipient<Acked>,
    parked: VecDeque<(Piece, oneshot::Sender<()>)>,
    linger_armed: Option<Instant>,
    flushing: bool,
    fault: Fault,
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

impl Forwarder {
    pub fn new(
        settings: ForwarderSettings,
        splicer: Arc<Splicer>,
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
        let limits = Limits {
            max_records: settings.batch_max_records,
            max_bytes: settings.batch_max_bytes,
            linger: settings.batch_linger,
            max_in_flight: settings.max_in_flight_batches,
            max_posts: MAX_POSTS,
            gzip: settings.gzip,
        };
        let backoff = Backoff::new(settings.retry_initial, settings.retry_max, seed);
        Forwarder {
            client: client(&settings),
            outbox: Outbox::new(limits, splicer, backoff),
            settings,
            health_url,
            acks_to,
            parked: VecDeque::new(),
            linger_armed: None,
            flushing: false,
            fault,
            metrics,
            readiness,
        }
    }

    /// Takes parked pieces while the outbox can, closes what is due, starts POSTs.
    fn run(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        loop {
            if let Some(deadline) = self.outbox.tick(now, self.flushing) {
                if self.linger_armed != Some(deadline) {
                    self.linger_armed = Some(deadline);
                    ctx.run_later(deadline.saturating_duration_since(now), |act, ctx| {
                        act.linger_armed = None;
                        act.run(ctx);
                    });
                }
            }
            let Some((piece, reply)) = self.parked.pop_front() else {
                break;
            };
            match self.outbox.offer(piece, now) {
                Ok(()) => {
                    let _ = reply.send(());
                }
                Err(piece) => {
                    self.parked.push_front((piece, reply));
                    break;
                }
            }
        }
        let released = self.outbox.take_released();
        self.release(released, ctx);
        self.metrics
            .batches_in_flight
            .set(self.outbox.in_flight() as i64);
        while let Some((part, body, retry)) = self.outbox.next_send() {
            if retry {
                self.metrics.retries.inc();
            }
            self.launch(part, body, ctx);
        }
    }

    fn release(&mut self, acks: Vec<Ack>, ctx: &mut Context<Self>) {
        if acks.is_empty() {
            return;
        }
        // At most one message per batch, bounded by the batches in flight.
        let sent = self.acks_to.send(Acked(acks));
        ctx.spawn(sent.into_actor(self).map(|result, _, _| {
            if result.is_err() {
                log::warn!("The tailer did not take an acknowledgement; the next one covers it.");
            }
        }));
    }

    fn launch(&mut self, part: PartId, body: actix_web::web::Bytes, ctx: &mut Context<Self>) {
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
        let fut = async move {
            match req.send_body(body).await {
                Err(e) => Answer::Failed {
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
                        Answer::Accepted { duplicates }
                    } else {
                        Answer::Refused {
                            status: status.as_u16(),
                            detail: String::from_utf8_lossy(&answer).chars().take(300).collect(),
                        }
                    }
                }
            }
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |answer, act, ctx| act.answered(part, answer, ctx)),
        );
    }

    fn answered(&mut self, part: PartId, answer: Answer, ctx: &mut Context<Self>) {
        if !matches!(answer, Answer::Failed { .. }) {
            self.readiness.set_aggregator_answered();
        }
        match self.outbox.answered(part, answer, Instant::now()) {
            Verdict::Stored {
                records,
                bytes,
                duplicates,
                attempts,
                released,
                latency,
            } => {
                if attempts > 0 {
                    log::info!(attempts = attempts + 1; "The aggregator took a batch after retries.");
                }
                let m = &self.metrics;
                m.records_forwarded.inc_by(records as u64);
                m.forwarded_bytes.inc_by(bytes as u64);
                m.batches_sent.inc();
                m.duplicates_reported.inc_by(duplicates);
                if let Some(latency) = latency {
                    m.ack_latency.observe(latency.as_secs_f64());
                }
                self.release(released, ctx);
            }
            Verdict::Retry {
                part,
                delay,
                attempts,
                error_type,
                detail,
                connection,
            } => {
                if connection {
                    // A fresh client: a broken connection pool must not fail every retry.
                    self.client = client(&self.settings);
                }
                self.metrics
                    .batch_failures
                    .with_label_values(&[&error_type])
                    .inc();
                // One line per part's first failure, then one every tenth attempt.
                if attempts == 1 || attempts % 10 == 0 {
                    log::warn!(
                        attempts = attempts,
                        error_type = error_type.as_str(),
                        detail = detail.as_str(),
                        retry_in_ms = delay.as_millis() as u64;
                        "The aggregator did not take a batch; it is kept and retried."
                    );
                }
                ctx.run_later(delay, move |act, ctx| {
                    act.outbox.retry_due(part);
                    act.run(ctx);
                });
            }
            Verdict::Split { records, status } => {
                self.metrics.batch_splits.inc();
                self.metrics
                    .batch_failures
                    .with_label_values(&[&format!("http_{status}")])
                    .inc();
                log::info!(records = records, status = status; "The aggregator refused a batch for its content; it is split to find the records it refuses.");
            }
            Verdict::Isolated {
                status,
                event_id,
                source,
                offset,
            } => {
                self.metrics.records_isolated.inc();
                log::warn!(
                    status = status,
                    event_id = event_id.as_str(),
                    file = source.as_deref().unwrap_or(""),
                    offset = offset.unwrap_or(0);
                    "The aggregator refused one record; it is sent again as a message carrying its text."
                );
            }
            Verdict::Unknown => {}
        }
        self.run(ctx);
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
        self.run(ctx);
    }
}

impl Supervised for Forwarder {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        log::warn!(unacknowledged_batches = self.outbox.in_flight(); "The forwarder failed and restarts; its unacknowledged batches are sent again.");
        self.metrics
            .actor_restarts
            .with_label_values(&["forwarder"])
            .inc();
        // The old context's POSTs and timers are gone; the batches are not. The parked
        // pieces' replies went with the old context's futures: the enricher is told
        // "refused" and its chunk is read again.
        self.outbox.requeue_all();
        self.parked.clear();
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
        let (tx, rx) = oneshot::channel();
        self.parked.push_back((msg.0, tx));
        self.run(ctx);
        Box::pin(rx.map(|r| r.map_err(|_| Refused)))
    }
}

impl Handler<Flush> for Forwarder {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flushing = true;
        self.run(ctx);
    }
}

impl Handler<Outstanding> for Forwarder {
    type Result = usize;

    fn handle(&mut self, _: Outstanding, ctx: &mut Context<Self>) -> usize {
        self.run(ctx);
        self.outbox.outstanding() + self.parked.len()
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
