//! Rotated files read to their end and closed, remembered so that a rotation sibling
//! met again is not opened again, and told apart *by content* from a new file that was
//! given the same inode number: a file system reuses a freed inode at once (ext4 does),
//! so the copy logrotate's copytruncate makes right after a rotated file was closed
//! often gets that file's inode, and often its first line too (a banner). Known by
//! device and inode alone, such a copy was taken for the closed file and never read:
//! the backlog it held was lost.

use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::fingerprint::{self, FileKey};

/// Closed rotated files remembered at most.
const FINISHED_FILES: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct Finished {
    closed: VecDeque<Closed>,
}

#[derive(Debug)]
struct Closed {
    key: FileKey,
    /// Where it was read to, and the evidence of its content there.
    end: u64,
    evidence: Option<u64>,
    /// Its size and change times when last checked: while they stay the same, it is
    /// known without opening it.
    stat: Stat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    len: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
}

impl Stat {
    fn of(meta: &Metadata) -> Stat {
        Stat {
            len: meta.len(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

impl Finished {
    /// A rotated file read to `end` is closed; `file` is its handle, still open.
    pub(super) fn remember(&mut self, key: FileKey, end: u64, file: &File) {
        let Ok(meta) = file.metadata() else {
            return;
        };
        if self.closed.len() >= FINISHED_FILES {
            self.closed.pop_front();
        }
        self.closed
            .retain(|c| (c.key.dev, c.key.ino) != (key.dev, key.ino));
        self.closed.push_back(Closed {
            key,
            end,
            evidence: fingerprint::evidence(file, end).ok().flatten(),
            stat: Stat::of(&meta),
        });
    }

    /// Whether the file at `path` (`meta` its metadata) is one closed before. A file
    /// with the inode of a closed one but other content is a new file: the closed one
    /// is forgotten.
    pub(super) fn holds(&mut self, path: &Path, meta: &Metadata) -> bool {
        let Some(i) = self
            .closed
            .iter()
            .position(|c| c.key.dev == meta.dev() && c.key.ino == meta.ino())
        else {
            return false;
        };
        let stat = Stat::of(meta);
        let c = &mut self.closed[i];
        if c.stat == stat {
            return true;
        }
        let Ok(file) = File::open(path) else {
            // Cannot be looked at now (gone, say): not opened either; looked at again.
            return true;
        };
        let same = fingerprint::of_file(&file).ok().flatten() == Some(c.key.fingerprint)
            && fingerprint::evidence(&file, c.end).ok().flatten() == c.evidence;
        if same {
            // The closed file, grown or touched since: still not read again.
            c.stat = stat;
        } else {
            self.closed.remove(i);
        }
        same
    }

    /// Tests: the closed file `from` (device, inode) now has the inode number `to`, as
    /// if the file system had given its freed inode to the file numbered `to`.
    #[cfg(test)]
    pub(super) fn renumber(&mut self, from: (u64, u64), to: (u64, u64)) -> bool {
        let mut found = false;
        for c in &mut self.closed {
            if (c.key.dev, c.key.ino) == from {
                (c.key.dev, c.key.ino) = to;
                found = true;
            }
        }
        found
    }
}
