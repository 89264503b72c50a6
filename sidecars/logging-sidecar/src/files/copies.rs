//! Copies: recognising a copy made by copytruncate as the continuation of the file it was
//! copied from.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant, SystemTime};

use super::{FileSet, Seen, Tracked, COPY_MEMORY, COPY_MEMORY_FILES};
use crate::checkpoint::Saved;
use crate::fingerprint::{self, FileKey, PREFIX_BYTES};

/// What [`FileSet::copy_source`] found.
pub(super) enum CopyCheck {
    /// A copy of the file saved so: continue its stream from its offset.
    Copy(Saved),
    /// Perhaps a copy still being written: look again at the next poll.
    Wait,
    /// A new file.
    New,
}

impl FileSet {
    /// Whether a file met for the first time is a copy of a known one (copytruncate).
    /// The known file is one truncated in place lately, or one still followed, or (after
    /// a restart) one in the checkpoint. A copy is another file (another inode),
    /// changed since the sidecar opened the known file (a copy is made of what the file
    /// holds, so after it: older files that merely start alike, rotated ones say, are no
    /// copies), that starts with the known file's first line and holds, byte for byte,
    /// what the sidecar read of it ([`Seen`]: every byte when less than
    /// [`PREFIX_BYTES`] were read, else the 64 bytes before the position); no time
    /// window is involved:
    /// - a file truncated lately: whatever was read of it, even nothing;
    /// - a file still followed: only once more than [`PREFIX_BYTES`] were read (two live
    ///   files that merely start alike must not share a stream);
    /// - a checkpoint entry: the same 64 bytes before its saved offset, which must lie
    ///   past [`PREFIX_BYTES`].
    ///
    /// A copy continues the known file's stream from its acknowledged offset, so its
    /// backlog is read and what was already sent keeps its ids; since it holds the very
    /// bytes that were read, no line of it can take the id of another line.
    pub(super) fn copy_source(
        &mut self,
        key: &FileKey,
        file: &File,
        len: u64,
        now: Instant,
    ) -> CopyCheck {
        self.truncated
            .retain(|(_, at)| now.duration_since(*at) < COPY_MEMORY);
        let excess = self.truncated.len().saturating_sub(COPY_MEMORY_FILES);
        self.truncated.drain(..excess);
        let mut longer_known = false;
        // 1. Truncated lately, or still followed: checked at the position read so far.
        let mut candidates: Vec<(Option<usize>, Origin)> = self
            .truncated
            .iter()
            .enumerate()
            .map(|(i, (o, _))| (Some(i), o.clone()))
            .collect();
        candidates.extend(
            self.files
                .iter()
                .filter(|t| t.key != *key && t.file.is_some())
                .map(|t| (None, Origin::of(t, self.checkpoints.get(&t.key)))),
        );
        let mut found = None;
        let changed = file.metadata().ok().map(|m| changed_at(&m));
        for (i, origin) in candidates {
            // A file truncated and rewritten is the same inode: never its own copy.
            if origin.fingerprint != key.fingerprint
                || origin.inode == (key.dev, key.ino)
                || !changed.is_some_and(|c| c + CLOCK_TICK >= origin.opened_at)
            {
                continue;
            }
            let seen = origin.seen;
            let matches = if seen.offset > len {
                longer_known = true;
                false
            } else if seen.offset == 0 {
                // Nothing of it was read, so nothing was sent under its stream.
                origin.truncated
            } else if origin.truncated || seen.offset >= PREFIX_BYTES {
                seen.evidence.is_some()
                    && fingerprint::evidence(file, seen.offset).ok().flatten() == seen.evidence
            } else {
                false
            };
            if matches {
                found = Some((i, origin));
                break;
            }
        }
        let id = (key.dev, key.ino);
        if let Some((i, origin)) = found {
            if let Some(i) = i {
                // Its copy is found: not to be found again.
                self.truncated.remove(i);
            }
            self.deferred.retain(|(d, _)| *d != id);
            return CopyCheck::Copy(origin.saved);
        }
        // 2. After a restart: a checkpoint entry, checked at its saved offset.
        let mut best: Option<Saved> = None;
        for (k, saved) in self.checkpoints.iter() {
            if *k == *key
                || k.fingerprint != key.fingerprint
                || (k.dev, k.ino) == (key.dev, key.ino)
                || self.files.iter().any(|t| t.key == *k)
            {
                continue;
            }
            if saved.offset < PREFIX_BYTES || saved.tail.is_none() {
                if best.is_none() && young_copy(k, saved, file, len) {
                    best = Some(saved.clone());
                }
                continue;
            }
            if saved.offset > len {
                longer_known = true;
            } else if fingerprint::tail_hash(file, saved.offset).ok().flatten() == saved.tail
                && !matches!(&best, Some(b) if b.offset >= saved.offset)
            {
                best = Some(saved.clone());
            }
        }
        if let Some(saved) = best {
            self.deferred.retain(|(d, _)| *d != id);
            return CopyCheck::Copy(saved);
        }
        if longer_known {
            let since = match self.deferred.iter().find(|(d, _)| *d == id) {
                Some((_, since)) => *since,
                None => {
                    self.deferred.push((id, now));
                    now
                }
            };
            if now.duration_since(since) < self.settings.rotate_wait {
                return CopyCheck::Wait;
            }
        }
        self.deferred.retain(|(d, _)| *d != id);
        CopyCheck::New
    }
}

/// Whether `file` (`len` bytes) is a copy of the checkpointed file `k`, acknowledged
/// below [`PREFIX_BYTES`] (so without the 64 bytes before a position to compare): a file
/// met young, copied by copytruncate and truncated just before the sidecar stopped,
/// which did not see the copy. Without this its copy, an unknown sibling, was taken for
/// history and its lines lost. The copy must hold every first byte the file held when
/// first met (its head, which covers what was acknowledged), be born after it, and
/// either that head is a full [`PREFIX_BYTES`] (as much as the live rule asks of a file
/// still followed) or the checkpointed inode is still at its last path with other bytes
/// (truncated in place, as the live rule asks of a truncated file).
fn young_copy(k: &FileKey, saved: &Saved, file: &File, len: u64) -> bool {
    let Some((head_len, head)) = saved.birth.head else {
        return false;
    };
    if head_len < saved.offset || head_len > len {
        return false;
    }
    let born_after = match (saved.birth.born, fingerprint::Birth::of(file).born) {
        (Some(original), Some(copy)) => copy > original,
        _ => false,
    };
    if !born_after || fingerprint::evidence(file, head_len).ok().flatten() != Some(head) {
        return false;
    }
    head_len >= PREFIX_BYTES || truncated_in_place(k, saved)
}

/// Whether the checkpointed inode `k` is still at its last path, holding other bytes.
fn truncated_in_place(k: &FileKey, saved: &Saved) -> bool {
    let Ok(f) = File::open(&saved.path) else {
        return false;
    };
    let Ok(meta) = f.metadata() else {
        return false;
    };
    (meta.dev(), meta.ino()) == (k.dev, k.ino)
        && (fingerprint::of_file(&f).ok().flatten() != Some(k.fingerprint)
            || !super::recovery::still_the_same(&f, saved))
}

/// File times lag the clock by up to a tick of the kernel's coarse clock.
const CLOCK_TICK: Duration = Duration::from_millis(20);

/// When a file's inode last changed (its status change time): at its creation or
/// later (a write, a rename), never set back by a copy that preserves times.
fn changed_at(meta: &std::fs::Metadata) -> SystemTime {
    let (secs, nanos) = (meta.ctime(), meta.ctime_nsec());
    let since_epoch = Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32);
    SystemTime::UNIX_EPOCH + since_epoch
}

/// A file a copy may have been made of: what it was read to, and what to continue from.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    fingerprint: u64,
    /// Its device and inode: a copy is another file.
    inode: (u64, u64),
    /// Found truncated in place (rather than still followed).
    pub(super) truncated: bool,
    seen: Seen,
    opened_at: SystemTime,
    /// Its stream, its acknowledged offset and the tail there: where a copy continues.
    saved: Saved,
}

impl Origin {
    pub(super) fn of(t: &Tracked, saved: Option<&Saved>) -> Origin {
        Origin {
            fingerprint: t.key.fingerprint,
            inode: (t.key.dev, t.key.ino),
            truncated: false,
            seen: t.seen,
            opened_at: t.opened_at,
            saved: Saved {
                offset: t.committed,
                path: t.path.clone(),
                stream: t.stream,
                tail: saved
                    .filter(|s| s.offset == t.committed)
                    .and_then(|s| s.tail),
                skipping: saved.is_some_and(|s| s.offset == t.committed && s.skipping),
                // A copy is born of its own (set where it is registered).
                birth: saved.map(|s| s.birth).unwrap_or_default(),
            },
        }
    }
}
