//! Rotation siblings and copies: finding, in single-path mode, the files the path was
//! rotated to, and recognising a copy made by copytruncate as the continuation of the
//! file it was copied from.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{FileSet, COMPRESSED, COPY_MEMORY, COPY_MEMORY_FILES};
use crate::checkpoint::Saved;
use crate::fingerprint::{self, FileKey};

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

    /// Whether a file met for the first time is a copy of a known one (copytruncate):
    /// it starts with the same line and holds, before the known file's acknowledged
    /// offset, the same 64 bytes. A copy continues the known file's stream from that
    /// offset, so its backlog is read and what was already stored keeps its ids.
    pub(super) fn copy_source(
        &mut self,
        key: &FileKey,
        file: &File,
        len: u64,
        now: Instant,
    ) -> CopyCheck {
        self.truncated
            .retain(|(_, _, at)| now.duration_since(*at) < COPY_MEMORY);
        let excess = self.truncated.len().saturating_sub(COPY_MEMORY_FILES);
        self.truncated.drain(..excess);
        let candidates: Vec<Saved> = self
            .checkpoints
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(k, s)| (*k, s.clone()))
            .chain(self.truncated.iter().map(|(k, s, _)| (*k, s.clone())))
            .filter(|(k, s)| k.fingerprint == key.fingerprint && s.offset > 0 && s.tail.is_some())
            .map(|(_, s)| s)
            .collect();
        let mut best: Option<Saved> = None;
        let mut longer_known = false;
        for saved in candidates {
            if saved.offset > len {
                longer_known = true;
                continue;
            }
            if fingerprint::tail_hash(file, saved.offset).ok().flatten() == saved.tail
                && !matches!(&best, Some(b) if b.offset >= saved.offset)
            {
                best = Some(saved);
            }
        }
        let id = (key.dev, key.ino);
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
