//! The writer's state, as a plain struct the writer actor drives and tests call
//! directly: group commit into the log and the memory buffer, sealing the buffer for a
//! flush, installing segments, retention and clear.
//!
//! Order of effects, which is what makes a crash at any point safe:
//!
//! - commit: the group is appended to the log (and synced with `SYNC_MODE=full`)
//!   before it is visible or acknowledged;
//! - flush: a new log file is started, the sealed records are written to a `.tmp`
//!   segment and synced, the segment is renamed into place, and only then are the log
//!   files it covers deleted; replay skips records whose id a segment already holds;
//! - compaction: the merged segment is named by the id range of its inputs and renamed
//!   into place before they are deleted; at start a segment whose range lies inside
//!   another's is a leftover input and is deleted;
//! - retention and clear delete whole files, each deletion atomic.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::event_id::StreamSpan;

use super::dedup::{Check, Dedup, Owner};
use super::memory::{Chunk, SharedView, View};
use super::segment::{self, Segment, SEGMENT_DIR};
use super::wal::{self, Wal};
use crate::config::SyncMode;
use crate::record::Record;
use crate::store::{CommittedRecord, Inserted, StoreError};

mod upkeep;

/// Records in memory after which the buffer is sealed and flushed to a segment, by
/// default (`FLUSH_RECORDS`): 4 row groups, about 21 MiB of memory for records of 330
/// bytes (each record's fields are separate allocations), a segment of about 2 MiB.
/// The buffer and the [`MAX_SEALED`] flushes under way are the largest part of the
/// store's memory while ingesting: at 65,536 (cut at [`FLUSH_BYTES`] then 32 MiB, about
/// 47,000 such records) the aggregator peaked at 248-254 MiB over 10,000,000 records,
/// at 32,768 at 224 MiB.
pub const FLUSH_ROWS: usize = 32_768;
/// Bytes of records in memory after which the buffer is flushed, whatever their count:
/// with [`MAX_SEALED`], the records in memory stay under three times this.
pub const FLUSH_BYTES: usize = 24 << 20;
/// A buffer older than this is flushed even if small, which bounds the log's size.
pub const FLUSH_AGE: Duration = Duration::from_secs(300);
/// Flushes under way (sealed buffers kept in memory) before commits wait for one.
pub const MAX_SEALED: usize = 2;

/// A buffer handed to the flusher.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub owner: Owner,
    pub chunks: Vec<Arc<Chunk>>,
    /// Log files starting before this id hold only records of this buffer or older.
    pub wal_before: i64,
    pub epoch: u64,
}

/// When the buffer is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub flush_rows: usize,
    pub flush_bytes: usize,
    pub flush_age: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            flush_rows: FLUSH_ROWS,
            flush_bytes: FLUSH_BYTES,
            flush_age: FLUSH_AGE,
        }
    }
}

/// The writer's state.
pub struct Engine {
    pub dir: PathBuf,
    limits: Limits,
    sync: SyncMode,
    wal: Wal,
    next_id: i64,
    dedup: Dedup,
    segments: Vec<Arc<Segment>>,
    active: Vec<Arc<Chunk>>,
    active_owner: Owner,
    active_rows: usize,
    active_bytes: usize,
    active_since: Option<Instant>,
    sealed: Vec<Sealed>,
    view: SharedView,
    /// Bumped by clear, so that a flush started before it is thrown away.
    epoch: u64,
    /// The segment whose `event_id`s were last read to confirm a hash match.
    confirmed: Option<(Owner, HashSet<String>)>,
    /// Whether `confirmed` holds the segment's structured ids too.
    confirmed_structured: bool,
}

/// What retention needs after deleting whole segments.
#[derive(Debug)]
pub enum RetentionStep {
    Nothing,
    /// Records to delete are in memory: flush them first.
    Flush,
    /// Rewrite `segment` without its `drop_oldest` oldest records (by arrival) and
    /// those older than `min_ts_us`.
    Rewrite {
        segment: Arc<Segment>,
        drop_oldest: u64,
        min_ts_us: Option<i64>,
    },
}

/// A rewritten segment, written to `tmp`, holding ids `first..=last`.
#[derive(Debug)]
pub struct Rewritten {
    pub tmp: PathBuf,
    pub first: i64,
    pub last: i64,
    pub event_ids: Vec<String>,
}

/// What [`Engine::commit`] did.
pub struct Committed {
    pub done: Vec<Inserted>,
    /// The stored records with their ids, when asked for (the live feed).
    pub records: Vec<CommittedRecord>,
}

/// Everything [`super::open`] recovered, to start an engine with.
pub struct Recovered {
    pub segments: Vec<Arc<Segment>>,
    pub dedup: Dedup,
    pub memory: Vec<(i64, Record)>,
    pub next_id: i64,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("{what}: {e}"))
}

impl Engine {
    pub fn new(
        dir: &Path,
        sync: SyncMode,
        limits: Limits,
        recovered: Recovered,
        view: SharedView,
    ) -> Result<Engine, StoreError> {
        let Recovered {
            segments,
            mut dedup,
            memory,
            next_id,
        } = recovered;
        let wal = Wal::create(dir, next_id, sync).map_err(|e| io_err("cannot open the log", e))?;
        let owner = memory.first().map_or(next_id, |(id, _)| *id);
        for (_, r) in &memory {
            if let Some(id) = &r.event_id {
                dedup.insert(id, owner);
            }
        }
        let mut engine = Engine {
            dir: dir.to_owned(),
            limits,
            sync,
            wal,
            next_id,
            dedup,
            segments,
            active: Vec::new(),
            active_owner: owner,
            active_rows: 0,
            active_bytes: 0,
            active_since: None,
            sealed: Vec::new(),
            view,
            epoch: 0,
            confirmed: None,
            confirmed_structured: false,
        };
        if !memory.is_empty() {
            engine.add_chunk(Chunk::new(memory));
        }
        engine.publish();
        Ok(engine)
    }

    fn add_chunk(&mut self, chunk: Chunk) {
        self.active_rows += chunk.rows.len();
        self.active_bytes += chunk.bytes;
        self.active_since.get_or_insert_with(Instant::now);
        self.active.push(Arc::new(chunk));
    }

    /// Publishes the current state to the readers.
    pub fn publish(&self) {
        let mut memory: Vec<Arc<Chunk>> = Vec::new();
        for s in &self.sealed {
            memory.extend(s.chunks.iter().cloned());
        }
        memory.extend(self.active.iter().cloned());
        self.view.set(View::counted(self.segments.clone(), memory));
    }

    pub fn stored(&self) -> u64 {
        self.view.get().stored
    }

    /// Whether commits must wait for a flush to finish (memory is full).
    pub fn must_wait(&self) -> bool {
        self.sealed.len() >= MAX_SEALED
            && (self.active_rows >= self.limits.flush_rows
                || self.active_bytes >= self.limits.flush_bytes)
    }

    /// Stores several batches as one group: deduplicated, logged, then visible.
    pub fn commit(
        &mut self,
        batches: Vec<Vec<Record>>,
        feed: bool,
    ) -> Result<Committed, StoreError> {
        let mut done = vec![Inserted::default(); batches.len()];
        let mut keep: Vec<Vec<bool>> = Vec::with_capacity(batches.len());
        {
            let mut seen: HashSet<&str> = HashSet::new();
            for (b, batch) in batches.iter().enumerate() {
                let mut k = Vec::with_capacity(batch.len());
                for r in batch {
                    let new = match r.event_id.as_deref() {
                        None => true,
                        Some(id) => !seen.contains(id) && !self.is_stored(id)?,
                    };
                    if new {
                        if let Some(id) = r.event_id.as_deref() {
                            seen.insert(id);
                        }
                        done[b].stored += 1;
                    } else {
                        done[b].duplicates += 1;
                    }
                    k.push(new);
                }
                keep.push(k);
            }
        }
        let first = self.next_id;
        let kept = batches
            .iter()
            .zip(&keep)
            .flat_map(|(batch, k)| batch.iter().zip(k).filter(|(_, &k)| k).map(|(r, _)| r));
        let n = done.iter().map(|d| d.stored as usize).sum::<usize>();
        if n > 0 {
            self.wal
                .append(ExactLen {
                    inner: (first..).zip(kept),
                    len: n,
                })
                .map_err(|e| io_err("cannot write the log", e))?;
        }
        let mut rows = Vec::with_capacity(n);
        let mut id = first;
        for (batch, k) in batches.into_iter().zip(keep) {
            for (r, k) in batch.into_iter().zip(k) {
                if k {
                    if let Some(eid) = r.event_id.as_deref() {
                        self.dedup.insert(eid, self.active_owner);
                    }
                    rows.push((id, r));
                    id += 1;
                }
            }
        }
        self.next_id = id;
        let records = if feed {
            rows.iter()
                .map(|(id, r)| CommittedRecord {
                    id: *id,
                    record: r.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        if !rows.is_empty() {
            self.add_chunk(Chunk::new(rows));
            self.publish();
        }
        Ok(Committed { done, records })
    }

    /// Whether `id` is stored; a hash match in a segment is confirmed against its text.
    fn is_stored(&mut self, id: &str) -> Result<bool, StoreError> {
        match self.dedup.check(id) {
            Check::New => Ok(false),
            Check::Duplicate => Ok(true),
            Check::Confirm(owners) => {
                // A structured id looked up as opaque (after an overlap) is not in the
                // column of newer files but in their bodies, which cost more to read.
                let structured = StreamSpan::parse(id).is_some();
                for owner in owners {
                    let cached = self.confirmed.as_ref().map(|(o, _)| *o) == Some(owner)
                        && (self.confirmed_structured || !structured);
                    if !cached {
                        let Some(seg) = self.segments.iter().find(|s| s.first_id == owner) else {
                            continue;
                        };
                        let mut ids = HashSet::new();
                        for g in 0..seg.index.groups.len() {
                            let col = seg
                                .read_event_ids(g, structured)
                                .map_err(|e| io_err("cannot read a segment", e))?;
                            ids.extend(col.into_iter().flatten());
                        }
                        self.confirmed = Some((owner, ids));
                        self.confirmed_structured = structured;
                    }
                    if self
                        .confirmed
                        .as_ref()
                        .is_some_and(|(_, ids)| ids.contains(id))
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    /// Seals the buffer for a flush when it is large or old enough (or `force`).
    pub fn seal_if_due(&mut self, force: bool) -> Result<Option<Sealed>, StoreError> {
        if self.active.is_empty() || self.sealed.len() >= MAX_SEALED {
            return Ok(None);
        }
        let due = self.active_rows >= self.limits.flush_rows
            || self.active_bytes >= self.limits.flush_bytes
            || self
                .active_since
                .is_some_and(|t| t.elapsed() >= self.limits.flush_age);
        if !due && !force {
            return Ok(None);
        }
        // New records go to a new log file, so the sealed ones' files can go whole.
        self.wal = Wal::create(&self.dir, self.next_id, self.sync)
            .map_err(|e| io_err("cannot start a log file", e))?;
        let sealed = Sealed {
            owner: self.active_owner,
            chunks: std::mem::take(&mut self.active),
            wal_before: self.next_id,
            epoch: self.epoch,
        };
        self.active_owner = self.next_id;
        self.active_rows = 0;
        self.active_bytes = 0;
        self.active_since = None;
        self.sealed.push(sealed.clone());
        Ok(Some(sealed))
    }

    /// Writes the buffer to segments now, on this thread (at a clean shutdown, so that
    /// the next start has no log to replay): the buffers sealed earlier whose flush has
    /// not been put in place yet (the flusher may still be writing them; its file is
    /// then left over and removed at the next start), then the active one.
    pub fn flush_now(&mut self, group_rows: usize) -> Result<(), StoreError> {
        self.seal_if_due(true)?;
        for sealed in self.sealed.clone() {
            let tmp = super::flusher::write_sealed_as(&self.dir, &sealed, group_rows, "final")?;
            self.install_flush(sealed.owner, sealed.epoch, &tmp)?;
        }
        // Sealing waits while MAX_SEALED buffers are under way; they are written now.
        if let Some(sealed) = self.seal_if_due(true)? {
            let tmp = super::flusher::write_sealed_as(&self.dir, &sealed, group_rows, "final")?;
            self.install_flush(sealed.owner, sealed.epoch, &tmp)?;
        }
        Ok(())
    }

    /// Puts the segment written for `owner` in place (`tmp` → its final name), then
    /// drops the log files and memory it replaces.
    pub fn install_flush(
        &mut self,
        owner: Owner,
        epoch: u64,
        tmp: &Path,
    ) -> Result<(), StoreError> {
        let Some(pos) = self
            .sealed
            .iter()
            .position(|s| s.owner == owner && s.epoch == epoch && epoch == self.epoch)
        else {
            // Cleared meanwhile.
            let _ = std::fs::remove_file(tmp);
            return Ok(());
        };
        let last = self.sealed[pos]
            .chunks
            .iter()
            .filter_map(|c| c.last_id())
            .max()
            .unwrap_or(owner);
        let seg = self.put_in_place(tmp, owner, last)?;
        let sealed = self.sealed.remove(pos);
        self.segments.push(Arc::new(seg));
        self.segments.sort_by_key(|s| s.first_id);
        self.dedup.seal(owner);
        let before = self
            .sealed
            .iter()
            .map(|s| s.owner)
            .chain([sealed.wal_before])
            .min()
            .unwrap_or(sealed.wal_before);
        self.delete_wal_before(before);
        self.publish();
        Ok(())
    }

    /// Renames a written segment to its final name and opens it.
    fn put_in_place(&self, tmp: &Path, first: i64, last: i64) -> Result<Segment, StoreError> {
        let dir = self.dir.join(SEGMENT_DIR);
        let path = dir.join(segment::file_name(first, last));
        std::fs::rename(tmp, &path).map_err(|e| io_err("cannot put a segment in place", e))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            // The new name must be durable before the log it replaces is deleted.
            d.sync_all()
                .map_err(|e| io_err("cannot sync the segment directory", e))?;
        }
        Segment::open(&path).map_err(|e| io_err("cannot open a new segment", e))
    }

    fn delete_wal_before(&self, before: i64) {
        if let Ok(files) = wal::list(&self.dir) {
            for (first, path) in files {
                if first < before {
                    if let Err(e) = std::fs::remove_file(&path) {
                        log::warn!(file = path.display().to_string().as_str(), error = e.to_string().as_str(); "Cannot delete a log file that a segment replaced.");
                    }
                }
            }
        }
    }

    /// A flush failed: its records stay in memory and in the log; this is the sealed
    /// buffer to hand to the flusher again.
    pub fn flush_again(&self, owner: Owner) -> Option<Sealed> {
        self.sealed
            .iter()
            .find(|s| s.owner == owner && s.epoch == self.epoch)
            .cloned()
    }

    /// Deletes every record; returns how many there were.
    pub fn clear(&mut self) -> Result<u64, StoreError> {
        let n = self.stored();
        self.epoch += 1;
        for s in self.segments.drain(..) {
            std::fs::remove_file(&s.path).map_err(|e| io_err("cannot delete a segment", e))?;
        }
        self.sealed.clear();
        self.active.clear();
        self.active_rows = 0;
        self.active_bytes = 0;
        self.active_since = None;
        self.dedup.clear();
        self.confirmed = None;
        self.wal = Wal::create(&self.dir, self.next_id, self.sync)
            .map_err(|e| io_err("cannot start a log file", e))?;
        self.active_owner = self.next_id;
        self.delete_wal_before(self.next_id);
        self.publish();
        Ok(n)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Counts of kept ranges and bytes of opaque-id hashes (see [`Dedup::footprint`]).
    pub fn dedup_footprint(&self) -> (usize, usize) {
        self.dedup.footprint()
    }

    /// The records of every segment, by first id, for tests.
    pub fn segment_rows(&self) -> HashMap<i64, u64> {
        self.segments
            .iter()
            .map(|s| (s.first_id, s.rows()))
            .collect()
    }
}

/// An iterator whose length is known ahead (the kept records of a group).
struct ExactLen<I> {
    inner: I,
    len: usize,
}

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next()?;
        self.len = self.len.saturating_sub(1);
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}
