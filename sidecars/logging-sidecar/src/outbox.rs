//! Everything the forwarder decides, as a plain struct: which piece goes into which
//! batch, which POST starts next, what an answer means, and when file positions may be
//! acknowledged.
//!
//! - **Admission.** A piece is taken into the open batch only if the batch stays within
//!   `BATCH_MAX_RECORDS` and `BATCH_MAX_BYTES`; otherwise the open batch is closed
//!   first, and when no room is left for another closed batch the piece is given back
//!   ([`Outbox::offer`]), which holds the enricher and the tailer: the file is the buffer.
//! - **Parts.** A closed batch is sent as one part; parts are what a POST carries. At
//!   most `max_posts` POSTs run at once.
//! - **Answers.** A 2xx completes a part. A 4xx that says the *content* was refused
//!   (any 4xx but 401, 403, 404, 405, 408, 415 and 429, which name the request, the
//!   credentials or a passing state) splits the part in two halves, each sent on its own,
//!   until the refused record stands alone; that record is then rewritten as a message
//!   carrying its text and the same `event_id` ([`Splicer::rewrite_rejected`]) and sent
//!   again. Nothing is dropped and a refused record never blocks the others: a batch
//!   of `n` records with one refused record costs about `2·log2(n)` extra POSTs. Anything
//!   else (connection errors, 5xx, the request-level 4xx) is retried with backoff, as is
//!   a rewritten record that is still refused (then the aggregator refuses even a plain
//!   message, which no splitting can fix).
//! - **Acknowledgements.** A batch's file positions are released once all its parts are
//!   stored, and only in batch order ([`AckOrder`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use chrono::{SecondsFormat, Utc};

use crate::batch::{gzip_bytes, source_of, Ack, AckOrder, Backoff, Builder};
use crate::enrich::{id_of_record, offset_of_id, Splicer};

/// The forwarder's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub linger: Duration,
    /// Closed batches not yet acknowledged, at most.
    pub max_in_flight: usize,
    /// POSTs running at once, at most.
    pub max_posts: usize,
    pub gzip: bool,
}

/// Records for the aggregator: NDJSON, and the file position they complete.
#[derive(Debug, Clone)]
pub struct Piece {
    pub body: Vec<u8>,
    pub records: usize,
    pub ack: Option<Ack>,
    /// The file the records came from, for warnings.
    pub source: Arc<str>,
}

/// Names one POST's worth of records.
pub type PartId = u64;

/// What the aggregator answered to one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accepted { duplicates: u64 },
    Refused { status: u16, detail: String },
    Failed { error: String },
}

/// What an answer led to, for the actor's metrics, logs and timers.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The part is stored; `released` are file positions now safe to checkpoint, and
    /// `latency` is set when this completed its batch.
    Stored {
        records: usize,
        bytes: usize,
        duplicates: u64,
        attempts: u32,
        released: Vec<Ack>,
        latency: Option<Duration>,
    },
    /// Call [`Outbox::retry_due`] for the part after `delay`.
    Retry {
        part: PartId,
        delay: Duration,
        attempts: u32,
        error_type: String,
        detail: String,
        /// A connection-level failure: the HTTP client is best replaced.
        connection: bool,
    },
    /// The aggregator refused the content of a part of `records` records: split in two.
    Split { records: usize, status: u16 },
    /// One record the aggregator refused, re-sent as a message with its `event_id`.
    Isolated {
        status: u16,
        event_id: String,
        source: Option<Arc<str>>,
        offset: Option<u64>,
    },
    /// An answer for a part no longer known (cannot happen; ignored).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    Sending,
    Waiting,
}

#[derive(Debug)]
struct Part {
    seq: u64,
    /// Index of its first record within its batch.
    first: usize,
    records: usize,
    raw: Bytes,
    body: Bytes,
    state: State,
    attempts: u32,
    /// Already the rewritten form of one refused record.
    rewritten: bool,
}

#[derive(Debug)]
struct Closed {
    acks: Vec<Ack>,
    sources: Vec<(usize, Arc<str>)>,
    closed_at: Instant,
    parts_left: usize,
}

/// See the module comment.
#[derive(Debug)]
pub struct Outbox {
    limits: Limits,
    splicer: Arc<Splicer>,
    backoff: Backoff,
    builder: Builder,
    next_seq: u64,
    next_part: PartId,
    closed: BTreeMap<u64, Closed>,
    parts: BTreeMap<PartId, Part>,
    order: AckOrder,
    sending: usize,
    /// Positions released without a POST (batches of skipped bytes only).
    released: Vec<Ack>,
}

/// Whether a refusal names the records rather than the request.
pub fn refuses_content(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 404 | 405 | 408 | 415 | 429)
}

impl Outbox {
    pub fn new(limits: Limits, splicer: Arc<Splicer>, backoff: Backoff) -> Outbox {
        Outbox {
            limits,
            splicer,
            backoff,
            builder: Builder::default(),
            next_seq: 0,
            next_part: 0,
            closed: BTreeMap::new(),
            parts: BTreeMap::new(),
            order: AckOrder::default(),
            sending: 0,
            released: Vec::new(),
        }
    }

    fn has_room(&self) -> bool {
        self.closed.len() < self.limits.max_in_flight
    }

    /// Takes `piece` into the open batch if the limits allow it now, else gives it back
    /// to be offered again after the next answer.
    pub fn offer(&mut self, piece: Piece, now: Instant) -> Result<(), Piece> {
        let l = &self.limits;
        if self
            .builder
            .would_overflow(piece.body.len(), piece.records, l.max_bytes, l.max_records)
        {
            if !self.has_room() {
                return Err(piece);
            }
            self.close(now);
        }
        let reserve = self.limits.max_bytes.max(piece.body.len());
        self.builder.push(
            &piece.body,
            piece.records,
            piece.ack,
            &piece.source,
            now,
            reserve,
        );
        Ok(())
    }

    /// Closes the open batch when it is due (full, `flushing`, or lingered long enough)
    /// and there is room; returns when to look again if it is not due yet.
    pub fn tick(&mut self, now: Instant, flushing: bool) -> Option<Instant> {
        let deadline = self.builder.deadline(self.limits.linger)?;
        let full = self
            .builder
            .is_full(self.limits.max_records, self.limits.max_bytes);
        if full || flushing || deadline <= now {
            if self.has_room() {
                self.close(now);
            }
            None
        } else {
            Some(deadline)
        }
    }

    fn close(&mut self, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let batch = self.builder.close(seq, now);
        if batch.records == 0 {
            // Only skipped bytes: nothing to POST, but the file position moves on, in order.
            self.released.extend(self.order.complete(seq, batch.acks));
            return;
        }
        self.closed.insert(
            seq,
            Closed {
                acks: batch.acks,
                sources: batch.sources,
                closed_at: now,
                parts_left: 1,
            },
        );
        self.add_part(seq, 0, batch.records, batch.body, false, 0);
    }

    fn add_part(
        &mut self,
        seq: u64,
        first: usize,
        records: usize,
        raw: Bytes,
        rewritten: bool,
        attempts: u32,
    ) {
        let body = if self.limits.gzip {
            gzip_bytes(&raw)
        } else {
            raw.clone()
        };
        self.parts.insert(
            self.next_part,
            Part {
                seq,
                first,
                records,
                raw,
                body,
                state: State::Queued,
                attempts,
                rewritten,
            },
        );
        self.next_part += 1;
    }

    /// The next POST to start, if any and if fewer than `max_posts` run: its part, its
    /// body, and whether it is a retry.
    pub fn next_send(&mut self) -> Option<(PartId, Bytes, bool)> {
        if self.sending >= self.limits.max_posts {
            return None;
        }
        let (id, p) = self
            .parts
            .iter_mut()
            .find(|(_, p)| p.state == State::Queued)?;
        p.state = State::Sending;
        self.sending += 1;
        Some((*id, p.body.clone(), p.attempts > 0))
    }

    /// The aggregator answered the POST of `part`.
    pub fn answered(&mut self, part: PartId, answer: Answer, now: Instant) -> Verdict {
        match self.parts.get(&part) {
            Some(p) if p.state == State::Sending => {}
            _ => return Verdict::Unknown,
        }
        self.sending -= 1;
        match answer {
            Answer::Accepted { duplicates } => self.stored(part, duplicates, now),
            Answer::Refused { status, .. } if refuses_content(status) => self.isolate(part, status),
            Answer::Refused { status, detail } => {
                self.retry(part, format!("http_{status}"), detail, false)
            }
            Answer::Failed { error } => self.retry(part, "connection".to_owned(), error, true),
        }
    }

    fn stored(&mut self, part: PartId, duplicates: u64, now: Instant) -> Verdict {
        let Some(p) = self.parts.remove(&part) else {
            return Verdict::Unknown;
        };
        let mut released = Vec::new();
        let mut latency = None;
        if let Some(c) = self.closed.get_mut(&p.seq) {
            c.parts_left -= 1;
            if c.parts_left == 0 {
                if let Some(c) = self.closed.remove(&p.seq) {
                    latency = Some(now.saturating_duration_since(c.closed_at));
                    released = self.order.complete(p.seq, c.acks);
                }
            }
        }
        Verdict::Stored {
            records: p.records,
            bytes: p.body.len(),
            duplicates,
            attempts: p.attempts,
            released,
            latency,
        }
    }

    fn retry(
        &mut self,
        part: PartId,
        error_type: String,
        detail: String,
        connection: bool,
    ) -> Verdict {
        let Some(p) = self.parts.get_mut(&part) else {
            return Verdict::Unknown;
        };
        p.attempts += 1;
        p.state = State::Waiting;
        Verdict::Retry {
            part,
            delay: self.backoff.delay(p.attempts),
            attempts: p.attempts,
            error_type,
            detail,
            connection,
        }
    }

    fn isolate(&mut self, part: PartId, status: u16) -> Verdict {
        let Some(p) = self.parts.get(&part) else {
            return Verdict::Unknown;
        };
        if p.rewritten {
            let detail = "the aggregator refuses even a record rewritten as a plain message";
            return self.retry(part, format!("http_{status}"), detail.to_owned(), false);
        }
        let Some(p) = self.parts.remove(&part) else {
            return Verdict::Unknown;
        };
        if p.records > 1 {
            let half = p.records / 2;
            let cut = memchr::memchr_iter(b'\n', &p.raw)
                .nth(half - 1)
                .map_or(p.raw.len(), |nl| nl + 1);
            if let Some(c) = self.closed.get_mut(&p.seq) {
                c.parts_left += 1;
            }
            self.add_part(p.seq, p.first, half, p.raw.slice(..cut), false, 0);
            self.add_part(
                p.seq,
                p.first + half,
                p.records - half,
                p.raw.slice(cut..),
                false,
                0,
            );
            return Verdict::Split {
                records: p.records,
                status,
            };
        }
        let record = p.raw.strip_suffix(b"\n").unwrap_or(&p.raw);
        let timestamp = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let rewritten = self.splicer.rewrite_rejected(record, status, &timestamp);
        let id = id_of_record(record);
        let verdict = Verdict::Isolated {
            status,
            event_id: id.map_or_else(String::new, |id| String::from_utf8_lossy(id).into_owned()),
            source: self
                .closed
                .get(&p.seq)
                .and_then(|c| source_of(&c.sources, p.first))
                .cloned(),
            offset: id.and_then(offset_of_id),
        };
        self.add_part(p.seq, p.first, 1, rewritten.into(), true, p.attempts);
        verdict
    }

    /// The retry delay of `part` is over: it may be sent again.
    pub fn retry_due(&mut self, part: PartId) {
        if let Some(p) = self.parts.get_mut(&part) {
            if p.state == State::Waiting {
                p.state = State::Queued;
            }
        }
    }

    /// The POSTs and timers in flight are gone (the actor restarted): send everything
    /// unacknowledged again.
    pub fn requeue_all(&mut self) {
        for p in self.parts.values_mut() {
            p.state = State::Queued;
        }
        self.sending = 0;
    }

    /// File positions released without a POST since the last call.
    pub fn take_released(&mut self) -> Vec<Ack> {
        std::mem::take(&mut self.released)
    }

    /// Closed batches not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.closed.len()
    }

    /// Batches not yet acknowledged, the open one and those held in order included
    /// (shutdown waits for 0).
    pub fn outstanding(&self) -> usize {
        self.closed.len() + usize::from(!self.builder.is_empty()) + self.order.held()
    }
}

#[cfg(test)]
mod tests;
