//! The `total` of a search counted over several segments at once.
//!
//! A text search counts its matches exactly: the first time it is asked, every row group
//! that may hold a match and whose terms cannot say how many it holds is read, one
//! pass over those groups' messages on the reader's one thread before the page can be
//! answered.
//! Segments are independent and a segment's count is remembered
//! ([`super::segment::MatchCounts`]), so that pass is split over up to
//! [`COUNT_THREADS`] threads (never more than the machine's cores), each counting whole
//! segments, taken one at a time from a shared list so that none waits on a slow one.
//! The page is then read as for a repeated search: only the groups that can place a
//! row on it. The threads live for that one query only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::filter::{After, Filter};
use super::search::{scan_groups, Best};
use super::segment::Segment;
use crate::query::Order;
use crate::store::StoreError;

/// The most threads a query counts with.
pub const COUNT_THREADS: usize = 4;

/// Counts `f`'s matches in every segment of `segments` that does not remember them yet,
/// and remembers them, on several threads when there are several cores and segments.
pub(super) fn count_ahead(
    segments: &[Arc<Segment>],
    f: &Filter,
    deadline: Instant,
    given: Duration,
) -> Result<(), StoreError> {
    let todo: Vec<&Segment> = segments
        .iter()
        .map(|s| &**s)
        .filter(|s| s.matched.get(f).is_none())
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(COUNT_THREADS).min(todo.len());
    if threads < 2 {
        // One thread: the page's own pass counts as it goes, at no extra cost.
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<(), StoreError> {
                    loop {
                        let Some(seg) = todo.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            return Ok(());
                        };
                        let n = count(seg, f, deadline, given)?;
                        seg.matched.put(f, n);
                    }
                })
            })
            .collect();
        let mut result = Ok(());
        for w in workers {
            let r = w.join().unwrap_or_else(|_| {
                Err(StoreError::Failed(
                    "a thread counting a search's matches failed".to_owned(),
                ))
            });
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// The matches of `f` in `seg`, without placing any on a page.
fn count(seg: &Segment, f: &Filter, deadline: Instant, given: Duration) -> Result<u64, StoreError> {
    let after = After {
        order: Order::Asc,
        at: None,
    };
    // A page of none: no group is read for its rows, only counted.
    let mut none = Best {
        order: Order::Asc,
        keep: 0,
        hits: Vec::new(),
    };
    scan_groups(seg, 0, f, &after, false, &mut none, deadline, given)
}
