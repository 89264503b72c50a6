//! Positions: chunks handed over move the read position, acknowledgements move the
//! checkpoint; a file closed and fully acknowledged is forgotten.

use super::{FileSet, Position, Tracked};
use crate::batch::Ack;
use crate::checkpoint::Checkpoints;
use crate::fingerprint::{self, FileKey};

impl FileSet {
    /// The chunk ending at `position` was taken by the enricher.
    pub fn handed_over(&mut self, position: Position) {
        // Key and stream: a late position of an instance truncated meanwhile must not
        // move the position of the new instance that has its key.
        if let Some(t) = self
            .files
            .iter_mut()
            .find(|t| t.key == position.key && t.stream == position.stream)
        {
            t.read_offset = position.end_offset;
            t.skipping = position.skipping;
            if position.skipping && !t.skip_marks.contains(&position.end_offset) {
                t.skip_marks.push(position.end_offset);
            }
        }
    }

    /// The aggregator acknowledged everything before these positions.
    pub fn acknowledge(&mut self, acks: &[Ack]) {
        let mut done = Vec::new();
        for ack in acks {
            let Some(t) = self
                .files
                .iter_mut()
                .find(|t| t.key == ack.key && t.stream == ack.stream)
            else {
                // The instance was truncated or forgotten meanwhile: nothing left to record.
                continue;
            };
            if ack.offset > t.committed {
                t.committed = ack.offset;
            }
            if t.file.is_none() {
                // No handle to hash the bytes before the position with: the checkpoint
                // keeps its older position (a restart re-sends, with the same ids) until
                // a parked file is reopened ([`FileSet::record_committed`]).
                if !t.parked && t.committed >= t.read_offset {
                    done.push(t.key);
                }
                continue;
            }
            record(&mut self.checkpoints, t);
        }
        for key in done {
            self.forget(&key);
        }
    }

    /// Writes the acknowledged position of the open file at `i` into the checkpoint.
    pub(super) fn record_committed(&mut self, i: usize) {
        record(&mut self.checkpoints, &mut self.files[i]);
    }

    pub(super) fn forget(&mut self, key: &FileKey) {
        self.files.retain(|t| t.key != *key);
        self.checkpoints.remove(key);
    }
}

/// Records `t`'s acknowledged position, with the hash of the bytes before it (read
/// through its handle) and whether it lies inside a skipped over-long line.
fn record(checkpoints: &mut Checkpoints, t: &mut Tracked) {
    let tail = t
        .file
        .as_ref()
        .and_then(|f| fingerprint::tail_hash(f, t.committed).ok().flatten());
    let skipping = t.skip_marks.contains(&t.committed);
    let committed = t.committed;
    t.skip_marks.retain(|&m| m > committed);
    checkpoints.advance(t.key, t.committed, tail, skipping, &t.path);
}
