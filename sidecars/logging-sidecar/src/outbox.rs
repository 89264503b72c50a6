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
mod tests {
    use super::*;
    use crate::fingerprint::FileKey;
    use crate::lines::Line;

    const KEY: FileKey = FileKey {
        dev: 1,
        ino: 2,
        fingerprint: 0xf00,
    };

    fn limits(max_records: usize, max_bytes: usize) -> Limits {
        Limits {
            max_records,
            max_bytes,
            linger: Duration::from_millis(5),
            max_in_flight: 2,
            max_posts: 64,
            gzip: false,
        }
    }

    fn splicer() -> Arc<Splicer> {
        Arc::new(Splicer::new("svc", "svc-logging-sidecar", "test"))
    }

    fn outbox(l: Limits) -> Outbox {
        Outbox::new(
            l,
            splicer(),
            Backoff::new(Duration::from_millis(10), Duration::from_millis(100), 7),
        )
    }

    /// A piece of enriched records, one per line of `lines`, starting at file `offset`.
    fn piece(lines: &[&str], offset: u64) -> Piece {
        let mut data = Vec::new();
        let mut spans = Vec::new();
        for l in lines {
            spans.push(Line {
                start: data.len() as u32,
                len: l.len() as u32,
                offset: offset + data.len() as u64,
                truncated: false,
            });
            data.extend_from_slice(l.as_bytes());
            data.push(b'\n');
        }
        let mut body = Vec::new();
        let t = splicer().enrich(0xf00, &data, &spans, "t", &mut body);
        Piece {
            body,
            records: t.records,
            ack: Some(Ack {
                key: KEY,
                offset: offset + data.len() as u64,
            }),
            source: "/logs/app.log".into(),
        }
    }

    fn records_of(body: &[u8]) -> Vec<serde_json::Value> {
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn limits_hold_and_a_full_outbox_gives_pieces_back() {
        let now = Instant::now();
        let mut o = outbox(limits(3, 1 << 20));
        let mut offset = 0;
        let mut given_back = None;
        for _ in 0..10 {
            let p = piece(&[r#"{"a":1}"#, r#"{"a":2}"#], offset);
            offset += 16;
            if let Err(p) = o.offer(p, now) {
                given_back = Some(p);
                break;
            }
        }
        // Two closed batches of 2 records (2 + 2 > 3), and the third open one is full
        // enough that the next piece cannot go in: given back.
        assert!(given_back.is_some());
        assert_eq!(o.in_flight(), 2);
        let mut sizes = Vec::new();
        while let Some((_, body, _)) = o.next_send() {
            sizes.push(records_of(&body).len());
        }
        assert_eq!(sizes, [2, 2]);
    }

    #[test]
    fn acks_wait_for_every_part_and_for_earlier_batches() {
        let now = Instant::now();
        let mut o = outbox(limits(2, 1 << 20));
        o.offer(piece(&[r#"{"a":1}"#, r#"{"a":2}"#], 0), now)
            .unwrap();
        o.offer(piece(&[r#"{"b":1}"#], 16), now).unwrap();
        assert_eq!(o.tick(now + Duration::from_secs(1), false), None);
        let (first, _, _) = o.next_send().unwrap();
        let (second, _, _) = o.next_send().unwrap();
        // The second batch is stored first: held back.
        match o.answered(second, Answer::Accepted { duplicates: 0 }, now) {
            Verdict::Stored { released, .. } => assert!(released.is_empty()),
            v => panic!("{v:?}"),
        }
        // The first is refused for its content: split, then both halves stored.
        let v = o.answered(
            first,
            Answer::Refused {
                status: 400,
                detail: String::new(),
            },
            now,
        );
        assert_eq!(
            v,
            Verdict::Split {
                records: 2,
                status: 400
            }
        );
        let (a, _, _) = o.next_send().unwrap();
        let (b, _, _) = o.next_send().unwrap();
        assert!(matches!(
            o.answered(a, Answer::Accepted { duplicates: 0 }, now),
            Verdict::Stored { ref released, .. } if released.is_empty()
        ));
        match o.answered(b, Answer::Accepted { duplicates: 0 }, now) {
            Verdict::Stored { released, .. } => {
                assert_eq!(
                    released.iter().map(|a| a.offset).collect::<Vec<_>>(),
                    [16, 24]
                );
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(o.outstanding(), 0);
    }

    /// A fake aggregator: refuses a body (400) when it holds a record whose `poison`
    /// field is true, otherwise stores every record.
    fn run_to_completion(o: &mut Outbox, now: Instant) -> (Vec<serde_json::Value>, Vec<Verdict>) {
        let mut stored = Vec::new();
        let mut verdicts = Vec::new();
        for _ in 0..10_000 {
            let Some((part, body, _)) = o.next_send() else {
                break;
            };
            let records = records_of(&body);
            let answer = if records.iter().any(|r| r["poison"] == true) {
                Answer::Refused {
                    status: 400,
                    detail: "no".into(),
                }
            } else {
                stored.extend(records);
                Answer::Accepted { duplicates: 0 }
            };
            verdicts.push(o.answered(part, answer, now));
        }
        (stored, verdicts)
    }

    #[test]
    fn refused_records_are_isolated_and_sent_as_messages_with_their_ids() {
        let now = Instant::now();
        let mut o = outbox(limits(1000, 1 << 20));
        let lines: Vec<String> = (0..100)
            .map(|i| {
                if i == 17 || i == 64 {
                    format!(r#"{{"n":{i},"poison":true}}"#)
                } else {
                    format!(r#"{{"n":{i}}}"#)
                }
            })
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let p = piece(&refs, 0);
        let ids: Vec<_> = records_of(&p.body)
            .iter()
            .map(|r| r["event_id"].clone())
            .collect();
        let end = p.ack.unwrap().offset;
        o.offer(p, now).unwrap();
        o.tick(now, true);
        let (stored, verdicts) = run_to_completion(&mut o, now);
        // Every record stored exactly once, the two refused ones as messages.
        assert_eq!(stored.len(), 100);
        let mut seen: Vec<_> = stored.iter().map(|r| r["event_id"].clone()).collect();
        seen.sort_by_key(|v| v.to_string());
        let mut want = ids.clone();
        want.sort_by_key(|v| v.to_string());
        assert_eq!(seen, want);
        let isolated: Vec<_> = verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Isolated {
                    event_id,
                    source,
                    offset,
                    ..
                } => Some((event_id.clone(), source.clone(), *offset)),
                _ => None,
            })
            .collect();
        assert_eq!(isolated.len(), 2);
        assert_eq!(isolated[0].0, ids[17].as_str().unwrap());
        assert_eq!(isolated[0].1.as_deref(), Some("/logs/app.log"));
        let at_17: u64 = lines[..17].iter().map(|l| l.len() as u64 + 1).sum();
        assert_eq!(isolated[0].2, Some(at_17));
        let messages: Vec<_> = stored
            .iter()
            .filter(|r| r["sidecar_not_json"] == true)
            .collect();
        assert_eq!(messages.len(), 2);
        assert!(messages[0]["message"]
            .as_str()
            .unwrap()
            .contains("\"poison\":true"));
        // About 2·log2(n) extra POSTs per refused record, not one per record.
        let posts = verdicts.len();
        assert!(posts < 40, "{posts} POSTs");
        // The file position is released once all is stored.
        let released: Vec<u64> = verdicts
            .iter()
            .flat_map(|v| match v {
                Verdict::Stored { released, .. } => released.iter().map(|a| a.offset).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(released, [end]);
        assert_eq!(o.outstanding(), 0);
    }

    #[test]
    fn request_level_refusals_and_failures_are_retried_not_split() {
        let now = Instant::now();
        for answer in [
            Answer::Refused {
                status: 401,
                detail: String::new(),
            },
            Answer::Refused {
                status: 429,
                detail: String::new(),
            },
            Answer::Refused {
                status: 503,
                detail: String::new(),
            },
            Answer::Failed {
                error: "refused".into(),
            },
        ] {
            let mut o = outbox(limits(1000, 1 << 20));
            o.offer(piece(&[r#"{"a":1}"#, r#"{"a":2}"#], 0), now)
                .unwrap();
            o.tick(now, true);
            let (part, _, _) = o.next_send().unwrap();
            let v = o.answered(part, answer.clone(), now);
            let Verdict::Retry { part: again, .. } = v else {
                panic!("{answer:?}: {v:?}");
            };
            assert!(o.next_send().is_none(), "waits for its delay");
            o.retry_due(again);
            let (_, _, retry) = o.next_send().unwrap();
            assert!(retry);
        }
    }

    #[test]
    fn a_rewritten_record_still_refused_is_retried_with_backoff() {
        let now = Instant::now();
        let mut o = outbox(limits(1000, 1 << 20));
        o.offer(piece(&[r#"{"a":1}"#], 0), now).unwrap();
        o.tick(now, true);
        let refused = || Answer::Refused {
            status: 400,
            detail: String::new(),
        };
        let (part, _, _) = o.next_send().unwrap();
        assert!(matches!(
            o.answered(part, refused(), now),
            Verdict::Isolated { .. }
        ));
        let (part, _, _) = o.next_send().unwrap();
        assert!(matches!(
            o.answered(part, refused(), now),
            Verdict::Retry { .. }
        ));
        assert_eq!(o.outstanding(), 1);
    }

    #[test]
    fn a_batch_of_skipped_bytes_only_releases_its_position() {
        let now = Instant::now();
        let mut o = outbox(limits(10, 1 << 20));
        let p = Piece {
            body: Vec::new(),
            records: 0,
            ack: Some(Ack {
                key: KEY,
                offset: 99,
            }),
            source: "x".into(),
        };
        o.offer(p, now).unwrap();
        o.tick(now, true);
        assert!(o.next_send().is_none());
        assert_eq!(o.take_released()[0].offset, 99);
    }

    #[test]
    fn concurrent_posts_are_capped() {
        let now = Instant::now();
        let mut l = limits(1, 1 << 20);
        l.max_posts = 1;
        let mut o = outbox(l);
        o.offer(piece(&[r#"{"a":1}"#], 0), now).unwrap();
        o.offer(piece(&[r#"{"a":2}"#], 8), now).unwrap();
        o.tick(now, true);
        assert!(o.next_send().is_some());
        assert!(o.next_send().is_none());
    }
}
