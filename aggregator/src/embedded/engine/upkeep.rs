//! The writer's upkeep of segments: compaction, retention, and their rewrites put in
//! place. Part of [`Engine`]; see its module for the order of effects that makes a
//! crash at any point safe.

use std::path::Path;
use std::sync::Arc;

use super::{Engine, RetentionStep, Rewritten};
use crate::embedded::segment::Segment;
use crate::store::StoreError;

use super::io_err;

impl Engine {
    /// Adjacent segments worth merging into one, oldest first: runs of at least
    /// `fan_in` segments smaller than half of `target_rows` (made by age flushes, a
    /// trickle of records, or retention), merged up to about `target_rows`. Segments
    /// of a full flush are never merged again, so records are written once at a high
    /// rate.
    pub fn compaction_due(&self, fan_in: usize, target_rows: u64) -> Option<Vec<Arc<Segment>>> {
        let small: Vec<&Arc<Segment>> = self
            .segments
            .iter()
            .filter(|s| s.rows() < target_rows / 2)
            .collect();
        let mut run: Vec<Arc<Segment>> = Vec::new();
        for s in small {
            let adjacent = run.last().is_some_and(|p| {
                self.segments
                    .iter()
                    .position(|x| x.first_id == p.first_id)
                    .map(|i| i + 1)
                    == self.segments.iter().position(|x| x.first_id == s.first_id)
            });
            if !adjacent {
                run.clear();
            }
            run.push(s.clone());
            let rows: u64 = run.iter().map(|s| s.rows()).sum();
            if run.len() >= fan_in && (run.len() >= fan_in * 2 || rows >= target_rows / 2) {
                return Some(run);
            }
        }
        (run.len() >= fan_in).then_some(run)
    }

    /// Puts a merged segment in place of its inputs, if they are all still there.
    pub fn install_compaction(
        &mut self,
        inputs: &[i64],
        tmp: &Path,
        last: i64,
    ) -> Result<(), StoreError> {
        let present = inputs
            .iter()
            .all(|o| self.segments.iter().any(|s| s.first_id == *o));
        if !present || inputs.is_empty() {
            let _ = std::fs::remove_file(tmp);
            return Ok(());
        }
        let first = inputs[0];
        let seg = self.put_in_place(tmp, first, last)?;
        let old: Vec<Arc<Segment>> = self
            .segments
            .iter()
            .filter(|s| inputs.contains(&s.first_id))
            .cloned()
            .collect();
        self.segments.retain(|s| !inputs.contains(&s.first_id));
        self.segments.push(Arc::new(seg));
        self.segments.sort_by_key(|s| s.first_id);
        self.dedup.merge_owners(inputs, first);
        if self
            .confirmed
            .as_ref()
            .is_some_and(|(o, _)| inputs.contains(o))
        {
            self.confirmed = None;
        }
        self.publish();
        for s in old {
            if let Err(e) = std::fs::remove_file(&s.path) {
                log::warn!(file = s.path.display().to_string().as_str(), error = e.to_string().as_str(); "Cannot delete a compacted segment; it is deleted at the next start.");
            }
        }
        Ok(())
    }

    /// One retention pass. Records older than `min_ts_us` go first, then the oldest by
    /// arrival beyond `max_records`. Whole segments are deleted at once; what else is
    /// needed comes back as a step: a flush, when records to delete are still in
    /// memory, or the rewrite of the one segment that holds some of them. The writer
    /// runs passes until the step is [`RetentionStep::Nothing`]. Returns the records
    /// deleted.
    pub fn retain(
        &mut self,
        max_records: Option<u64>,
        min_ts_us: Option<i64>,
    ) -> (u64, RetentionStep) {
        let mut removed = 0;
        if let Some(min) = min_ts_us {
            let old: Vec<i64> = self
                .segments
                .iter()
                .filter(|s| s.index.groups.iter().all(|g| g.ts_max < min))
                .map(|s| s.first_id)
                .collect();
            removed += self.delete_segments(&old);
            if let Some(s) = self
                .segments
                .iter()
                .find(|s| s.index.groups.iter().any(|g| g.ts_min < min))
            {
                let step = RetentionStep::Rewrite {
                    segment: s.clone(),
                    drop_oldest: 0,
                    min_ts_us,
                };
                return (removed, step);
            }
            let in_memory = self
                .active
                .iter()
                .chain(self.sealed.iter().flat_map(|s| s.chunks.iter()))
                .any(|c| c.ts_min < min);
            if in_memory {
                return (removed, RetentionStep::Flush);
            }
        }
        let Some(max) = max_records else {
            return (removed, RetentionStep::Nothing);
        };
        let mut stored = self.stored();
        let mut victims = Vec::new();
        for s in &self.segments {
            if stored.saturating_sub(s.rows()) < max {
                break;
            }
            stored -= s.rows();
            victims.push(s.first_id);
        }
        removed += self.delete_segments(&victims);
        let excess = self.stored().saturating_sub(max);
        let step = match self.segments.first() {
            _ if excess == 0 => RetentionStep::Nothing,
            Some(s) => RetentionStep::Rewrite {
                segment: s.clone(),
                drop_oldest: excess,
                min_ts_us: None,
            },
            None => RetentionStep::Flush,
        };
        (removed, step)
    }

    /// Deletes whole segments; returns their records.
    fn delete_segments(&mut self, owners: &[i64]) -> u64 {
        let mut removed = 0;
        for &owner in owners {
            let Some(pos) = self.segments.iter().position(|s| s.first_id == owner) else {
                continue;
            };
            let seg = self.segments[pos].clone();
            if let Err(e) = std::fs::remove_file(&seg.path) {
                log::warn!(file = seg.path.display().to_string().as_str(), error = e.to_string().as_str(); "Retention cannot delete a segment; it will retry.");
                continue;
            }
            self.forget_segment(pos);
            removed += seg.rows();
        }
        if removed > 0 {
            self.publish();
        }
        removed
    }

    fn forget_segment(&mut self, pos: usize) {
        let seg = self.segments.remove(pos);
        self.dedup.remove(seg.first_id);
        if self
            .confirmed
            .as_ref()
            .is_some_and(|(o, _)| *o == seg.first_id)
        {
            self.confirmed = None;
        }
    }

    /// Puts the rewrite of segment `old` in place (`None`: nothing of it is kept);
    /// returns the records it deleted.
    pub fn install_rewrite(
        &mut self,
        old: i64,
        rewritten: Option<Rewritten>,
    ) -> Result<u64, StoreError> {
        let Some(pos) = self.segments.iter().position(|s| s.first_id == old) else {
            if let Some(r) = rewritten {
                let _ = std::fs::remove_file(&r.tmp);
            }
            return Ok(0);
        };
        let before = self.segments[pos].clone();
        let kept = match rewritten {
            None => {
                std::fs::remove_file(&before.path)
                    .map_err(|e| io_err("cannot delete a segment", e))?;
                self.forget_segment(pos);
                0
            }
            Some(r) => {
                let seg = self.put_in_place(&r.tmp, r.first, r.last)?;
                let kept = seg.rows();
                if seg.path != before.path {
                    std::fs::remove_file(&before.path)
                        .map_err(|e| io_err("cannot delete a rewritten segment", e))?;
                }
                self.forget_segment(pos);
                self.dedup
                    .load_segment(seg.first_id, r.event_ids.iter().map(String::as_str));
                self.segments.push(Arc::new(seg));
                self.segments.sort_by_key(|s| s.first_id);
                kept
            }
        };
        self.publish();
        Ok(before.rows() - kept)
    }
}
