//! Checkpoints: how far into each file the aggregator has acknowledged everything.
//!
//! One versioned JSON file in the state directory, written only when something changed,
//! to a temporary name, synced, then renamed over the old one (and the directory synced),
//! so a crash leaves either the old or the new checkpoint, never half of one. An offset
//! here is only ever one the aggregator acknowledged, everything before it included: on
//! a restart the tailer resumes there, and lines read again after a crash carry the same
//! `event_id`s, which the aggregator stores once.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::FileKey;

/// The checkpoint file's name inside the state directory.
pub const CHECKPOINT_FILE: &str = "logging-sidecar-checkpoints.json";
/// The format version written; other versions are refused (and the files re-read).
pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// One file's acknowledged position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub dev: u64,
    pub ino: u64,
    /// The fingerprint in hex, as in `event_id`.
    pub fingerprint: String,
    pub offset: u64,
    /// Where the file was last seen, to find it again after a rename.
    pub path: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: Vec<Entry>,
}

/// Acknowledged positions by file, and the file they live in.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    entries: BTreeMap<FileKey, (u64, PathBuf)>,
    dirty: bool,
}

impl Checkpoints {
    /// An empty set that will be saved in `state_dir`.
    pub fn empty(state_dir: &Path) -> Checkpoints {
        Checkpoints {
            path: state_dir.join(CHECKPOINT_FILE),
            entries: BTreeMap::new(),
            dirty: false,
        }
    }

    /// Loads the saved set; a missing file is an empty set, a corrupt one an error (the
    /// caller reports it and starts from empty, which re-reads and is safe).
    pub fn load(state_dir: &Path) -> Result<Checkpoints, CheckpointError> {
        let mut cp = Checkpoints::empty(state_dir);
        let text = match fs::read(&cp.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(cp),
            Err(source) => {
                return Err(CheckpointError::Read {
                    path: cp.path,
                    source,
                })
            }
        };
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: state_dir.join(CHECKPOINT_FILE),
            reason,
        };
        let disk: OnDisk = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        if disk.version != CHECKPOINT_VERSION {
            return Err(corrupt(format!("unknown version {}", disk.version)));
        }
        for e in disk.files {
            let fingerprint = u64::from_str_radix(&e.fingerprint, 16)
                .map_err(|_| corrupt(format!("bad fingerprint {:?}", e.fingerprint)))?;
            let key = FileKey {
                dev: e.dev,
                ino: e.ino,
                fingerprint,
            };
            cp.entries.insert(key, (e.offset, e.path));
        }
        Ok(cp)
    }

    pub fn get(&self, key: &FileKey) -> Option<u64> {
        self.entries.get(key).map(|(o, _)| *o)
    }

    /// Every saved file, for finding rotated files again at start.
    pub fn iter(&self) -> impl Iterator<Item = (&FileKey, u64, &Path)> {
        self.entries.iter().map(|(k, (o, p))| (k, *o, p.as_path()))
    }

    /// Records an acknowledged position; positions never move back.
    pub fn advance(&mut self, key: FileKey, offset: u64, path: &Path) {
        match self.entries.get_mut(&key) {
            Some((o, p)) => {
                if offset > *o {
                    *o = offset;
                    self.dirty = true;
                }
                if p != path {
                    *p = path.to_owned();
                    self.dirty = true;
                }
            }
            None => {
                self.entries.insert(key, (offset, path.to_owned()));
                self.dirty = true;
            }
        }
    }

    /// Forgets a file that is gone and fully delivered.
    pub fn remove(&mut self, key: &FileKey) {
        if self.entries.remove(key).is_some() {
            self.dirty = true;
        }
    }

    /// Resets a file's position (it was truncated in place).
    pub fn reset(&mut self, key: &FileKey) {
        self.remove(key);
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Writes the set if it changed: temp file, fsync, rename, fsync of the directory.
    pub fn save(&mut self) -> Result<bool, CheckpointError> {
        if !self.dirty {
            return Ok(false);
        }
        let disk = OnDisk {
            version: CHECKPOINT_VERSION,
            files: self
                .entries
                .iter()
                .map(|(k, (offset, path))| Entry {
                    dev: k.dev,
                    ino: k.ino,
                    fingerprint: format!("{:x}", k.fingerprint),
                    offset: *offset,
                    path: path.clone(),
                })
                .collect(),
        };
        let write_err = |source| CheckpointError::Write {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&disk).map_err(|e| write_err(io::Error::other(e)))?;
        let mut f = File::create(&tmp).map_err(write_err)?;
        f.write_all(&text).map_err(write_err)?;
        f.sync_all().map_err(write_err)?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(write_err)?;
        if let Some(dir) = self.path.parent() {
            // Makes the rename itself durable; not every filesystem allows it.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.dirty = false;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fp: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino: 2,
            fingerprint: fp,
        }
    }

    #[test]
    fn saved_positions_load_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = Checkpoints::load(dir.path()).unwrap();
        assert!(!cp.save().unwrap(), "nothing changed, nothing written");
        cp.advance(key(0xabc), 100, Path::new("/logs/app.log"));
        cp.advance(key(0xabc), 50, Path::new("/logs/app.log"));
        cp.advance(key(7), 9, Path::new("/logs/b.log"));
        assert!(cp.save().unwrap());
        assert!(!cp.save().unwrap());
        let again = Checkpoints::load(dir.path()).unwrap();
        assert_eq!(again.get(&key(0xabc)), Some(100));
        assert_eq!(again.get(&key(7)), Some(9));
        assert_eq!(again.get(&key(8)), None);
    }

    #[test]
    fn a_corrupt_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CHECKPOINT_FILE), b"{\"version\":1,\"fi").unwrap();
        let err = Checkpoints::load(dir.path()).unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
        fs::write(
            dir.path().join(CHECKPOINT_FILE),
            b"{\"version\":9,\"files\":[]}",
        )
        .unwrap();
        assert!(Checkpoints::load(dir.path()).is_err());
    }
}
