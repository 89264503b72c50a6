//! Batches, the order of acknowledgements and retry delays: the forwarder's plain logic.
//!
//! Records arrive as NDJSON pieces, each carrying the file position it completes (an
//! [`Ack`]). A [`Builder`] gathers pieces until the record count, the byte size or the
//! linger time says the batch is done; a piece that would take it past either limit
//! starts the next batch instead ([`Builder::would_overflow`]), so the limits are hard. Batches are numbered; [`AckOrder`] releases a
//! batch's acks only once every earlier batch has been acknowledged too, so a checkpoint
//! never moves past a line the aggregator has not stored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;

use crate::fingerprint::FileKey;

/// The aggregator stored everything before these positions: the forwarder's
/// acknowledgements, sent to whoever reads the files.
#[derive(actix::Message, Debug)]
#[rtype(result = "()")]
pub struct Acked(pub Vec<Ack>);

/// "Everything of the file instance `key` with `stream` before `offset` is handed over."
///
/// The stream names the instance: a file truncated in place that starts again with the
/// same first line has the same key, and an acknowledgement of the old instance that
/// arrives late must not move the new one's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub key: FileKey,
    pub stream: u64,
    pub offset: u64,
}

/// A closed batch: its NDJSON text (not yet gzipped), ready to POST.
#[derive(Debug, Clone)]
pub struct Batch {
    pub seq: u64,
    pub body: Bytes,
    pub records: usize,
    pub acks: Vec<Ack>,
    /// The file each record came from: `(index of its first record, path)` per run.
    pub sources: Vec<(usize, Arc<str>)>,
    pub closed_at: Instant,
}

impl Batch {
    /// The file record number `index` came from.
    pub fn source_of(&self, index: usize) -> Option<&Arc<str>> {
        source_of(&self.sources, index)
    }
}

/// In `(index of first record, path)` runs, the file record number `index` came from.
pub fn source_of(sources: &[(usize, Arc<str>)], index: usize) -> Option<&Arc<str>> {
    let after = sources.partition_point(|(first, _)| *first <= index);
    after.checked_sub(1).map(|i| &sources[i].1)
}

/// Gathers NDJSON pieces into one batch.
#[derive(Debug, Default)]
pub struct Builder {
    body: Vec<u8>,
    records: usize,
    acks: Vec<Ack>,
    sources: Vec<(usize, Arc<str>)>,
    opened: Option<Instant>,
}

impl Builder {
    /// Adds a piece of `records` records; `ack`, when given, completes a file position.
    ///
    /// `reserve` is the expected batch size: the buffer is sized once per batch instead
    /// of doubling past it, which keeps the peak memory near what the batch needs.
    pub fn push(
        &mut self,
        piece: &[u8],
        records: usize,
        ack: Option<Ack>,
        source: &Arc<str>,
        now: Instant,
        reserve: usize,
    ) {
        if self.opened.is_none() {
            self.opened = Some(now);
            self.body.reserve_exact(reserve.max(piece.len()));
        }
        if records > 0 && !matches!(self.sources.last(), Some((_, s)) if s == source) {
            self.sources.push((self.records, source.clone()));
        }
        self.body.extend_from_slice(piece);
        self.records += records;
        if let Some(ack) = ack {
            // Pieces of one file come in order: the latest position replaces the last.
            match self
                .acks
                .iter_mut()
                .find(|a| a.key == ack.key && a.stream == ack.stream)
            {
                Some(a) => a.offset = a.offset.max(ack.offset),
                None => self.acks.push(ack),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.opened.is_none()
    }

    pub fn len_bytes(&self) -> usize {
        self.body.len()
    }

    /// Whether a piece of `bytes` and `records` more must start a new batch instead: the
    /// limits hold for every batch but one made of a single piece larger than them.
    pub fn would_overflow(
        &self,
        bytes: usize,
        records: usize,
        max_bytes: usize,
        max_records: usize,
    ) -> bool {
        !self.is_empty()
            && (self.body.len() + bytes > max_bytes || self.records + records > max_records)
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// Whether the batch is full by count or size.
    pub fn is_full(&self, max_records: usize, max_bytes: usize) -> bool {
        self.records >= max_records || self.body.len() >= max_bytes
    }

    /// When the batch must go even if not full.
    pub fn deadline(&self, linger: Duration) -> Option<Instant> {
        self.opened.map(|t| t + linger)
    }

    /// Closes the batch.
    pub fn close(&mut self, seq: u64, now: Instant) -> Batch {
        let batch = Batch {
            seq,
            body: std::mem::take(&mut self.body).into(),
            records: self.records,
            acks: std::mem::take(&mut self.acks),
            sources: std::mem::take(&mut self.sources),
            closed_at: now,
        };
        self.records = 0;
        self.opened = None;
        batch
    }
}

/// `body` gzipped at the fast level.
pub fn gzip_bytes(body: &[u8]) -> Bytes {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut enc = GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default().into()
}

/// Releases acknowledgements in batch order.
#[derive(Debug, Default)]
pub struct AckOrder {
    next: u64,
    done: BTreeMap<u64, Vec<Ack>>,
}

impl AckOrder {
    /// Batch `seq` was acknowledged: returns the acks now safe to checkpoint.
    pub fn complete(&mut self, seq: u64, acks: Vec<Ack>) -> Vec<Ack> {
        self.done.insert(seq, acks);
        let mut released = Vec::new();
        while let Some(acks) = self.done.remove(&self.next) {
            released.extend(acks);
            self.next += 1;
        }
        released
    }

    /// Batches acknowledged but held back behind an earlier one.
    pub fn held(&self) -> usize {
        self.done.len()
    }
}

/// Exponential backoff with jitter: `initial · 2^n`, capped, then drawn from its upper half.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            rng: seed | 1,
        }
    }

    /// The delay before retry number `attempt` (1 for the first retry).
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self.initial.saturating_mul(1 << exp).min(self.max);
        // xorshift64: jitter needs spread, not cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = full / 2;
        half + half.mul_f64((self.rng >> 11) as f64 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(fp: u64, offset: u64) -> Ack {
        Ack {
            key: FileKey {
                dev: 0,
                ino: 0,
                fingerprint: fp,
            },
            stream: fp,
            offset,
        }
    }

    #[test]
    fn a_builder_fills_and_closes() {
        let now = Instant::now();
        let (a, b_log): (Arc<str>, Arc<str>) = ("a.log".into(), "b.log".into());
        let mut b = Builder::default();
        assert!(b.is_empty() && b.deadline(Duration::from_millis(5)).is_none());
        b.push(b"{}\n{}\n", 2, Some(ack(1, 6)), &a, now, 0);
        b.push(b"{}\n", 1, Some(ack(1, 9)), &a, now, 0);
        b.push(b"{}\n", 1, Some(ack(2, 3)), &b_log, now, 0);
        assert!(b.is_full(4, 1000) && !b.is_full(5, 1000) && b.is_full(5, 12));
        assert!(b.would_overflow(1, 0, 12, 100) && !b.would_overflow(1, 1, 13, 5));
        assert!(b.would_overflow(1, 2, 13, 5), "the record limit counts too");
        let batch = b.close(7, now);
        assert_eq!(batch.records, 4);
        assert_eq!(&batch.body[..], b"{}\n{}\n{}\n{}\n");
        assert_eq!(batch.acks, [ack(1, 9), ack(2, 3)]);
        assert_eq!(batch.source_of(0).map(|s| &**s), Some("a.log"));
        assert_eq!(batch.source_of(2).map(|s| &**s), Some("a.log"));
        assert_eq!(batch.source_of(3).map(|s| &**s), Some("b.log"));
        assert!(b.is_empty());
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gzip_bytes(b"{\"a\":1}\n")[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"a\":1}\n");
    }

    #[test]
    fn acks_are_released_in_order() {
        let mut order = AckOrder::default();
        assert!(order.complete(1, vec![ack(1, 20)]).is_empty());
        assert_eq!(order.held(), 1);
        assert_eq!(
            order.complete(0, vec![ack(1, 10)]),
            [ack(1, 10), ack(1, 20)]
        );
        assert_eq!(order.complete(2, vec![]), []);
        assert_eq!(order.complete(3, vec![ack(1, 30)]), [ack(1, 30)]);
        assert_eq!(order.held(), 0);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 42);
        for attempt in 1..40 {
            let full = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(30))
                .min(Duration::from_secs(5));
            let d = b.delay(attempt);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }
}
