//! Records not yet in a segment, and the view every query reads.
//!
//! Each group commit becomes one immutable [`Chunk`]; the writer publishes a new
//! [`View`] (the segments and the chunks) after each commit, flush, compaction or
//! retention pass. A query takes the current view (an `Arc` clone under a lock held for
//! nanoseconds) and reads it without further locking, so queries and the writer never
//! wait for each other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use super::index::{key_hash, Bloom, REQUEST_BITS_PER_KEY};
use super::segment::Segment;
use crate::record::Record;

/// Records per (service, level).
pub type Labels = HashMap<(Option<String>, Option<String>), u64>;

/// The records of one commit, in id order.
#[derive(Debug)]
pub struct Chunk {
    pub rows: Vec<(i64, Record)>,
    pub labels: Labels,
    /// The request ids of the chunk, so a lookup skips the chunks without it.
    pub requests: Bloom,
    pub ts_min: i64,
    pub ts_max: i64,
    /// Bytes of the records' bodies and fields, for the flush threshold.
    pub bytes: usize,
}

impl Chunk {
    pub fn new(rows: Vec<(i64, Record)>) -> Chunk {
        let mut borrowed: HashMap<(Option<&str>, Option<&str>), u64> = HashMap::new();
        let (mut ts_min, mut ts_max) = (i64::MAX, i64::MIN);
        let mut bytes = 0;
        let mut requests = HashSet::new();
        for (_, r) in &rows {
            if let Some(id) = &r.request_id {
                requests.insert(key_hash(id.as_bytes()));
            }
            ts_min = ts_min.min(r.ts_us);
            ts_max = ts_max.max(r.ts_us);
            bytes += record_bytes(r);
            *borrowed
                .entry((r.service.as_deref(), r.level.as_deref()))
                .or_default() += 1;
        }
        let labels = borrowed
            .into_iter()
            .map(|((s, l), n)| ((s.map(str::to_owned), l.map(str::to_owned)), n))
            .collect();
        Chunk {
            rows,
            labels,
            requests: Bloom::build(&requests, REQUEST_BITS_PER_KEY),
            ts_min,
            ts_max,
            bytes,
        }
    }

    pub fn first_id(&self) -> Option<i64> {
        self.rows.first().map(|(id, _)| *id)
    }

    pub fn last_id(&self) -> Option<i64> {
        self.rows.last().map(|(id, _)| *id)
    }
}

/// Heap bytes a record holds, roughly.
pub fn record_bytes(r: &Record) -> usize {
    let s = |v: &Option<String>| v.as_ref().map_or(0, String::len);
    r.body.len()
        + s(&r.event_id)
        + s(&r.service)
        + s(&r.level)
        + s(&r.request_id)
        + s(&r.message)
        + std::mem::size_of::<(i64, Record)>()
}

/// What queries read: every segment and every chunk not yet in one.
#[derive(Debug, Default)]
pub struct View {
    /// In id order.
    pub segments: Vec<Arc<Segment>>,
    /// In id order; none of their records is in a segment of this view.
    pub memory: Vec<Arc<Chunk>>,
    /// Records in all of them.
    pub stored: u64,
}

impl View {
    pub fn counted(segments: Vec<Arc<Segment>>, memory: Vec<Arc<Chunk>>) -> View {
        let stored = segments.iter().map(|s| s.rows()).sum::<u64>()
            + memory.iter().map(|c| c.rows.len() as u64).sum::<u64>();
        View {
            segments,
            memory,
            stored,
        }
    }
}

/// The current view, shared by the writer (which replaces it) and the readers.
#[derive(Clone, Default)]
pub struct SharedView(Arc<RwLock<Arc<View>>>);

impl SharedView {
    pub fn get(&self) -> Arc<View> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, view: View) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
    }
}
