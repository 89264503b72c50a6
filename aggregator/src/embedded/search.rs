//! `GET /logs` and `/logs/count` over one [`View`]: the memory chunks and the segments
//! together.
//!
//! Each source yields its matching records after the cursor, in page order, and the
//! best `limit + 1` of all are kept. A segment's rows are sorted by `(time, id)`, so it
//! is read group by group from the page's end and stops once it has given `limit + 1`;
//! a group is skipped, without reading it, when its index says it cannot match (time,
//! labels, the Bloom filters of words and request ids), or when it cannot beat the
//! page already held. `total` comes from counts when only service and level filter,
//! otherwise from counting the matches of every group that may hold one: from the
//! group's terms for a search of one or two words that are frequent in it
//! ([`super::terms`]), by reading it otherwise (on several threads the first time a
//! filter is asked, [`super::count_ahead`]). Bodies are read last, only for the rows of
//! the page. The deadline is checked between groups.

use std::time::Instant;

use super::bodies::SegmentBodies;
use super::count_ahead::count_ahead;
use super::filter::{After, Filter};
use super::group_text::matching_values;
use super::index::key_hash;
use super::lookup;
use super::memory::{Chunk, View};
use super::segment::{Segment, COL_ID, COL_LEVEL, COL_MESSAGE, COL_SERVICE, COL_TS};
use crate::query::{LogQuery, Order};
use crate::store::{Counts, Page, StoreError, MAX_PAGE_BYTES, UNKNOWN};

/// Where a hit's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Memory {
        chunk: usize,
        row: usize,
    },
    Segment {
        seg: usize,
        group: usize,
        row: usize,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Hit {
    pub(super) key: (i64, i64),
    pub(super) place: Place,
}

/// The best hits so far, in page order, at most `keep`.
pub(super) struct Best {
    pub(super) order: Order,
    pub(super) keep: usize,
    pub(super) hits: Vec<Hit>,
}

impl Best {
    fn better(&self, a: (i64, i64), b: (i64, i64)) -> bool {
        match self.order {
            Order::Asc => a < b,
            Order::Desc => a > b,
        }
    }

    pub(super) fn push(&mut self, hit: Hit) {
        self.hits.push(hit);
        if self.hits.len() >= self.keep * 2 + 64 {
            self.trim();
        }
    }

    pub(super) fn trim(&mut self) {
        let order = self.order;
        self.hits.sort_unstable_by(|a, b| match order {
            Order::Asc => a.key.cmp(&b.key),
            Order::Desc => b.key.cmp(&a.key),
        });
        self.hits.truncate(self.keep);
    }

    /// Whether a source whose best key is `key` can still place a hit.
    pub(super) fn could_take(&mut self, key: (i64, i64)) -> bool {
        if self.hits.len() < self.keep {
            return true;
        }
        self.trim();
        self.hits
            .last()
            .map_or(true, |worst| self.better(key, worst.key))
    }
}

pub(super) fn timeout(deadline: Instant, given: std::time::Duration) -> Result<(), StoreError> {
    if Instant::now() >= deadline {
        Err(StoreError::Timeout(given))
    } else {
        Ok(())
    }
}

pub(super) fn seg_err(e: super::segment::SegmentError) -> StoreError {
    StoreError::Failed(format!("cannot read a segment: {e}"))
}

/// One page of `q` over `view`.
pub fn query(
    view: &View,
    q: &LogQuery,
    deadline: Instant,
    given: std::time::Duration,
) -> Result<Page, StoreError> {
    let f = Filter::new(q);
    let after = After {
        order: q.order,
        at: q.cursor.map(|c| (c.ts_us, c.id)),
    };
    let mut best = Best {
        order: q.order,
        keep: q.limit + 1,
        hits: Vec::new(),
    };
    let counted = f.is_all() || f.only_labels();
    let mut total: u64 = if f.is_all() {
        view.stored
    } else if f.only_labels() {
        label_total(view, &f)
    } else {
        0
    };
    let mut scratch = Vec::new();
    // Newest chunks first for `desc` (oldest for `asc`): times mostly follow arrival,
    // so the page fills early and, when the total is known already, the other chunks
    // are skipped by their time range.
    let mut chunks: Vec<usize> = (0..view.memory.len()).collect();
    if q.order == Order::Desc {
        chunks.reverse();
    }
    let request_key = f.request_id.as_deref().map(|r| key_hash(r.as_bytes()));
    for ci in chunks {
        let chunk = &view.memory[ci];
        if !f.time_overlaps(chunk.ts_min, chunk.ts_max)
            || request_key.is_some_and(|k| !chunk.requests.may_contain(k))
        {
            continue;
        }
        if counted {
            let best_key = match q.order {
                Order::Asc => (chunk.ts_min, i64::MIN),
                Order::Desc => (chunk.ts_max, i64::MAX),
            };
            let cursor_ok = match (after.at, q.order) {
                (None, _) => true,
                (Some((ct, _)), Order::Asc) => chunk.ts_max >= ct,
                (Some((ct, _)), Order::Desc) => chunk.ts_min <= ct,
            };
            if !cursor_ok || !best.could_take(best_key) {
                continue;
            }
        }
        for (ri, (id, r)) in chunk.rows.iter().enumerate() {
            let key = (r.ts_us, *id);
            if !(f.time_ok(r.ts_us)
                && f.labels_ok(r.service.as_deref(), r.level.as_deref())
                && f.request_ok(r.request_id.as_deref())
                && f.text_ok(r.message.as_deref(), &mut scratch))
            {
                continue;
            }
            if !counted {
                total += 1;
            }
            if after.admits(key) {
                best.push(Hit {
                    key,
                    place: Place::Memory { chunk: ci, row: ri },
                });
            }
        }
    }
    timeout(deadline, given)?;
    // A text search's first count may read every message; a request-id lookup reads
    // the few blocks its filters point at, and counting those apart would read them
    // twice, so only text searches count ahead.
    if !counted && f.phrase.is_some() {
        count_ahead(&view.segments, &f, deadline, given)?;
    }
    // Newest (or oldest) segments first, so that the page fills early and older groups
    // are skipped.
    let mut order: Vec<usize> = (0..view.segments.len()).collect();
    if q.order == Order::Desc {
        order.reverse();
    }
    for si in order {
        let seg = &view.segments[si];
        total += scan_segment(seg, si, &f, &after, counted, &mut best, deadline, given)?;
    }
    best.trim();
    fetch_page(view, best.hits, q.limit, total)
}

/// Matches in `seg` (0 when `counted`), pushing its hits after the cursor into `best`.
///
/// When the segment remembers its count for this filter, only the groups that can still
/// place a hit are read; otherwise every group that may match is, and the count is
/// remembered.
#[allow(clippy::too_many_arguments)]
pub(super) fn scan_segment(
    seg: &Segment,
    si: usize,
    f: &Filter,
    after: &After,
    counted: bool,
    best: &mut Best,
    deadline: Instant,
    given: std::time::Duration,
) -> Result<u64, StoreError> {
    if !counted {
        if let Some(n) = seg.matched.get(f) {
            scan_groups(seg, si, f, after, true, best, deadline, given)?;
            return Ok(n);
        }
    }
    let n = scan_groups(seg, si, f, after, counted, best, deadline, given)?;
    if !counted {
        seg.matched.put(f, n);
    }
    Ok(n)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn scan_groups(
    seg: &Segment,
    si: usize,
    f: &Filter,
    after: &After,
    counted: bool,
    best: &mut Best,
    deadline: Instant,
    given: std::time::Duration,
) -> Result<u64, StoreError> {
    let groups = seg.index.groups.len();
    let request_key = f.request_id.as_deref().map(|r| key_hash(r.as_bytes()));
    let mut total = 0;
    let mut taken = 0usize;
    for step in 0..groups {
        let g = if after.order == Order::Desc {
            groups - 1 - step
        } else {
            step
        };
        let gi = &seg.index.groups[g];
        if !gi.may_match(f) {
            continue;
        }
        // The best key this group could give, in page order.
        let best_key = match after.order {
            Order::Asc => (gi.ts_min, i64::MIN),
            Order::Desc => (gi.ts_max, i64::MAX),
        };
        let cursor_ok = match (after.at, after.order) {
            (None, _) => true,
            (Some((ct, _)), Order::Asc) => gi.ts_max >= ct,
            (Some((ct, _)), Order::Desc) => gi.ts_min <= ct,
        };
        let wanted = cursor_ok && taken < best.keep && best.could_take(best_key);
        if !wanted {
            if counted {
                // Nothing to count here. Rows are sorted, so once this segment cannot
                // place a hit, no later group of it can either; a group before the
                // cursor is only skipped.
                if cursor_ok {
                    break;
                }
                continue;
            }
            if gi.inside_time(f) && f.request_id.is_none() {
                // Labels and times alone: the group's counts say. A phrase too: its
                // terms may, when every row has the labels asked for.
                let labels = gi.label_count(f);
                match &f.phrase {
                    None => {
                        total += labels;
                        continue;
                    }
                    Some(p) if labels == u64::from(gi.rows) => {
                        if let Some(n) = gi.phrase_count(p) {
                            total += n;
                            continue;
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        timeout(deadline, given)?;
        // A request id's rows first: a group where the id is not (most of those its
        // filters point at) costs none of the reads below.
        let request_rows = match (request_key, &f.request_id) {
            (Some(key), Some(want)) => {
                let rows = lookup::request_rows(seg, g, want, key).map_err(seg_err)?;
                if rows.is_empty() {
                    continue;
                }
                Some(rows)
            }
            _ => None,
        };
        // A group only counted needs its times only when the time filter cuts it, and
        // its ids never.
        let ts = if wanted || !gi.inside_time(f) {
            Some(seg.read_i64(g, COL_TS).map_err(seg_err)?)
        } else {
            None
        };
        let ids = if wanted {
            Some(seg.read_i64(g, COL_ID).map_err(seg_err)?)
        } else {
            None
        };
        let label_filter = f.service.is_some() || f.level.is_some();
        let all_labels = !label_filter || gi.label_count(f) == u64::from(gi.rows);
        let services = if all_labels {
            None
        } else {
            Some(seg.read_strings(g, COL_SERVICE).map_err(seg_err)?)
        };
        let levels = if all_labels {
            None
        } else {
            Some(seg.read_strings(g, COL_LEVEL).map_err(seg_err)?)
        };
        // Which messages hold the phrase, searched over the whole group at once.
        let messages = match &f.phrase {
            Some(p) => {
                let m = seg.read_strings(g, COL_MESSAGE).map_err(seg_err)?;
                let found = matching_values(p, &m);
                Some((m, found))
            }
            None => None,
        };
        let rows = gi.rows as usize;
        for step in 0..rows {
            let row = if after.order == Order::Desc {
                rows - 1 - step
            } else {
                step
            };
            if let Some(ts) = &ts {
                if !ts.get(row).is_some_and(|&t| f.time_ok(t)) {
                    continue;
                }
            }
            if let (Some(s), Some(l)) = (&services, &levels) {
                if !f.labels_ok(s.get(row), l.get(row)) {
                    continue;
                }
            }
            if let Some((m, found)) = &messages {
                if !m.slot(row).is_some_and(|v| found.get(v) == Some(&true)) {
                    continue;
                }
            }
            if let Some(found) = &request_rows {
                if found.binary_search(&row).is_err() {
                    continue;
                }
            }
            if !counted {
                total += 1;
            }
            let (Some(ts), Some(ids)) = (&ts, &ids) else {
                continue;
            };
            let (Some(&t), Some(&id)) = (ts.get(row), ids.get(row)) else {
                continue;
            };
            let key = (t, id);
            if taken < best.keep && after.admits(key) {
                best.push(Hit {
                    key,
                    place: Place::Segment {
                        seg: si,
                        group: g,
                        row,
                    },
                });
                taken += 1;
                if counted && taken >= best.keep {
                    break;
                }
            }
        }
        if counted && taken >= best.keep {
            break;
        }
    }
    Ok(total)
}

/// The stored texts of the page's rows.
fn fetch_page(view: &View, hits: Vec<Hit>, limit: usize, total: u64) -> Result<Page, StoreError> {
    let mut logs = Vec::with_capacity(hits.len().min(limit));
    let mut last = None;
    let mut more = false;
    let mut bytes = 0;
    let mut bodies = SegmentBodies::default();
    for (i, hit) in hits.iter().enumerate() {
        if logs.len() == limit || bytes > MAX_PAGE_BYTES {
            more = true;
            break;
        }
        let body = match hit.place {
            Place::Memory { chunk, row } => chunk_body(&view.memory[chunk], row).to_owned(),
            Place::Segment { .. } => bodies.get(view, &hits[i..limit.min(hits.len())])?,
        };
        bytes += body.len();
        logs.push(body);
        last = Some(hit.key);
    }
    Ok(Page {
        total,
        logs,
        last: if more { last } else { None },
    })
}

pub(super) fn chunk_body(chunk: &Chunk, row: usize) -> &str {
    &chunk.rows[row].1.body
}

fn label_total(view: &View, f: &Filter) -> u64 {
    let mut n = 0;
    for c in &view.memory {
        n += c
            .labels
            .iter()
            .filter(|((s, l), _)| f.labels_ok(s.as_deref(), l.as_deref()))
            .map(|(_, &k)| k)
            .sum::<u64>();
    }
    for s in &view.segments {
        n += s
            .labels
            .iter()
            .filter(|(sv, l, _)| f.labels_ok(sv.as_deref(), l.as_deref()))
            .map(|&(_, _, k)| k)
            .sum::<u64>();
    }
    n
}

/// Records stored, by service and by level.
pub fn counts(view: &View) -> Counts {
    let mut c = Counts::default();
    let shown = |v: Option<&str>| match v {
        None | Some("") => UNKNOWN.to_owned(),
        Some(v) => v.to_owned(),
    };
    let mut add = |s: Option<&str>, l: Option<&str>, n: u64| {
        c.total += n;
        *c.by_service.entry(shown(s)).or_default() += n;
        *c.by_level.entry(shown(l)).or_default() += n;
    };
    for chunk in &view.memory {
        for ((s, l), &n) in &chunk.labels {
            add(s.as_deref(), l.as_deref(), n);
        }
    }
    for seg in &view.segments {
        for (s, l, n) in &seg.labels {
            add(s.as_deref(), l.as_deref(), *n);
        }
    }
    c
}
