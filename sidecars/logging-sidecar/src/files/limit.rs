//! The open-file limit (`MAX_OPEN_FILES`): which files stay open when more are followed
//! than may be held open, and which are opened again when there is room.
//!
//! Files are ranked by what closing them would cost; the cheapest are closed first:
//! 1. a rotated file read to its end and acknowledged: closed for good, as after its
//!    rotate wait (nothing is lost but what a writer still adds to it later);
//! 2. a current file (named by the path or glob) read to its end: *parked*, its position
//!    kept; its path is looked at every discovery and it is opened again when it grows;
//! 3. a rotated file read to its end whose lines are not all acknowledged yet: parked;
//! 4. a current file with lines left to read, the one that grew least lately first;
//! 5. a rotated file with lines left to read, the newest first: the oldest stay open,
//!    so files are still read oldest first, and the files logrotate deletes first are
//!    the ones held open (an open handle keeps a deleted file's bytes).
//!
//! A parked file is opened again, best ranked first, as soon as fewer than the limit are
//! open, or in place of an open file that ranks below it: by its last path, else by
//! device, inode and fingerprint in the directory of that path, and only if it still
//! holds what was read of it. One that is no longer there (deleted, or moved to another
//! directory, while parked) is *lost*: the rest of it that was not read is never read.
//! One whose content changed is truncated, as an open file would be.

use std::cmp::Ordering;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::recovery::find_in_dir;
use super::{Event, FileSet, Tracked};
use crate::fingerprint::{self, FileKey};

/// How much keeping a file open is worth: compared class first, then order within the
/// class, then open before parked (so that equals are not swapped back and forth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    class: u8,
    order: i64,
    open: bool,
}

/// Rotated, read to its end and acknowledged: closed for good rather than parked.
const DONE: u8 = 0;

/// What became of a parked file looked for again.
enum Found {
    /// The very file, open again, at this path.
    Same(PathBuf, File),
    /// Its path or inode now holds other content: it was truncated or rewritten.
    Changed,
    /// Not there any more.
    Gone,
    /// Cannot be looked at now (out of file descriptors, say): tried again later.
    Later,
}

impl FileSet {
    /// Closes files beyond `max_open_files`, and (with `reopen`) opens parked files again
    /// when there is room or when they rank above an open one; see the module comment.
    pub(super) fn keep_within_limit(
        &mut self,
        now: Instant,
        events: &mut Vec<Event>,
        reopen: bool,
    ) {
        let max = self.settings.max_open_files.max(1);
        if reopen {
            // Parked rotated files with nothing left to read or acknowledge are done.
            let done: Vec<FileKey> = (0..self.files.len())
                .filter(|&i| self.files[i].parked && self.rank(i, now).class == DONE)
                .map(|i| self.files[i].key)
                .collect();
            for key in done {
                if let Some(t) = self.files.iter().find(|t| t.key == key) {
                    events.push(Event::Released {
                        path: t.path.clone(),
                        unacknowledged: 0,
                    });
                }
                self.forget(&key);
            }
        }
        // Parked files that could not be looked at in this round.
        let mut later: Vec<(FileKey, u64)> = Vec::new();
        // Every turn closes, opens or drops a file and ranks only improve, so this ends;
        // the bound is a guard all the same.
        for _ in 0..=4 * self.files.len() + 4 {
            let open = self.open_files();
            let worst_open = self.pick(now, Ordering::Less, |t| t.file.is_some());
            if open > max {
                match worst_open {
                    Some(i) => self.close(i, events),
                    None => break,
                }
                continue;
            }
            if !reopen {
                break;
            }
            let best_parked = self.pick(now, Ordering::Greater, |t| {
                t.parked && !later.contains(&(t.key, t.stream))
            });
            let Some(p) = best_parked else { break };
            if open < max {
                if !self.reopen(p, now, events) {
                    later.push((self.files[p].key, self.files[p].stream));
                }
                continue;
            }
            match worst_open {
                Some(w) if self.rank(p, now) > self.rank(w, now) => self.close(w, events),
                _ => break,
            }
        }
    }

    /// The open or parked file (as `which` says) that ranks lowest (`Less`) or highest.
    fn pick(
        &self,
        now: Instant,
        want: Ordering,
        which: impl Fn(&Tracked) -> bool,
    ) -> Option<usize> {
        let mut best: Option<(usize, Rank)> = None;
        for i in (0..self.files.len()).filter(|&i| which(&self.files[i])) {
            let rank = self.rank(i, now);
            if !matches!(best, Some((_, b)) if rank.cmp(&b) != want) {
                best = Some((i, rank));
            }
        }
        best.map(|(i, _)| i)
    }

    fn rank(&self, i: usize, now: Instant) -> Rank {
        let t = &self.files[i];
        let drained = t.size == t.read_offset && !t.skipping;
        let acked = t.committed >= t.read_offset;
        let rotated = t.rotated_at.is_some();
        let class = match (rotated, drained, acked) {
            (true, true, true) => DONE,
            (false, true, _) => 1,
            (true, true, false) => 2,
            (false, false, _) => 3,
            (true, false, _) => 4,
        };
        // Rotated: the older (earlier in the list) first. Current: the latest grown.
        let order = if rotated {
            -(i as i64)
        } else {
            -(now.saturating_duration_since(t.last_growth).as_millis() as i64)
        };
        Rank {
            class,
            order,
            open: t.file.is_some(),
        }
    }

    /// Closes the open file at `i`: for good when it is done, else parked.
    fn close(&mut self, i: usize, events: &mut Vec<Event>) {
        let done = self.rank(i, Instant::now()).class == DONE;
        let t = &mut self.files[i];
        let Some(file) = t.file.take() else { return };
        if done {
            self.finished.remember(t.key, t.read_offset, &file);
            events.push(Event::ClosedForLimit {
                path: t.path.clone(),
            });
            let key = t.key;
            self.forget(&key);
            return;
        }
        t.parked = true;
        t.partial = None;
        events.push(Event::Parked {
            path: t.path.clone(),
            rotated: t.rotated_at.is_some(),
            unread: t.size.saturating_sub(t.read_offset),
        });
    }

    /// Opens the parked file at `i` again; false when it cannot be looked at now.
    fn reopen(&mut self, i: usize, now: Instant, events: &mut Vec<Event>) -> bool {
        let t = &self.files[i];
        match look_for(&t.path, &t.key, t.seen.offset, t.seen.evidence) {
            Found::Same(path, file) => {
                let size = file.metadata().map(|m| m.len()).unwrap_or(t.size);
                let t = &mut self.files[i];
                if size != t.size {
                    t.size = size;
                    t.last_growth = now;
                }
                t.file = Some(file);
                t.parked = false;
                t.path = path;
                events.push(Event::Reopened {
                    path: t.path.clone(),
                });
                // Acknowledgements that came while it was closed reach the checkpoint.
                self.record_committed(i);
                true
            }
            Found::Changed => {
                self.drop_truncated(i, now, events);
                true
            }
            Found::Gone => {
                events.push(Event::Lost {
                    path: t.path.clone(),
                    unread: t.size.saturating_sub(t.read_offset),
                });
                let key = t.key;
                self.forget(&key);
                true
            }
            Found::Later => false,
        }
    }
}

/// The file `key` that was read to `seen` (with that evidence of its bytes), at `path`
/// or else in the directory of `path`.
fn look_for(path: &Path, key: &FileKey, seen: u64, evidence: Option<u64>) -> Found {
    let at_path = match File::open(path) {
        Ok(file) => match file.metadata() {
            Ok(m) if (m.dev(), m.ino()) == (key.dev, key.ino) => Some(file),
            Ok(_) => None,
            Err(_) => return Found::Later,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(_) => return Found::Later,
    };
    let (path, file) = match at_path {
        Some(file) => (path.to_owned(), file),
        None => match find_in_dir(path, key) {
            Some((path, file, _)) => (path, file),
            None => return Found::Gone,
        },
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let same = fingerprint::of_file(&file).ok().flatten() == Some(key.fingerprint)
        && len >= seen
        && (seen == 0 || fingerprint::evidence(&file, seen).ok().flatten() == evidence);
    if same {
        Found::Same(path, file)
    } else {
        Found::Changed
    }
}
