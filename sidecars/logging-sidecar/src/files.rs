//! The files the tailer follows: discovery, rotation, truncation and reading.
//!
//! Plain logic under the tailer actor. Each poll, [`FileSet::discover`] matches the path
//! or glob against what is on disk, by device, inode and fingerprint:
//! - a file never seen is read from its start, a known one from its checkpoint;
//! - a file whose path now names another file (renamed away, or deleted) is *rotated*:
//!   it is still read through its open handle to its end, before newer files, and is
//!   closed once it has been quiet for the rotate wait and its lines are acknowledged
//!   (or after `release_unacked_after` at the latest, so a deleted file is never held
//!   for ever);
//! - a file that shrank below the read position, or whose first bytes changed, was
//!   truncated in place (copytruncate): it is a new file and is read from offset 0.
//!
//! [`FileSet::read`] reads one large chunk and splits it; the read position only moves
//! when the tailer reports the chunk handed over ([`FileSet::handed_over`]), and the
//! checkpoint only when the aggregator acknowledged it ([`FileSet::acknowledge`]).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::batch::Ack;
use crate::checkpoint::{CheckpointError, Checkpoints, Saved};
use crate::fingerprint::{self, FileKey};
use crate::lines::{self, Line};

mod copies;
mod finished;
use copies::{CopyCheck, Origin};
use finished::Finished;

/// How files are read.
#[derive(Debug, Clone)]
pub struct ReadSettings {
    pub read_chunk_bytes: usize,
    pub max_line_bytes: usize,
    pub partial_line_timeout: Duration,
    pub rotate_wait: Duration,
    pub release_unacked_after: Duration,
}

/// What discovery found, for the tailer's log and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opened {
        path: PathBuf,
        offset: u64,
    },
    Rotated {
        path: PathBuf,
    },
    Truncated {
        path: PathBuf,
    },
    Released {
        path: PathBuf,
        unacknowledged: u64,
    },
    Recovered {
        path: PathBuf,
        offset: u64,
    },
    /// A new file is a copy of a known one (copytruncate): read on from `offset`.
    Copy {
        path: PathBuf,
        offset: u64,
    },
    Forgotten {
        path: PathBuf,
    },
}

/// A chunk of complete lines, ready for the enricher.
#[derive(Debug)]
pub struct Chunk {
    pub key: FileKey,
    /// The file instance's stream, for its lines' `event_id`s.
    pub stream: u64,
    /// The file's path when read.
    pub source: Arc<str>,
    pub data: Vec<u8>,
    pub lines: Vec<Line>,
    pub position: Position,
}

/// Where a file's reading stands once a chunk is handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub key: FileKey,
    /// The instance of the file (see [`crate::batch::Ack`]).
    pub stream: u64,
    pub end_offset: u64,
    pub skipping: bool,
}

/// The furthest a file was read (a chunk still being handed over included), and the
/// evidence of what it held before there ([`fingerprint::evidence`]): what a copy of it
/// must hold too. Lines up to there may be on their way under its stream, so only a
/// file holding the very same bytes may continue that stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    offset: u64,
    evidence: Option<u64>,
}

impl Seen {
    fn at(file: &File, offset: u64) -> Seen {
        Seen {
            offset,
            evidence: fingerprint::evidence(file, offset).ok().flatten(),
        }
    }
}

#[derive(Debug)]
struct Tracked {
    key: FileKey,
    stream: u64,
    /// Its stream is in the checkpoint file on disk: only then may its lines be sent.
    durable: bool,
    seen: Seen,
    /// When the sidecar opened it (wall clock): a copy of it is made after that.
    opened_at: SystemTime,
    path: PathBuf,
    file: Option<File>,
    read_offset: u64,
    committed: u64,
    skipping: bool,
    /// Chunk ends handed over inside an over-long line being skipped, not yet
    /// acknowledged: a checkpoint there says so, so that a restart skips on.
    skip_marks: Vec<u64>,
    /// Start offset and first sighting of an unterminated last line.
    partial: Option<(u64, Instant)>,
    size: u64,
    last_growth: Instant,
    rotated_at: Option<Instant>,
}

/// Every file being followed, with its checkpoints.
#[derive(Debug)]
pub struct FileSet {
    pattern: String,
    is_glob: bool,
    settings: ReadSettings,
    files: Vec<Tracked>,
    checkpoints: Checkpoints,
    /// Where the round-robin over current files starts next, so that with a glob one
    /// busy file cannot starve the others.
    turn: usize,
    /// Files truncated in place lately: a copy made of one before the truncation
    /// continues its stream ([`FileSet::copy_source`]).
    truncated: Vec<(Origin, Instant)>,
    /// New files that start like a known file but are shorter than its saved offset:
    /// perhaps a copy still being written. Held back until they are long enough or the
    /// rotate wait has passed.
    deferred: Vec<((u64, u64), Instant)>,
    /// Rotated files read to their end and closed: a sibling found again later is not
    /// opened again.
    finished: Finished,
}
/// Rotation siblings with these endings are compressed, and never read.
const COMPRESSED: [&str; 7] = [".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".Z"];

/// How long a truncated file's checkpoint is kept for a copy of it to be found.
const COPY_MEMORY: Duration = Duration::from_secs(60);
/// Truncated files remembered at most.
const COPY_MEMORY_FILES: usize = 64;

impl FileSet {
    pub fn new(pattern: &str, settings: ReadSettings, checkpoints: Checkpoints) -> FileSet {
        FileSet {
            pattern: pattern.to_owned(),
            is_glob: pattern.contains(['*', '?', '[']),
            settings,
            files: Vec::new(),
            checkpoints,
            turn: 0,
            truncated: Vec::new(),
            deferred: Vec::new(),
            finished: Finished::default(),
        }
    }

    /// The path or glob followed.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    fn paths(&self) -> Vec<PathBuf> {
        if !self.is_glob {
            return vec![PathBuf::from(&self.pattern)];
        }
        match glob::glob(&self.pattern) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Matches the path or glob against the disk; see the module comment.
    pub fn discover(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        // 1. Files already open: growth, truncation.
        let mut i = 0;
        while i < self.files.len() {
            let t = &mut self.files[i];
            let Some(file) = &t.file else {
                i += 1;
                continue;
            };
            let size = file.metadata().map(|m| m.len()).unwrap_or(t.size);
            let same_start = match fingerprint::of_file(file) {
                Ok(fp) => fp == Some(t.key.fingerprint),
                Err(_) => true,
            };
            // Against the furthest read, a chunk still being handed over included: a file
            // truncated while one is on its way is as truncated as any other.
            if size < t.read_offset.max(t.seen.offset) || !same_start {
                events.push(Event::Truncated {
                    path: t.path.clone(),
                });
                let key = t.key;
                // Kept a while: a copy of what it held (copytruncate) continues it.
                let mut origin = Origin::of(t, self.checkpoints.get(&key));
                origin.truncated = true;
                self.truncated.push((origin, now));
                self.checkpoints.reset(&key);
                self.files.remove(i);
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
                .find(|t| t.key.dev == dev && t.key.ino == ino && t.file.is_some())
            {
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
        for t in self.files.iter_mut().filter(|t| t.file.is_some()) {
            if present.contains(&(t.key.dev, t.key.ino)) {
                continue;
            }
            let since = *t.rotated_at.get_or_insert_with(|| {
                events.push(Event::Rotated {
                    path: t.path.clone(),
                });
                now
            });
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
        events
    }

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
                        },
                    );
                }
                _ => {
                    events.push(Event::Forgotten { path: last_path });
                    self.checkpoints.remove(&key);
                }
            }
        }
        events
    }

    fn forget(&mut self, key: &FileKey) {
        self.files.retain(|t| t.key != *key);
        self.checkpoints.remove(key);
    }

    /// Reads the next chunk of complete lines, older (rotated) files first.
    pub fn read(&mut self, now: Instant) -> Option<Chunk> {
        let cap = self
            .settings
            .read_chunk_bytes
            .max(self.settings.max_line_bytes + 1);
        // Rotated files first (finish the old before the new), then the current ones in
        // turn.
        let n = self.files.len();
        let rotated = (0..n).filter(|&i| self.files[i].rotated_at.is_some());
        let current = (0..n)
            .map(|k| (self.turn + k) % n.max(1))
            .filter(|&i| self.files[i].rotated_at.is_none());
        let order: Vec<usize> = rotated.chain(current).collect();
        self.turn = self.turn.wrapping_add(1);
        for i in order {
            let t = &mut self.files[i];
            let Some(file) = &t.file else { continue };
            if !t.durable {
                continue;
            }
            // A stat is cheaper than allocating a buffer to learn that nothing is new.
            if file.metadata().is_ok_and(|m| m.len() <= t.read_offset) {
                t.partial = None;
                continue;
            }
            let mut buf = vec![0u8; cap];
            let n = match read_full_at(file, &mut buf, t.read_offset) {
                Ok(n) => n,
                Err(e) => {
                    log::warn!(path = t.path.display().to_string().as_str(), error = e.to_string().as_str(); "Cannot read a log file; it is tried again at the next poll.");
                    continue;
                }
            };
            if n == 0 {
                t.partial = None;
                continue;
            }
            buf.truncate(n);
            let end = t.read_offset + n as u64;
            if end > t.size {
                t.size = end;
                t.last_growth = now;
            }
            let tail_start =
                t.read_offset + memchr::memrchr(b'\n', &buf).map_or(0, |nl| nl as u64 + 1);
            let at_eof = n < cap;
            let mut flush = false;
            if at_eof && tail_start < end && !t.skipping {
                match t.partial {
                    Some((start, since)) if start == tail_start => {
                        flush = now.duration_since(since) >= self.settings.partial_line_timeout;
                    }
                    _ => {
                        t.partial = Some((tail_start, now));
                        flush = self.settings.partial_line_timeout.is_zero();
                    }
                }
            }
            let split = lines::split(
                &buf,
                t.read_offset,
                self.settings.max_line_bytes,
                t.skipping,
                flush,
            );
            if split.consumed == 0 {
                continue;
            }
            buf.truncate(split.consumed);
            let end_offset = t.read_offset + split.consumed as u64;
            if end_offset > t.seen.offset {
                t.seen = Seen {
                    offset: end_offset,
                    evidence: fingerprint::evidence_after(file, t.read_offset, &buf),
                };
            }
            return Some(Chunk {
                key: t.key,
                stream: t.stream,
                source: t.path.display().to_string().into(),
                data: buf,
                lines: split.lines,
                position: Position {
                    key: t.key,
                    stream: t.stream,
                    end_offset,
                    skipping: split.skipping,
                },
            });
        }
        None
    }

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
            let tail = t
                .file
                .as_ref()
                .and_then(|f| fingerprint::tail_hash(f, t.committed).ok().flatten());
            let skipping = t.skip_marks.contains(&t.committed);
            let committed = t.committed;
            t.skip_marks.retain(|&m| m > committed);
            self.checkpoints
                .advance(t.key, t.committed, tail, skipping, &t.path);
            if t.file.is_none() && t.committed >= t.read_offset {
                done.push(t.key);
            }
        }
        for key in done {
            self.forget(&key);
        }
    }

    /// Writes the checkpoint file if anything changed.
    pub fn save_checkpoints(&mut self) -> Result<bool, CheckpointError> {
        self.checkpoints.save()
    }

    /// Unacknowledged bytes of each file, by path.
    pub fn lag(&self) -> Vec<(String, u64)> {
        self.files
            .iter()
            .map(|t| {
                (
                    t.path.display().to_string(),
                    t.size.max(t.read_offset).saturating_sub(t.committed),
                )
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Whether `file` still holds, before the saved offset, the bytes it held when
/// checkpointed (a checkpoint without a tail hash is taken on trust).
fn still_the_same(file: &File, saved: &Saved) -> bool {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if saved.offset > len {
        return false;
    }
    match saved.tail {
        None => true,
        Some(tail) => fingerprint::tail_hash(file, saved.offset).ok().flatten() == Some(tail),
    }
}

/// Fills `buf` from `offset` as far as the file goes.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A file with `key`'s device, inode and fingerprint in the directory of `last_path`.
fn find_in_dir(last_path: &Path, key: &FileKey) -> Option<(PathBuf, File, u64)> {
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

#[cfg(test)]
mod tests;
