//! Reading: the next chunk of complete lines, rotated files before current ones and the
//! current ones in turn.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::{Chunk, FileSet, Position, Seen, Tracked};
use crate::fingerprint::{self, FileKey};
use crate::lines;

/// What one pass over the files found.
enum Step {
    Chunk(Chunk),
    Nothing,
    /// The file at this index no longer holds what was read of it.
    Truncated(usize),
}

impl FileSet {
    /// Reads the next chunk of complete lines, older (rotated) files first.
    ///
    /// A file found truncated in place on the way (it grew past the offset read, but
    /// what lies before that offset changed) is dropped here as discovery drops one, and
    /// its event waits for the next discovery ([`FileSet::wants_discovery`]).
    pub fn read(&mut self, now: Instant) -> Option<Chunk> {
        loop {
            match self.read_step(now) {
                Step::Chunk(chunk) => return Some(chunk),
                Step::Nothing => return None,
                Step::Truncated(i) => {
                    let mut events = std::mem::take(&mut self.pending_events);
                    self.drop_truncated(i, now, &mut events);
                    self.pending_events = events;
                }
            }
        }
    }

    /// Whether a read found something only a discovery completes (a truncated file's
    /// new instance is met by discovery).
    pub fn wants_discovery(&self) -> bool {
        !self.pending_events.is_empty()
    }

    fn read_step(&mut self, now: Instant) -> Step {
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
            // Discoveries are a poll interval apart; a file truncated and written past
            // its old offset since the last one must not be read on from that offset.
            if !still_this_instance(file, t) {
                return Step::Truncated(i);
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
            return Step::Chunk(Chunk {
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
        Step::Nothing
    }
}

/// Whether `file` still holds what was read of `t` below its read offset: the same first
/// line, and (when the last read ended there) the same bytes just before the offset, as
/// [`fingerprint::evidence`] sums them. Two small reads per chunk; an error reading
/// them is no evidence of a truncation.
fn still_this_instance(file: &File, t: &Tracked) -> bool {
    if t.read_offset == 0 {
        return true;
    }
    if !starts_as(file, &t.key) {
        return false;
    }
    match t.seen.evidence {
        Some(seen) if t.seen.offset == t.read_offset => {
            fingerprint::evidence(file, t.read_offset).map_or(true, |now| now == Some(seen))
        }
        _ => true,
    }
}

/// Whether `file` still starts with the first line `key` was met with (an error reading
/// it is no evidence of a truncation).
pub(super) fn starts_as(file: &File, key: &FileKey) -> bool {
    match fingerprint::of_file(file) {
        Ok(fp) => fp == Some(key.fingerprint),
        Err(_) => true,
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
