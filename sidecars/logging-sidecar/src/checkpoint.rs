//! Checkpoints: how far into each file the aggregator has acknowledged everything.
//!
//! One versioned JSON file in the state directory, written only when something changed,
//! to a temporary name, synced, then renamed over the old one (and the directory synced),
//! so a crash leaves either the old or the new checkpoint, never half of one. An offset
//! here is only ever one the aggregator acknowledged, everything before it included: on
//! a restart the tailer resumes there, and lines read again after a crash carry the same
//! `event_id`s, which the aggregator stores once.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::{Birth, FileKey};

/// The checkpoint file's name inside the state directory.
pub const CHECKPOINT_FILE: &str = "logging-sidecar-checkpoints.json";
/// The format version written. Version 1 (no streams) is still read: its files get a
/// fresh stream each, so lines re-sent after the upgrade may be stored twice once.
pub const CHECKPOINT_VERSION: u32 = 2;

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
    /// Where the file was last seen, to find it again after a rename; a name that is
    /// not valid UTF-8 is written here with its bad bytes replaced, and exactly in
    /// `path_bytes`.
    pub path: String,
    /// The path's bytes in hex, only when they are not valid UTF-8 (JSON strings must
    /// be); older sidecars ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<String>,
    /// The file's stream (16 hex digits): the middle part of its lines' `event_id`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// A hash of the bytes just before `offset` (hex), to tell a file rewritten while
    /// the sidecar was down from the one that was checkpointed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
    /// `offset` lies inside an over-long line already cut and forwarded: the rest of
    /// that line, up to its newline, is skipped on a restart too (else it became a
    /// record of its own). Absent in files written before it existed: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipping: bool,
    /// The file's birth time (nanoseconds since the epoch), where the file system keeps
    /// one: a new file given a reused inode has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub born: Option<u64>,
    /// How many of its first bytes the file held when first met, and their hash (hex):
    /// at offset 0, where there is no `tail`, a file rewritten alike is told apart by them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

/// What is saved of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub offset: u64,
    pub path: PathBuf,
    pub stream: u64,
    pub tail: Option<u64>,
    /// Inside an over-long line whose rest is skipped.
    pub skipping: bool,
    /// What tells this instance from a new file with its inode and first line, even at
    /// offset 0 (see [`crate::fingerprint::Birth`]).
    pub birth: Birth,
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
    entries: BTreeMap<FileKey, Saved>,
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
        if disk.version != CHECKPOINT_VERSION && disk.version != 1 {
            return Err(corrupt(format!("unknown version {}", disk.version)));
        }
        let hex = |what: &str, text: &str| {
            u64::from_str_radix(text, 16).map_err(|_| corrupt(format!("bad {what} {text:?}")))
        };
        for e in disk.files {
            let key = FileKey {
                dev: e.dev,
                ino: e.ino,
                fingerprint: hex("fingerprint", &e.fingerprint)?,
            };
            let stream = match &e.stream {
                Some(s) => hex("stream", s)?,
                None => {
                    cp.dirty = true;
                    crate::fingerprint::new_stream(&key)
                }
            };
            let tail = e.tail.as_deref().map(|t| hex("tail", t)).transpose()?;
            let head = match (e.head_len, &e.head) {
                (Some(len), Some(h)) => Some((len, hex("head", h)?)),
                (None, None) => None,
                _ => return Err(corrupt("head_len and head go together".into())),
            };
            let path = match &e.path_bytes {
                None => PathBuf::from(&e.path),
                Some(h) => {
                    path_from_hex(h).ok_or_else(|| corrupt(format!("bad path_bytes {h:?}")))?
                }
            };
            cp.entries.insert(
                key,
                Saved {
                    offset: e.offset,
                    path,
                    stream,
                    tail,
                    skipping: e.skipping,
                    birth: Birth { born: e.born, head },
                },
            );
        }
        Ok(cp)
    }

    pub fn get(&self, key: &FileKey) -> Option<&Saved> {
        self.entries.get(key)
    }

    /// Every saved file, for finding rotated files again at start.
    pub fn iter(&self) -> impl Iterator<Item = (&FileKey, &Saved)> {
        self.entries.iter()
    }

    /// Records a file met for the first time (or met again as a new instance), with
    /// its stream: saved before any of its lines is sent, so that a re-send after a
    /// crash uses the same stream.
    pub fn register(&mut self, key: FileKey, saved: Saved) {
        self.entries.insert(key, saved);
        self.dirty = true;
    }

    /// Records an acknowledged position (`skipping`: inside an over-long line whose rest
    /// is skipped); positions never move back.
    pub fn advance(
        &mut self,
        key: FileKey,
        offset: u64,
        tail: Option<u64>,
        skipping: bool,
        path: &Path,
    ) {
        let Some(e) = self.entries.get_mut(&key) else {
            // Registered when opened; forgotten meanwhile (truncated): nothing to record.
            return;
        };
        if offset > e.offset {
            e.offset = offset;
            e.tail = tail;
            e.skipping = skipping;
            self.dirty = true;
        }
        if e.path != path {
            e.path = path.to_owned();
            self.dirty = true;
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
                .map(|(k, e)| Entry {
                    dev: k.dev,
                    ino: k.ino,
                    fingerprint: format!("{:x}", k.fingerprint),
                    offset: e.offset,
                    path: e.path.to_string_lossy().into_owned(),
                    path_bytes: e.path.to_str().is_none().then(|| {
                        e.path
                            .as_os_str()
                            .as_bytes()
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect()
                    }),
                    stream: Some(format!("{:016x}", e.stream)),
                    tail: e.tail.map(|t| format!("{t:x}")),
                    skipping: e.skipping,
                    born: e.birth.born,
                    head_len: e.birth.head.map(|(len, _)| len),
                    head: e.birth.head.map(|(_, h)| format!("{h:x}")),
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

/// The path whose bytes `hex` spells (two hex digits a byte); `None` if it spells none.
fn path_from_hex(hex: &str) -> Option<PathBuf> {
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(PathBuf::from(OsString::from_vec(bytes)))
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

    fn saved(stream: u64, path: &str) -> Saved {
        Saved {
            offset: 0,
            path: PathBuf::from(path),
            stream,
            tail: None,
            skipping: false,
            birth: Birth::default(),
        }
    }

    #[test]
    fn saved_positions_load_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = Checkpoints::load(dir.path()).unwrap();
        assert!(!cp.save().unwrap(), "nothing changed, nothing written");
        cp.register(key(0xabc), saved(11, "/logs/app.log"));
        cp.register(key(7), saved(12, "/logs/b.log"));
        cp.advance(
            key(0xabc),
            100,
            Some(0xfeed),
            false,
            Path::new("/logs/app.log"),
        );
        cp.advance(key(0xabc), 50, Some(1), false, Path::new("/logs/app.log"));
        cp.advance(key(7), 9, None, false, Path::new("/logs/b.log"));
        cp.advance(key(9), 9, None, false, Path::new("/logs/c.log"));
        assert!(cp.save().unwrap());
        assert!(!cp.save().unwrap());
        let again = Checkpoints::load(dir.path()).unwrap();
        let a = again.get(&key(0xabc)).unwrap();
        assert_eq!((a.offset, a.stream, a.tail), (100, 11, Some(0xfeed)));
        assert_eq!(again.get(&key(7)).unwrap().offset, 9);
        assert_eq!(again.get(&key(7)).unwrap().stream, 12);
        assert_eq!(again.get(&key(8)), None);
        assert_eq!(
            again.get(&key(9)),
            None,
            "only registered files are recorded"
        );
    }

    #[test]
    fn version_1_files_get_a_stream_each() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(CHECKPOINT_FILE),
            br#"{"version":1,"files":[{"dev":1,"ino":2,"fingerprint":"abc","offset":5,"path":"/a"},
                {"dev":1,"ino":3,"fingerprint":"abc","offset":6,"path":"/b"}]}"#,
        )
        .unwrap();
        let cp = Checkpoints::load(dir.path()).unwrap();
        let streams: Vec<u64> = cp.iter().map(|(_, e)| e.stream).collect();
        assert_eq!(streams.len(), 2);
        assert_ne!(streams[0], streams[1]);
        assert!(cp.is_dirty());
    }

    #[test]
    fn a_path_that_is_not_utf8_is_saved_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let odd = PathBuf::from(OsString::from_vec(b"/logs/app-\xff.log".to_vec()));
        let mut cp = Checkpoints::empty(dir.path());
        cp.register(key(5), saved(3, "/logs/plain.log"));
        cp.advance(key(5), 7, None, false, &odd);
        cp.save().unwrap();
        let text = fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).unwrap();
        assert!(text.contains("2f6c6f67732f6170702dff2e6c6f67"), "{text}");
        let again = Checkpoints::load(dir.path()).unwrap();
        assert_eq!(again.get(&key(5)).unwrap().path, odd);
        fs::write(
            dir.path().join(CHECKPOINT_FILE),
            br#"{"version":2,"files":[{"dev":1,"ino":2,"fingerprint":"abc","offset":5,"path":"/a","path_bytes":"2fz"}]}"#,
        )
        .unwrap();
        assert!(Checkpoints::load(dir.path()).is_err());
    }

    #[test]
    fn a_birth_is_saved_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = Checkpoints::empty(dir.path());
        let birth = Birth {
            born: Some(1_796_671_822_557_841_863),
            head: Some((12, 0xfeed)),
        };
        cp.register(
            key(5),
            Saved {
                birth,
                ..saved(3, "/a")
            },
        );
        cp.save().unwrap();
        assert_eq!(
            Checkpoints::load(dir.path())
                .unwrap()
                .get(&key(5))
                .unwrap()
                .birth,
            birth
        );
        fs::write(
            dir.path().join(CHECKPOINT_FILE),
            br#"{"version":2,"files":[{"dev":1,"ino":2,"fingerprint":"abc","offset":0,"path":"/a","head_len":3}]}"#,
        )
        .unwrap();
        assert!(Checkpoints::load(dir.path()).is_err());
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
