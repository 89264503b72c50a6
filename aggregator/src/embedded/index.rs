//! What a segment's footer says about each row group, so that queries skip the groups
//! that cannot match, and counts a search without reading them: times, ids, counts per
//! (service, level), Bloom filters over message words and request ids, and the terms
//! (frequent words and pairs of words with their row counts, [`super::terms`]).
//!
//! Stored as JSON in the footer's key-value metadata under [`INDEX_KEY`] (the filters'
//! bits in base64), so any Parquet reader sees it and none is disturbed by it.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::filter::{lower, Filter, Phrase};
use super::segment::Row;
use super::terms::{TermCounter, Terms};

/// The footer key of the index.
pub const INDEX_KEY: &str = "log_aggregator.index";
/// Bumped when the index changes; an unknown version is a damaged segment. Version 1
/// (one request-id filter per row group) is still read.
pub const INDEX_VERSION: u32 = 2;
/// Rows per block of a row group: a request id's filter covers one block, and every
/// column's data pages hold this many rows, so a lookup decompresses the pages of the
/// blocks whose filter may hold the id (about 450 KiB of bodies) instead of the group.
pub const BLOCK_ROWS: usize = 1024;
/// Filter bits per distinct word (about 1% false positives with 7 probes).
pub const WORD_BITS_PER_KEY: usize = 10;
/// Filter bits per distinct request id: a lookup checks every block, so fewer false
/// positives pay (about 0.1% with 7 probes: at 10,000,000 records about ten blocks of
/// 1,024 rows read in vain per lookup), for 1.75 bytes per record in the footer.
pub const REQUEST_BITS_PER_KEY: usize = 14;
const PROBES: u64 = 7;

/// A 64-bit hash of a word or an id, well spread (FNV-1a, then a finalizer).
pub fn key_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// Two bytes of a request id's hash, stored per row in a segment's `request_key`
/// column: a block that a filter's false positive points at is then ruled out by a
/// 16 KiB column instead of its bodies (about 450 KiB to decompress). Taken from
/// other bits than the filters' probes use, so that the two miss independently.
pub fn request_fingerprint(h: u64) -> [u8; 2] {
    let x = (h ^ 0x5bd1_e995_7f4a_7c15).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((x >> 48) as u16).to_le_bytes()
}

/// A plain Bloom filter over 64-bit hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bloom {
    bits: Vec<u64>,
}

impl Bloom {
    pub fn build(keys: &HashSet<u64>, bits_per_key: usize) -> Bloom {
        let words = (keys.len() * bits_per_key).div_ceil(64).max(1);
        let mut bits = vec![0u64; words];
        let n = (words * 64) as u64;
        for &h in keys {
            let (a, b) = (h, (h >> 32) | 1);
            for i in 0..PROBES {
                let bit = a.wrapping_add(i.wrapping_mul(b)) % n;
                bits[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        Bloom { bits }
    }

    /// False only when the key is certainly absent.
    pub fn may_contain(&self, h: u64) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        let n = (self.bits.len() * 64) as u64;
        let (a, b) = (h, (h >> 32) | 1);
        (0..PROBES).all(|i| {
            let bit = a.wrapping_add(i.wrapping_mul(b)) % n;
            self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    pub fn bytes(&self) -> usize {
        self.bits.len() * 8
    }
}

/// One row group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupIndex {
    pub rows: u32,
    pub ts_min: i64,
    pub ts_max: i64,
    pub first_id: i64,
    pub last_id: i64,
    /// Records per (service, level).
    pub labels: Vec<(Option<String>, Option<String>, u32)>,
    pub words: Bloom,
    /// The request ids of each block of `block_rows` rows (the last one shorter).
    pub requests: Vec<Bloom>,
    pub block_rows: u32,
    /// The words and adjacent pairs of words held by many rows, with their row counts
    /// ([`crate::embedded::terms`]); `None` in files written before them.
    pub terms: Option<Terms>,
}

impl GroupIndex {
    pub fn build(rows: &[Row<'_>]) -> GroupIndex {
        let mut labels: HashMap<(Option<&str>, Option<&str>), u32> = HashMap::new();
        let mut words = HashSet::new();
        let mut terms = TermCounter::default();
        let (mut ts_min, mut ts_max) = (i64::MAX, i64::MIN);
        let (mut first_id, mut last_id) = (i64::MAX, i64::MIN);
        for (row, r) in rows.iter().enumerate() {
            let rec = r.record;
            ts_min = ts_min.min(rec.ts_us);
            ts_max = ts_max.max(rec.ts_us);
            first_id = first_id.min(r.id);
            last_id = last_id.max(r.id);
            *labels
                .entry((rec.service.as_deref(), rec.level.as_deref()))
                .or_default() += 1;
            if let Some(m) = &rec.message {
                let row = row as u32;
                let mut prev: Option<(u64, Cow<str>)> = None;
                for w in m.split(|c: char| !c.is_alphanumeric()) {
                    if w.is_empty() {
                        continue;
                    }
                    let w = if w.is_ascii() && !w.bytes().any(|b| b.is_ascii_uppercase()) {
                        Cow::Borrowed(w)
                    } else {
                        Cow::Owned(lower(w))
                    };
                    let h = key_hash(w.as_bytes());
                    words.insert(h);
                    terms.word(row, h, &w);
                    if let Some((ph, pw)) = &prev {
                        terms.pair(row, *ph, pw, h, &w);
                    }
                    prev = Some((h, w));
                }
            }
        }
        let requests = rows
            .chunks(BLOCK_ROWS)
            .map(|block| {
                let keys: HashSet<u64> = block
                    .iter()
                    .filter_map(|r| r.record.request_id.as_deref())
                    .map(|r| key_hash(r.as_bytes()))
                    .collect();
                Bloom::build(&keys, REQUEST_BITS_PER_KEY)
            })
            .collect();
        let mut labels: Vec<_> = labels
            .into_iter()
            .map(|((s, l), n)| (s.map(str::to_owned), l.map(str::to_owned), n))
            .collect();
        labels.sort();
        GroupIndex {
            rows: rows.len() as u32,
            ts_min,
            ts_max,
            first_id,
            last_id,
            labels,
            words: Bloom::build(&words, WORD_BITS_PER_KEY),
            requests,
            block_rows: BLOCK_ROWS as u32,
            terms: Some(terms.finish()),
        }
    }

    /// The rows of this group that hold `p`, when its terms say: `p` is one whole word
    /// or two, and a term of the group. The count is exactly what checking every
    /// message with [`Phrase::matches`] gives.
    pub fn phrase_count(&self, p: &Phrase) -> Option<u64> {
        let terms = self.terms.as_ref()?;
        if p.prefix {
            return None;
        }
        let n = match p.words.as_slice() {
            [w] => terms.rows_with(w)?,
            [a, b] => terms.rows_with_pair(a, b)?,
            _ => return None,
        };
        Some(u64::from(n))
    }

    /// The `[start, end)` rows of the blocks whose filter may hold request id `key`,
    /// adjacent blocks merged.
    pub fn request_rows(&self, key: u64) -> Vec<(usize, usize)> {
        let size = self.block_rows as usize;
        let mut out: Vec<(usize, usize)> = Vec::new();
        for (b, bloom) in self.requests.iter().enumerate() {
            if !bloom.may_contain(key) {
                continue;
            }
            let (start, end) = (b * size, ((b + 1) * size).min(self.rows as usize));
            match out.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => out.push((start, end)),
            }
        }
        out
    }

    /// Records of this group whose labels match, when only labels filter.
    pub fn label_count(&self, f: &Filter) -> u64 {
        self.labels
            .iter()
            .filter(|(s, l, _)| f.labels_ok(s.as_deref(), l.as_deref()))
            .map(|&(_, _, n)| u64::from(n))
            .sum()
    }

    /// Whether this group can hold a record matching `f` (times, labels, filters).
    pub fn may_match(&self, f: &Filter) -> bool {
        if !f.time_overlaps(self.ts_min, self.ts_max) {
            return false;
        }
        if (f.service.is_some() || f.level.is_some()) && self.label_count(f) == 0 {
            return false;
        }
        if let Some(r) = &f.request_id {
            let key = key_hash(r.as_bytes());
            if !self.requests.iter().any(|b| b.may_contain(key)) {
                return false;
            }
        }
        if let Some(p) = &f.phrase {
            let whole = p.words.len() - usize::from(p.prefix);
            if !p.words[..whole]
                .iter()
                .all(|w| self.words.may_contain(key_hash(w.as_bytes())))
            {
                return false;
            }
        }
        true
    }

    /// Whether every record of the group matches on time (so labels alone decide).
    pub fn inside_time(&self, f: &Filter) -> bool {
        f.time_ok(self.ts_min) && f.time_ok(self.ts_max)
    }
}

/// Every row group of a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    pub groups: Vec<GroupIndex>,
    /// The ids of the segment, for deduplication at start without reading them:
    /// structured ids as merged ranges per stream, and how many others there are
    /// (only those are read back from the `event_id` column).
    pub ids: IdSummary,
}

/// Merged `[start, end)` ranges of structured ids, per stream.
pub type StreamRanges = Vec<(String, Vec<(u64, u64)>)>;

/// What a segment's `event_id`s are, in short.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdSummary {
    /// Per stream, the merged ranges of its structured ids, when no two of them
    /// overlap; `None` when some do (then every id is read back).
    pub ranges: Option<StreamRanges>,
    /// Ids that are not structured.
    pub opaque: u64,
    /// Whether structured ids are left out of the `event_id` column (they are in each
    /// record's body, and this summary holds their ranges): files written before this
    /// field have every id in the column.
    #[serde(default)]
    pub in_bodies: bool,
}

impl IdSummary {
    /// Summarises `ids`.
    pub fn of<'a>(ids: impl Iterator<Item = &'a str>) -> IdSummary {
        let mut streams: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
        let mut opaque = 0;
        for id in ids {
            match shared::event_id::StreamSpan::parse(id) {
                Some(s) => streams.entry(s.stream).or_default().push((s.start, s.end)),
                None => opaque += 1,
            }
        }
        let mut ranges = Vec::with_capacity(streams.len());
        for (stream, mut spans) in streams {
            spans.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::new();
            for (start, end) in spans {
                match merged.last_mut() {
                    Some(last) if start < last.1 => {
                        return IdSummary {
                            ranges: None,
                            opaque,
                            in_bodies: false,
                        }
                    }
                    Some(last) if start == last.1 => last.1 = end,
                    _ => merged.push((start, end)),
                }
            }
            ranges.push((stream.to_owned(), merged));
        }
        ranges.sort();
        IdSummary {
            ranges: Some(ranges),
            opaque,
            in_bodies: false,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Encoded {
    version: u32,
    groups: Vec<EncodedGroup>,
    ids: IdSummary,
}

#[derive(Serialize, Deserialize)]
struct EncodedGroup {
    rows: u32,
    ts: (i64, i64),
    ids: (i64, i64),
    labels: Vec<(Option<String>, Option<String>, u32)>,
    words: String,
    /// Version 1: the request ids of the whole group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requests: Option<String>,
    /// Version 2: the request ids of each block of `block_rows` rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    request_blocks: Vec<String>,
    #[serde(default)]
    block_rows: u32,
    /// Frequent words and pairs with their row counts: files written before them have
    /// none (and older readers ignore the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    terms: Option<Vec<(String, u32)>>,
}

fn bits_to_b64(b: &Bloom) -> String {
    let bytes: Vec<u8> = b.bits.iter().flat_map(|w| w.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn b64_to_bits(s: &str) -> Result<Bloom, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("bad filter: {e}"))?;
    if bytes.len() % 8 != 0 {
        return Err("bad filter length".to_owned());
    }
    let bits = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    Ok(Bloom { bits })
}

impl SegmentIndex {
    pub fn encode(&self) -> String {
        let e = Encoded {
            version: INDEX_VERSION,
            ids: self.ids.clone(),
            groups: self
                .groups
                .iter()
                .map(|g| EncodedGroup {
                    rows: g.rows,
                    ts: (g.ts_min, g.ts_max),
                    ids: (g.first_id, g.last_id),
                    labels: g.labels.clone(),
                    words: bits_to_b64(&g.words),
                    requests: None,
                    request_blocks: g.requests.iter().map(bits_to_b64).collect(),
                    block_rows: g.block_rows,
                    terms: g
                        .terms
                        .as_ref()
                        .map(|t| t.pairs().map(|(t, n)| (t.to_owned(), n)).collect()),
                })
                .collect(),
        };
        serde_json::to_string(&e).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<SegmentIndex, String> {
        let e: Encoded = serde_json::from_str(text).map_err(|e| format!("bad index: {e}"))?;
        if e.version != INDEX_VERSION && e.version != 1 {
            return Err(format!(
                "index version {} is not {INDEX_VERSION}",
                e.version
            ));
        }
        let mut groups = Vec::with_capacity(e.groups.len());
        for g in e.groups {
            let (requests, block_rows) = if e.version == 1 {
                let bits = g
                    .requests
                    .as_deref()
                    .ok_or_else(|| "no request filter".to_owned())?;
                (vec![b64_to_bits(bits)?], g.rows.max(1))
            } else {
                let blocks = g
                    .request_blocks
                    .iter()
                    .map(|b| b64_to_bits(b))
                    .collect::<Result<Vec<_>, _>>()?;
                (blocks, g.block_rows)
            };
            if block_rows == 0 || requests.len() != (g.rows as usize).div_ceil(block_rows as usize)
            {
                return Err("the request filters do not match the rows".to_owned());
            }
            let terms = g.terms.map(Terms::from_pairs).transpose()?;
            if terms
                .as_ref()
                .is_some_and(|t| t.pairs().any(|(_, n)| n > g.rows))
            {
                return Err("a term is counted in more rows than the group has".to_owned());
            }
            groups.push(GroupIndex {
                rows: g.rows,
                ts_min: g.ts.0,
                ts_max: g.ts.1,
                first_id: g.ids.0,
                last_id: g.ids.1,
                labels: g.labels,
                words: b64_to_bits(&g.words)?,
                requests,
                block_rows,
                terms,
            });
        }
        Ok(SegmentIndex { groups, ids: e.ids })
    }

    pub fn memory_bytes(&self) -> usize {
        self.groups
            .iter()
            .map(|g| {
                g.words.bytes()
                    + g.requests.iter().map(|b| b.bytes() + 24).sum::<usize>()
                    + 64
                    + g.labels.len() * 64
                    + g.terms.as_ref().map_or(0, Terms::bytes)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::segment::Row;
    use crate::record::{parse, Received};

    #[test]
    fn request_filters_point_at_blocks() {
        let received = Received::now();
        let records: Vec<_> = (0..2500)
            .map(|i| parse(&format!(r#"{{"request_id":"r{i}"}}"#), &received).unwrap())
            .collect();
        let rows: Vec<Row> = records
            .iter()
            .enumerate()
            .map(|(i, record)| Row {
                id: i as i64,
                record,
            })
            .collect();
        let g = GroupIndex::build(&rows);
        assert_eq!(g.requests.len(), 3);
        for i in [0, 1023, 1024, 2047, 2048, 2499] {
            let found = g.request_rows(key_hash(format!("r{i}").as_bytes()));
            assert!(
                found.iter().any(|&(a, b)| a <= i && i < b),
                "r{i}: {found:?}"
            );
            assert!(found
                .iter()
                .all(|&(a, b)| a % BLOCK_ROWS == 0 && (b % BLOCK_ROWS == 0 || b == 2500)));
        }
        let again = SegmentIndex::decode(
            &SegmentIndex {
                groups: vec![g.clone()],
                ids: IdSummary::default(),
            }
            .encode(),
        )
        .unwrap();
        assert_eq!(again.groups, vec![g]);
    }

    #[test]
    fn version_1_footers_are_read_as_one_block_per_group() {
        let v1 = r#"{"version":1,"groups":[{"rows":3,"ts":[1,2],"ids":[1,3],"labels":[],"words":"","requests":""}],"ids":{"ranges":[],"opaque":0}}"#;
        let index = SegmentIndex::decode(v1).unwrap();
        assert_eq!(index.groups[0].request_rows(key_hash(b"any")), vec![(0, 3)]);
        let bad = r#"{"version":2,"groups":[{"rows":3000,"ts":[1,2],"ids":[1,3],"labels":[],"words":"","request_blocks":[""],"block_rows":1024}],"ids":{"ranges":[],"opaque":0}}"#;
        assert!(SegmentIndex::decode(bad).is_err());
        assert!(SegmentIndex::decode(&v1.replace("\"version\":1", "\"version\":9")).is_err());
    }
}
