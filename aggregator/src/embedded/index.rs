//! What a segment's footer says about each row group, so that queries skip the groups
//! that cannot match: times, ids, counts per (service, level), and Bloom filters over
//! message words and request ids.
//!
//! Stored as JSON in the footer's key-value metadata under [`INDEX_KEY`] (the filters'
//! bits in base64), so any Parquet reader sees it and none is disturbed by it.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::filter::{lower, Filter};
use super::segment::Row;

/// The footer key of the index.
pub const INDEX_KEY: &str = "log_aggregator.index";
/// Bumped when the index changes incompatibly; an unknown version is a damaged segment.
pub const INDEX_VERSION: u32 = 1;
/// Filter bits per distinct word (about 1% false positives with 7 probes).
pub const WORD_BITS_PER_KEY: usize = 10;
/// Filter bits per distinct request id: a lookup checks every row group, so fewer false
/// positives pay (about 0.1% with 7 probes: at 10,000,000 records about one row group
/// read in vain per lookup), for 1.75 bytes per record in the footer.
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
    pub requests: Bloom,
}

impl GroupIndex {
    pub fn build(rows: &[Row<'_>]) -> GroupIndex {
        let mut labels: HashMap<(Option<&str>, Option<&str>), u32> = HashMap::new();
        let mut words = HashSet::new();
        let mut requests = HashSet::new();
        let (mut ts_min, mut ts_max) = (i64::MAX, i64::MIN);
        let (mut first_id, mut last_id) = (i64::MAX, i64::MIN);
        for r in rows {
            let rec = r.record;
            ts_min = ts_min.min(rec.ts_us);
            ts_max = ts_max.max(rec.ts_us);
            first_id = first_id.min(r.id);
            last_id = last_id.max(r.id);
            *labels
                .entry((rec.service.as_deref(), rec.level.as_deref()))
                .or_default() += 1;
            if let Some(m) = &rec.message {
                for w in m.split(|c: char| !c.is_alphanumeric()) {
                    if w.is_empty() {
                        continue;
                    }
                    if w.bytes().all(|b| !b.is_ascii_uppercase()) && w.is_ascii() {
                        words.insert(key_hash(w.as_bytes()));
                    } else {
                        words.insert(key_hash(lower(w).as_bytes()));
                    }
                }
            }
            if let Some(r) = &rec.request_id {
                requests.insert(key_hash(r.as_bytes()));
            }
        }
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
            requests: Bloom::build(&requests, REQUEST_BITS_PER_KEY),
        }
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
            if !self.requests.may_contain(key_hash(r.as_bytes())) {
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
    requests: String,
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
                    requests: bits_to_b64(&g.requests),
                })
                .collect(),
        };
        serde_json::to_string(&e).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<SegmentIndex, String> {
        let e: Encoded = serde_json::from_str(text).map_err(|e| format!("bad index: {e}"))?;
        if e.version != INDEX_VERSION {
            return Err(format!(
                "index version {} is not {INDEX_VERSION}",
                e.version
            ));
        }
        let mut groups = Vec::with_capacity(e.groups.len());
        for g in e.groups {
            groups.push(GroupIndex {
                rows: g.rows,
                ts_min: g.ts.0,
                ts_max: g.ts.1,
                first_id: g.ids.0,
                last_id: g.ids.1,
                labels: g.labels,
                words: b64_to_bits(&g.words)?,
                requests: b64_to_bits(&g.requests)?,
            });
        }
        Ok(SegmentIndex { groups, ids: e.ids })
    }

    pub fn memory_bytes(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.words.bytes() + g.requests.bytes() + 64 + g.labels.len() * 64)
            .sum()
    }
}
