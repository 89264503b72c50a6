//! Exact deduplication by `event_id`, without a per-record B-tree.
//!
//! Two kinds of id (see `shared::event_id`):
//!
//! - **Structured** (`<service>:<stream>:<start>-<end>`, what the logging sidecar
//!   writes): kept as merged byte ranges per stream. A record is a duplicate exactly
//!   when its interval lies inside a range already stored for its stream; the producer
//!   promises that different records' intervals never overlap, and ranges are merged
//!   only from intervals that were stored, never across a gap. An interval that
//!   overlaps a range without lying inside it breaks that promise: it is kept as an
//!   opaque id instead, so it is still deduplicated exactly.
//! - **Opaque** (anything else): the records in memory keep their ids as text in a hash
//!   set; a segment keeps the sorted 64-bit hashes of its opaque ids and a small Bloom
//!   filter over them. A hash that matches is never taken as proof: the writer then
//!   compares the text with the segment's `event_id` column ([`Check::Confirm`]), so a
//!   hash collision can never drop a record.
//!
//! Everything is tagged with its owner: the first record id of the memory buffer or of
//! the segment that holds the records, so retention and compaction drop or move exactly
//! a segment's share.
//!
//! Memory: per stream and owner, one range (a few when a stream has gaps), about 100
//! bytes; per opaque id, its text while in memory, then 8 bytes plus 1.5 bytes of
//! filter while in a segment. Retention bounds both.

use std::collections::{BTreeMap, HashMap, HashSet};

use shared::event_id::StreamSpan;

/// The first record id of the buffer or segment holding some records.
pub type Owner = i64;

/// A stored range of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    end: u64,
    owner: Owner,
}

/// What a lookup says about one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    New,
    Duplicate,
    /// The hash of an opaque id is in these segments: compare the text there.
    Confirm(Vec<Owner>),
}

/// The 64-bit hash of an opaque id (the same in every run).
pub fn hash_id(id: &str) -> u64 {
    super::index::key_hash(id.as_bytes())
}

/// The sorted hashes of one segment's opaque ids, behind a blocked Bloom filter.
#[derive(Debug, Default)]
pub struct HashSetOnDisk {
    hashes: Box<[u64]>,
    /// 512-bit blocks; about 12 bits per id, 1% false positives.
    bloom: Box<[[u64; 8]]>,
}

/// Bits of the filter per id.
const BLOOM_BITS_PER_ID: usize = 12;
/// Bits set per id, all in one 512-bit block (one cache line).
const BLOOM_PROBES: u32 = 6;

fn bloom_positions(h: u64, blocks: usize) -> (usize, [u32; BLOOM_PROBES as usize]) {
    let block = ((h >> 32) as usize) % blocks.max(1);
    let mut bits = [0u32; BLOOM_PROBES as usize];
    let mut x = h as u32 | 1;
    for b in &mut bits {
        // xorshift32: cheap, well-spread bit positions from the low half.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x % 512;
    }
    (block, bits)
}

impl HashSetOnDisk {
    pub fn new(mut hashes: Vec<u64>) -> HashSetOnDisk {
        hashes.sort_unstable();
        let blocks = (hashes.len() * BLOOM_BITS_PER_ID).div_ceil(512).max(1);
        let mut bloom = vec![[0u64; 8]; blocks].into_boxed_slice();
        for &h in &hashes {
            let (block, bits) = bloom_positions(h, blocks);
            for b in bits {
                bloom[block][(b / 64) as usize] |= 1 << (b % 64);
            }
        }
        HashSetOnDisk {
            hashes: hashes.into_boxed_slice(),
            bloom,
        }
    }

    pub fn contains(&self, h: u64) -> bool {
        if self.hashes.is_empty() {
            return false;
        }
        let (block, bits) = bloom_positions(h, self.bloom.len());
        let words = &self.bloom[block];
        if !bits
            .iter()
            .all(|&b| words[(b / 64) as usize] & (1 << (b % 64)) != 0)
        {
            return false;
        }
        self.hashes.binary_search(&h).is_ok()
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn memory_bytes(&self) -> usize {
        self.hashes.len() * 8 + self.bloom.len() * 64
    }
}

/// Every stored id, as ranges and hashes.
#[derive(Debug, Default)]
pub struct Dedup {
    streams: HashMap<Box<str>, BTreeMap<u64, Range>>,
    /// Opaque ids of records in memory, by owner (the buffers not yet in a segment).
    in_memory: HashMap<Owner, HashSet<Box<str>>>,
    /// Opaque ids of segments.
    on_disk: HashMap<Owner, HashSetOnDisk>,
    /// Structured ids stored as opaque because they overlapped a range; while any is
    /// stored, structured ids are looked up as opaque too.
    irregular: u64,
}

impl Dedup {
    /// Whether `id` is stored.
    pub fn check(&self, id: &str) -> Check {
        if let Some(span) = StreamSpan::parse(id) {
            match self.span_state(&span) {
                SpanState::Inside => return Check::Duplicate,
                SpanState::Clear if self.irregular == 0 => return Check::New,
                _ => {}
            }
        }
        self.check_opaque(id)
    }

    fn check_opaque(&self, id: &str) -> Check {
        if self.in_memory.values().any(|set| set.contains(id)) {
            return Check::Duplicate;
        }
        if self.on_disk.is_empty() {
            return Check::New;
        }
        let h = hash_id(id);
        let owners: Vec<Owner> = self
            .on_disk
            .iter()
            .filter(|(_, set)| set.contains(h))
            .map(|(&o, _)| o)
            .collect();
        if owners.is_empty() {
            Check::New
        } else {
            Check::Confirm(owners)
        }
    }

    fn span_state(&self, span: &StreamSpan<'_>) -> SpanState {
        let Some(ranges) = self.streams.get(span.stream) else {
            return SpanState::Clear;
        };
        if let Some((_, r)) = ranges.range(..=span.start).next_back() {
            if r.end >= span.end {
                return SpanState::Inside;
            }
            if r.end > span.start {
                return SpanState::Overlaps;
            }
        }
        match ranges.range(span.start..).next() {
            Some((&start, _)) if start < span.end => SpanState::Overlaps,
            _ => SpanState::Clear,
        }
    }

    /// Records a stored id, held by `owner` (in memory).
    pub fn insert(&mut self, id: &str, owner: Owner) {
        if let Some(span) = StreamSpan::parse(id) {
            if self.span_state(&span) == SpanState::Clear {
                self.insert_span(&span, owner);
                return;
            }
            self.irregular += 1;
        }
        self.in_memory.entry(owner).or_default().insert(id.into());
    }

    fn insert_span(&mut self, span: &StreamSpan<'_>, owner: Owner) {
        let ranges = match self.streams.get_mut(span.stream) {
            Some(r) => r,
            None => self.streams.entry(span.stream.into()).or_default(),
        };
        let mut start = span.start;
        let mut end = span.end;
        if let Some((&s, r)) = ranges.range(..=span.start).next_back() {
            if r.end == span.start && r.owner == owner {
                start = s;
            }
        }
        if let Some(next) = ranges.get(&span.end).copied() {
            if next.owner == owner {
                ranges.remove(&span.end);
                end = next.end;
            }
        }
        ranges.insert(start, Range { end, owner });
    }

    /// The records of `owner` are now in a segment: its opaque ids become hashes.
    pub fn seal(&mut self, owner: Owner) {
        if let Some(set) = self.in_memory.remove(&owner) {
            let hashes = set.iter().map(|id| hash_id(id)).collect();
            self.on_disk.insert(owner, HashSetOnDisk::new(hashes));
        }
    }

    /// Loads a segment's ids at start: its structured ids' ranges and its opaque ids'
    /// hashes.
    pub fn load_segment<'a>(&mut self, owner: Owner, ids: impl Iterator<Item = &'a str>) {
        let mut hashes = Vec::new();
        for id in ids {
            match StreamSpan::parse(id) {
                Some(span) if self.span_state(&span) == SpanState::Clear => {
                    self.insert_span(&span, owner)
                }
                Some(_) => {
                    self.irregular += 1;
                    hashes.push(hash_id(id));
                }
                None => hashes.push(hash_id(id)),
            }
        }
        if !hashes.is_empty() {
            self.on_disk.insert(owner, HashSetOnDisk::new(hashes));
        }
    }

    /// Loads a segment's structured ids from its footer's ranges at start; `false`
    /// (and nothing loaded) when a range overlaps one already loaded, in which case
    /// the caller loads the segment id by id instead.
    pub fn load_ranges(&mut self, owner: Owner, ranges: &[(String, Vec<(u64, u64)>)]) -> bool {
        let clear = ranges.iter().all(|(stream, spans)| {
            spans.iter().all(|&(start, end)| {
                self.span_state(&StreamSpan { stream, start, end }) == SpanState::Clear
            })
        });
        if !clear {
            return false;
        }
        for (stream, spans) in ranges {
            for &(start, end) in spans {
                self.insert_span(&StreamSpan { stream, start, end }, owner);
            }
        }
        true
    }

    /// Adds the hashes of a segment's opaque ids at start.
    pub fn load_opaque<'a>(&mut self, owner: Owner, ids: impl Iterator<Item = &'a str>) {
        let hashes: Vec<u64> = ids
            .filter(|id| StreamSpan::parse(id).is_none())
            .map(hash_id)
            .collect();
        if !hashes.is_empty() {
            self.on_disk.insert(owner, HashSetOnDisk::new(hashes));
        }
    }

    /// Forgets everything `owner` held (a segment deleted by retention or clear).
    pub fn remove(&mut self, owner: Owner) {
        self.in_memory.remove(&owner);
        self.on_disk.remove(&owner);
        self.streams.retain(|_, ranges| {
            ranges.retain(|_, r| r.owner != owner);
            !ranges.is_empty()
        });
    }

    /// The segments `from` were merged into one segment owned by `to`.
    pub fn merge_owners(&mut self, from: &[Owner], to: Owner) {
        for ranges in self.streams.values_mut() {
            for r in ranges.values_mut() {
                if from.contains(&r.owner) {
                    r.owner = to;
                }
            }
        }
        let mut hashes = Vec::new();
        for o in from {
            if let Some(set) = self.on_disk.remove(o) {
                hashes.extend_from_slice(&set.hashes);
            }
        }
        if !hashes.is_empty() {
            self.on_disk.insert(to, HashSetOnDisk::new(hashes));
        }
    }

    pub fn clear(&mut self) {
        *self = Dedup::default();
    }

    /// Ranges kept and bytes of opaque-id hashes, for the metrics and the docs.
    pub fn footprint(&self) -> (usize, usize) {
        let ranges = self.streams.values().map(BTreeMap::len).sum();
        let bytes = self.on_disk.values().map(HashSetOnDisk::memory_bytes).sum();
        (ranges, bytes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpanState {
    Inside,
    Overlaps,
    Clear,
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "svc:0123456789abcdef";

    fn id(start: u64, end: u64) -> String {
        format!("{S}:{start:x}-{end:x}")
    }

    #[test]
    fn structured_ids_are_ranges_and_exact() {
        let mut d = Dedup::default();
        for (s, e) in [(0, 10), (10, 25), (25, 26), (40, 50)] {
            assert_eq!(d.check(&id(s, e)), Check::New);
            d.insert(&id(s, e), 1);
        }
        assert_eq!(d.footprint().0, 2, "0-26 and 40-50");
        for (s, e) in [(0, 10), (10, 25), (25, 26), (40, 50)] {
            assert_eq!(d.check(&id(s, e)), Check::Duplicate);
        }
        assert_eq!(d.check(&id(26, 40)), Check::New);
        assert_eq!(d.check(&id(50, 60)), Check::New);
        // Not canonical: opaque, and new.
        assert_eq!(d.check(&format!("{S}:00-10")), Check::New);
        // Overlapping without lying inside: stored as opaque, still exact.
        assert_eq!(d.check(&id(20, 30)), Check::New);
        d.insert(&id(20, 30), 1);
        assert_eq!(d.check(&id(20, 30)), Check::Duplicate);
        assert_eq!(d.check(&id(26, 40)), Check::New);
        // Another owner never merges into this one's range; removing an owner forgets
        // only its share.
        d.insert(&id(26, 40), 2);
        d.remove(1);
        assert_eq!(d.check(&id(0, 10)), Check::New);
        assert_eq!(d.check(&id(20, 30)), Check::New);
        assert_eq!(d.check(&id(26, 40)), Check::Duplicate);
    }

    #[test]
    fn opaque_ids_are_confirmed_once_in_a_segment() {
        let mut d = Dedup::default();
        d.insert("a", 1);
        d.insert("b", 1);
        assert_eq!(d.check("a"), Check::Duplicate);
        assert_eq!(d.check("c"), Check::New);
        d.seal(1);
        assert_eq!(d.check("a"), Check::Confirm(vec![1]));
        assert_eq!(d.check("c"), Check::New);
        d.load_segment(7, ["x", &id(0, 5)].into_iter());
        d.merge_owners(&[1, 7], 1);
        assert_eq!(d.check("x"), Check::Confirm(vec![1]));
        assert_eq!(d.check(&id(0, 5)), Check::Duplicate);
        d.remove(1);
        assert_eq!(d.check("x"), Check::New);
        assert_eq!(d.check(&id(0, 5)), Check::New);
    }

    #[test]
    fn the_filter_has_no_false_negatives() {
        let hashes: Vec<u64> = (0..10_000u64).map(|i| hash_id(&i.to_string())).collect();
        let set = HashSetOnDisk::new(hashes.clone());
        assert!(hashes.iter().all(|&h| set.contains(h)));
        let false_hits = (10_000..20_000u64)
            .filter(|i| set.contains(hash_id(&i.to_string())))
            .count();
        assert_eq!(false_hits, 0, "a hit needs the exact hash too");
    }
}
