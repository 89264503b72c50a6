//! Matching: the files the path or glob names, and in single-path mode the rotation
//! siblings of the path.

use std::fs;
use std::path::{Path, PathBuf};

use super::FileSet;

impl FileSet {
    /// The path, or what the glob names now (file names that are not UTF-8 included).
    pub(super) fn paths(&self) -> Vec<PathBuf> {
        if !self.is_glob {
            return vec![PathBuf::from(&self.pattern)];
        }
        super::expand::expand(&self.pattern)
    }

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
}

/// Rotation siblings with these endings are compressed, and never read.
const COMPRESSED: [&str; 7] = [".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".Z"];
