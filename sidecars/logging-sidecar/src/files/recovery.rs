//! Recovery after a restart: checkpointed files renamed while the sidecar was down are
//! found again by identity, and a checkpoint is only trusted for a file that still
//! holds what was checkpointed.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::{Event, FileSet, Seen, Tracked};
use crate::checkpoint::Saved;
use crate::fingerprint::{self, FileKey};

impl FileSet {
    /// After a restart from checkpoints: finds files renamed while the sidecar was down
    /// (same device, inode and fingerprint, in the directory they were last seen in) and
    /// reads their rest before anything newer. Entries whose file is gone are dropped.
    pub fn recover(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let missing: Vec<(FileKey, Saved)> = self
            .checkpoints
            .iter()
            .filter(|(k, _)| !self.files.iter().any(|t| t.key == **k))
            .map(|(k, saved)| (*k, saved.clone()))
            .collect();
        for (key, saved) in missing {
            if self.open_files() > self.settings.max_open_files {
                self.keep_within_limit(now, &mut events, false);
            }
            let (offset, last_path) = (saved.offset, saved.path.clone());
            match find_in_dir(&last_path, &key) {
                Some((path, file, size)) if size > offset && still_the_same(&file, &saved) => {
                    events.push(Event::Recovered {
                        path: path.clone(),
                        offset,
                    });
                    self.files.insert(
                        0,
                        Tracked {
                            key,
                            stream: saved.stream,
                            durable: true,
                            seen: Seen::at(&file, offset),
                            opened_at: SystemTime::now(),
                            path,
                            file: Some(file),
                            read_offset: offset,
                            committed: offset,
                            skipping: saved.skipping,
                            skip_marks: Vec::new(),
                            partial: None,
                            size,
                            last_growth: now,
                            rotated_at: Some(now),
                            parked: false,
                        },
                    );
                }
                _ => {
                    events.push(Event::Forgotten { path: last_path });
                    self.checkpoints.remove(&key);
                }
            }
        }
        self.keep_within_limit(now, &mut events, true);
        events
    }
}

/// Whether `file` is still the file checkpointed as `saved`: born when it was, with the
/// first bytes it had when first met, and holding, before the saved offset, the bytes it
/// held then (at offset 0 there is no tail hash: birth and first bytes decide).
pub(super) fn still_the_same(file: &File, saved: &Saved) -> bool {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if saved.offset > len || !saved.birth.matches(file) {
        return false;
    }
    match saved.tail {
        None => true,
        Some(tail) => fingerprint::tail_hash(file, saved.offset).ok().flatten() == Some(tail),
    }
}

/// A file with `key`'s device, inode and fingerprint in the directory of `last_path`.
pub(super) fn find_in_dir(last_path: &Path, key: &FileKey) -> Option<(PathBuf, File, u64)> {
    let dir = last_path.parent()?;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.dev() != key.dev || meta.ino() != key.ino {
            continue;
        }
        let file = File::open(&path).ok()?;
        if fingerprint::of_file(&file).ok()?? == key.fingerprint {
            return Some((path, file, meta.len()));
        }
    }
    None
}
