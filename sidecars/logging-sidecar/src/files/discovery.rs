//! Discovery: what the path or glob names now, against the files followed (new files,
//! growth, rotation, truncation), and closing rotated files once done.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::time::{Instant, SystemTime};

use super::copies::{CopyCheck, Origin};
use super::reading::starts_as;
use super::recovery::still_the_same;
use super::{Event, FileSet, Seen, Tracked};
use crate::checkpoint::Saved;
use crate::fingerprint::{self, Birth, FileKey};

impl FileSet {
    /// Matches the path or glob against the disk; see the module comment.
    pub fn discover(&mut self, now: Instant) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.pending_events);
        // 1. Files already open: growth, truncation.
        let mut i = 0;
        while i < self.files.len() {
            let t = &mut self.files[i];
            let Some(file) = &t.file else {
                i += 1;
                continue;
            };
            let size = file.metadata().map(|m| m.len()).unwrap_or(t.size);
            let same_start = starts_as(file, &t.key);
            // Against the furthest read, a chunk still being handed over included: a file
            // truncated while one is on its way is as truncated as any other.
            if size < t.read_offset.max(t.seen.offset) || !same_start {
                self.drop_truncated(i, now, &mut events);
                continue;
            }
            if size != t.size {
                t.size = size;
                t.last_growth = now;
            }
            i += 1;
        }
        // 2. What the path or glob names now, then (single path) its rotation siblings.
        let mut present = HashSet::new();
        let named = self.paths().into_iter().map(|p| (p, false));
        let siblings = self.siblings().into_iter().map(|p| (p, true));
        for (path, sibling) in named.chain(siblings) {
            // A burst of new files never holds more than the limit open for long.
            if self.open_files() > self.settings.max_open_files {
                self.keep_within_limit(now, &mut events, false);
            }
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let (dev, ino) = (meta.dev(), meta.ino());
            if !sibling {
                present.insert((dev, ino));
            } else if present.contains(&(dev, ino)) || self.finished.holds(&path, &meta) {
                continue;
            }
            if let Some(t) = self
                .files
                .iter_mut()
                .find(|t| t.key.dev == dev && t.key.ino == ino && (t.file.is_some() || t.parked))
            {
                // Closed for the limit: its size, by its path, says whether it has
                // anything to read (a shrunk one is looked at too: truncated?).
                if t.parked && meta.len() != t.size {
                    t.size = meta.len();
                    t.last_growth = now;
                }
                if !sibling {
                    t.rotated_at = None;
                } else if t.rotated_at.is_none() {
                    events.push(Event::Rotated {
                        path: t.path.clone(),
                    });
                    t.rotated_at = Some(now);
                }
                t.path = path;
                continue;
            }
            let closed = self
                .files
                .iter()
                .position(|t| t.key.dev == dev && t.key.ino == ino);
            let Ok(file) = File::open(&path) else {
                continue;
            };
            // Still the same file as the path named a moment ago?
            match file.metadata() {
                Ok(m) if m.dev() == dev && m.ino() == ino => {}
                _ => continue,
            }
            let Ok(Some(fp)) = fingerprint::of_file(&file) else {
                continue;
            };
            let key = FileKey {
                dev,
                ino,
                fingerprint: fp,
            };
            if let Some(i) = closed {
                // A closed, not yet acknowledged file is named again: reopen it.
                let t = &mut self.files[i];
                if t.key == key {
                    t.file = Some(file);
                    t.path = path;
                    t.rotated_at = None;
                    continue;
                }
            }
            let (offset, stream, skipping, durable) = match self.checkpoints.get(&key) {
                Some(saved) if still_the_same(&file, saved) => {
                    (saved.offset, saved.stream, saved.skipping, true)
                }
                known => {
                    if known.is_some() {
                        // Same inode and first line, other content: rewritten while the
                        // sidecar was down. A new instance, with a stream of its own.
                        events.push(Event::Truncated { path: path.clone() });
                    }
                    let saved = match self.copy_source(&key, &file, meta.len(), now) {
                        CopyCheck::Copy(saved) => {
                            events.push(Event::Copy {
                                path: path.clone(),
                                offset: saved.offset,
                            });
                            Saved {
                                path: path.clone(),
                                birth: Birth::of(&file),
                                ..saved
                            }
                        }
                        CopyCheck::Wait => continue,
                        // A sibling nobody knows is history from before the sidecar.
                        CopyCheck::New if sibling => continue,
                        CopyCheck::New => Saved {
                            offset: 0,
                            path: path.clone(),
                            stream: fingerprint::new_stream(&key),
                            tail: None,
                            skipping: false,
                            birth: Birth::of(&file),
                        },
                    };
                    let at = (saved.offset, saved.stream, saved.skipping, false);
                    self.checkpoints.register(key, saved);
                    at
                }
            };
            events.push(Event::Opened {
                path: path.clone(),
                offset,
            });
            let seen = Seen::at(&file, offset);
            self.files.push(Tracked {
                key,
                stream,
                durable,
                seen,
                opened_at: SystemTime::now(),
                path,
                file: Some(file),
                read_offset: offset,
                committed: offset,
                skipping,
                skip_marks: Vec::new(),
                partial: None,
                size: meta.len(),
                last_growth: now,
                rotated_at: sibling.then_some(now),
                parked: false,
            });
        }
        // New streams reach the disk before any of their lines is sent.
        if self.files.iter().any(|t| !t.durable) && self.checkpoints.save().is_ok() {
            for t in &mut self.files {
                t.durable = true;
            }
        }
        // 3. Files no longer named: rotated; closed once drained and quiet.
        let settings = &self.settings;
        let mut released = Vec::new();
        for t in self
            .files
            .iter_mut()
            .filter(|t| t.file.is_some() || t.parked)
        {
            if present.contains(&(t.key.dev, t.key.ino)) {
                continue;
            }
            let since = *t.rotated_at.get_or_insert_with(|| {
                events.push(Event::Rotated {
                    path: t.path.clone(),
                });
                now
            });
            if t.parked {
                // Released once reopened and read; see `limit`.
                continue;
            }
            let drained = t.read_offset >= t.size && !t.skipping;
            let quiet = now.duration_since(t.last_growth) >= settings.rotate_wait;
            let acked = t.committed >= t.read_offset;
            let overdue = now.duration_since(since) >= settings.release_unacked_after;
            if drained && quiet && (acked || overdue) {
                if let Some(file) = t.file.take() {
                    self.finished.remember(t.key, t.read_offset, &file);
                }
                events.push(Event::Released {
                    path: t.path.clone(),
                    unacknowledged: t.read_offset.saturating_sub(t.committed),
                });
                if acked {
                    released.push(t.key);
                }
            }
        }
        for key in released {
            self.forget(&key);
        }
        // 4. Within MAX_OPEN_FILES: files closed, or reopened when there is room.
        self.keep_within_limit(now, &mut events, true);
        events
    }

    /// Drops the file at `i`, found truncated in place: a new instance is met at the next
    /// discovery. Kept a while as the origin of a copy (copytruncate), which continues it.
    pub(super) fn drop_truncated(&mut self, i: usize, now: Instant, events: &mut Vec<Event>) {
        let t = &self.files[i];
        events.push(Event::Truncated {
            path: t.path.clone(),
        });
        let key = t.key;
        let mut origin = Origin::of(t, self.checkpoints.get(&key));
        origin.truncated = true;
        self.truncated.push((origin, now));
        self.checkpoints.reset(&key);
        self.files.remove(i);
    }
}
