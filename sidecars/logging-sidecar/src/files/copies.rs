//! Rotation siblings and copies: finding, in single-path mode, the files the path was
//! rotated to, and recognising a copy made by copytruncate as the continuation of the
//! file it was copied from.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::{FileSet, Tracked, COMPRESSED, COPY_MEMORY, COPY_MEMORY_FILES};
use crate::checkpoint::Saved;
use crate::fingerprint::{self, FileKey, FINGERPRINT_MAX_BYTES};

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
    /// In single-path mode, the usual rotation siblings of the path: `app.log.1`,
    /// `app.log-20261201`, … (compressed ones excluded). They are only ever opened as
    /// files already known (renamed, or recovered after a restart) or as copies of one
    /// (copytruncate); a sibling from before the sidecar is never read.
    pub(super) fn siblings(&self) -> Vec<PathBuf> {
        if self.is_glob {
            return Vec::new();
        }
        let path = Path::new(&self.pattern);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Vec::new();
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let name = name.as_encoded_bytes();
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let Some(file) = p.file_name().map(|f| f.as_encoded_bytes()) else {
                    return false;
                };
                file.len() > name.len() + 1
                    && file.starts_with(name)
                    && matches!(file[name.len()], b'.' | b'-')
                    && !COMPRESSED.iter().any(|c| file.ends_with(c.as_bytes()))
            })
            .collect()
    }

    /// Whether a file met for the first time is a copy of a known one (copytruncate).
    /// The known file is one truncated in place lately, or one still followed, or (after
    /// a restart) one in the checkpoint; the copy must start with its first line and:
    /// - hold, before the position read so far, the same 64 bytes, that position being
    ///   past the first 1 KiB;
    /// - or, when less was read of a file truncated in place, have been last written at
    ///   most 2 s before the truncation was seen;
    /// - or, for a checkpoint entry only, hold the same 64 bytes before its saved offset,
    ///   which must lie past the first 1 KiB (so that files alike only in their first
    ///   lines never match).
    ///
    /// A copy continues the known file's stream from its acknowledged offset, so its
    /// backlog is read and what was already sent keeps its ids.
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
        let tail_at = |offset: u64| fingerprint::tail_hash(file, offset).ok().flatten();
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
        let modified = file.metadata().and_then(|m| m.modified()).ok();
        for (i, origin) in candidates {
            if origin.fingerprint != key.fingerprint {
                continue;
            }
            let matches = match origin.read_tail {
                Some(_) if origin.read_offset > len => {
                    longer_known = true;
                    false
                }
                // 64 bytes past the first 1 KiB: files alike only in their first lines
                // never match.
                Some(tail) if origin.read_offset >= EVIDENCE_OFFSET => {
                    tail_at(origin.read_offset) == Some(tail)
                }
                // Too little read to compare contents: a truncated file's copy is told
                // by its time, written just before the truncation (copytruncate).
                _ => match (origin.truncated_at, modified) {
                    (Some(at), Some(m)) => m + COPY_SLACK >= at,
                    _ => false,
                },
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
                || saved.offset < EVIDENCE_OFFSET
                || saved.tail.is_none()
                || self.files.iter().any(|t| t.key == *k)
            {
                continue;
            }
            if saved.offset > len {
                longer_known = true;
            } else if tail_at(saved.offset) == saved.tail
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

/// An offset from which the 64 bytes before it lie past the fingerprinted first bytes.
const EVIDENCE_OFFSET: u64 = FINGERPRINT_MAX_BYTES as u64 + fingerprint::TAIL_BYTES;
/// How long before a truncation its copy may have been last written.
const COPY_SLACK: Duration = Duration::from_secs(2);

/// A file a copy may have been made of: what it was read to, and what to continue from.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    fingerprint: u64,
    /// When it was found truncated (wall clock, to compare with file times).
    pub(super) truncated_at: Option<SystemTime>,
    read_offset: u64,
    read_tail: Option<u64>,
    /// Its stream, its acknowledged offset and the tail there: where a copy continues.
    saved: Saved,
}

impl Origin {
    pub(super) fn of(t: &Tracked, saved: Option<&Saved>) -> Origin {
        Origin {
            fingerprint: t.key.fingerprint,
            truncated_at: None,
            read_offset: t.read_offset,
            read_tail: t.read_tail.filter(|_| t.read_offset > 0),
            saved: Saved {
                offset: t.committed,
                path: t.path.clone(),
                stream: t.stream,
                tail: saved
                    .filter(|s| s.offset == t.committed)
                    .and_then(|s| s.tail),
            },
        }
    }
}
