//! The enricher actor: turns a chunk of raw lines into the contract's NDJSON records.
//!
//! Second stage of the pipeline, between the tailer and the forwarder. The work is in
//! [`crate::enrich`]; this actor stamps the batch's `sidecar_timestamp` once, counts, and
//! passes the records on with `send(..).await`, replying to the tailer only once the
//! forwarder has taken them: a full forwarder therefore stalls the enricher, and with it
//! the tailer.
//!
//! Under supervision it holds nothing worth keeping: a chunk lost in a failure is
//! refused to the tailer, which reads it again.

use std::sync::Arc;

use actix::prelude::*;
use chrono::{SecondsFormat, Utc};

use crate::batch::Ack;
use crate::enrich::Splicer;
use crate::fault::Fault;
use crate::fingerprint::FileKey;
use crate::forwarder::{Forwarder, Records, Refused};
use crate::lines::Line;
use crate::metrics::Metrics;
use crate::outbox::Piece;

/// Chunks waiting for the enricher; the tailer sends one at a time.
pub const ENRICHER_MAILBOX: usize = 2;

/// Complete lines of one file, all in one buffer: one message per chunk, never per line.
#[derive(Message)]
#[rtype(result = "Result<(), Refused>")]
pub struct LineBatch {
    pub key: FileKey,
    /// The file instance's stream, for the `event_id`s.
    pub stream: u64,
    pub data: Vec<u8>,
    pub lines: Vec<Line>,
    /// The file offset after the last byte of this chunk.
    pub end_offset: u64,
    /// The file's path, for warnings about its records.
    pub source: Arc<str>,
}

/// The batch limits a piece must fit in.
#[derive(Debug, Clone, Copy)]
pub struct PieceLimits {
    pub max_records: usize,
    pub max_bytes: usize,
}

pub struct Enricher {
    splicer: Arc<Splicer>,
    limits: PieceLimits,
    forwarder: Addr<Forwarder>,
    fault: Fault,
    metrics: Metrics,
}

impl Enricher {
    pub fn new(
        splicer: Arc<Splicer>,
        limits: PieceLimits,
        forwarder: Addr<Forwarder>,
        fault: Fault,
        metrics: Metrics,
    ) -> Enricher {
        Enricher {
            splicer,
            limits,
            forwarder,
            fault,
            metrics,
        }
    }
}

impl Actor for Enricher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(ENRICHER_MAILBOX);
    }
}

impl Supervised for Enricher {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        log::warn!("The enricher failed and restarts; the chunk it held is read again.");
        self.metrics
            .actor_restarts
            .with_label_values(&["enricher"])
            .inc();
    }
}

impl Handler<LineBatch> for Enricher {
    type Result = ResponseFuture<Result<(), Refused>>;

    /// Enriches the chunk one piece at a time, each within the batch limits, and hands
    /// each on before writing the next: however many lines a chunk holds (a run of
    /// one-byte lines makes records far larger than the chunk), one piece at most is held.
    fn handle(&mut self, msg: LineBatch, ctx: &mut Context<Self>) -> Self::Result {
        if self.fault.fires() {
            log::error!("Injected fault: the enricher fails while enriching a chunk.");
            ctx.stop();
            return Box::pin(async { Err(Refused) });
        }
        let timestamp = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let (splicer, limits, forwarder, metrics) = (
            self.splicer.clone(),
            self.limits,
            self.forwarder.clone(),
            self.metrics.clone(),
        );
        Box::pin(async move {
            let mut at = 0;
            loop {
                let mut body = Vec::new();
                let (tally, taken) = splicer.enrich_within(
                    msg.stream,
                    &msg.data,
                    &msg.lines[at..],
                    &timestamp,
                    limits.max_records,
                    limits.max_bytes,
                    &mut body,
                );
                at += taken;
                metrics.lines_not_json.inc_by(tally.not_json as u64);
                metrics.lines_invalid_utf8.inc_by(tally.invalid_utf8 as u64);
                metrics.lines_truncated.inc_by(tally.truncated as u64);
                metrics.lines_rejected.inc_by(tally.rejected as u64);
                metrics.lines_blank.inc_by(tally.blank as u64);
                let last = at >= msg.lines.len();
                // A piece ends where the next line starts, or with the chunk.
                let offset = if last {
                    msg.end_offset
                } else {
                    msg.lines[at].offset
                };
                let piece = Piece {
                    body,
                    records: tally.records,
                    ack: Some(Ack {
                        key: msg.key,
                        stream: msg.stream,
                        offset,
                    }),
                    source: msg.source.clone(),
                };
                match forwarder.send(Records(piece)).await {
                    Ok(Ok(())) => {}
                    _ => return Err(Refused),
                }
                if last {
                    return Ok(());
                }
            }
        })
    }
}
