//! The rows of one row group that hold a request id, reading as little as it takes.
//!
//! First the blocks whose Bloom filter may hold the id (the footer, in memory). Then,
//! in files that have it, the group's `request_key` column (two bytes of each row's
//! request-id hash, stored uncompressed), only the rows of those blocks: a block that only a
//! filter's false positive points at has no row with the id's two bytes, so it costs
//! no body. At 10,000,000 records about fifteen blocks a lookup are such false
//! positives, and each cost a body page to decompress (about 450 KiB) and the group's
//! times and ids. Last, the bodies of the rows left (only their pages decompressed),
//! compared exactly with the record's own field: neither a filter nor two bytes of a
//! hash ever decide that a record matches.

use memchr::memmem::Finder;

use super::filter::request_id_of;
use super::index::{request_fingerprint, GroupIndex};
use super::segment::{Segment, SegmentError, COL_BODY};

/// The rows (ascending) of group `g` of `seg` whose record's `request_id` is `want`;
/// `key` is `key_hash(want)`.
pub(super) fn request_rows(
    seg: &Segment,
    g: usize,
    want: &str,
    key: u64,
) -> Result<Vec<usize>, SegmentError> {
    let gi = &seg.index.groups[g];
    let mut ranges = gi.request_rows(key);
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(keys) = seg.read_request_keys(g, &ranges)? {
        ranges = narrow(gi, &ranges, &keys, request_fingerprint(key));
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
    }
    let bodies = seg.read_strings_in(g, COL_BODY, &ranges)?;
    let finder = finder(want);
    Ok(ranges
        .iter()
        .flat_map(|&(a, b)| a..b)
        .filter(|&row| {
            bodies
                .get(row)
                .is_some_and(|b| body_request_is(b, want, finder.as_ref()))
        })
        .collect())
}

/// The rows of `ranges` whose request key is `fp`, as ranges (adjacent rows merged).
fn narrow(
    gi: &GroupIndex,
    ranges: &[(usize, usize)],
    keys: &[Option<[u8; 2]>],
    fp: [u8; 2],
) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &(a, b) in ranges {
        let b = b.min(gi.rows as usize).min(keys.len());
        for (row, k) in keys.iter().enumerate().take(b).skip(a) {
            if *k != Some(fp) {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1 == row => last.1 = row + 1,
                _ => out.push((row, row + 1)),
            }
        }
    }
    out
}

/// A searcher for `want` in bodies, when a body without escapes that lacks it as it is
/// cannot hold it: a value made of these characters needs no escape (though a writer
/// may still use one, `\u002d` for `-`: a body with a backslash is always parsed). Built
/// once per group (building one per body cost more than the search).
fn finder(want: &str) -> Option<Finder<'_>> {
    want.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        .then(|| Finder::new(want.as_bytes()))
}

/// Whether the record's own `request_id` is `want` (`finder` from [`finder`]).
fn body_request_is(body: &str, want: &str, finder: Option<&Finder<'_>>) -> bool {
    if finder.is_some_and(|f| f.find(body.as_bytes()).is_none())
        && memchr::memchr(b'\\', body.as_bytes()).is_none()
    {
        return false;
    }
    request_id_of(body).as_deref() == Some(want)
}
