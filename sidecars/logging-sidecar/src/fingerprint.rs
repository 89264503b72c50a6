//! A file's identity: device and inode, plus a fingerprint of its first bytes.
//!
//! The inode alone is not enough (a deleted file's inode is soon reused by a new file)
//! and the first bytes alone are not either (two files may start alike), so a file is
//! known by both. The fingerprint is a hash of the first line, newline included, or of the
//! first [`FINGERPRINT_MAX_BYTES`] when the first line is longer. A file whose first line
//! is not complete yet has no fingerprint and is not read until it has one: otherwise
//! its identity, and every `event_id` derived from it, would change as the line grew.

use std::fs::File;
use std::hash::Hasher;
use std::io;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

/// Bytes hashed at most.
pub const FINGERPRINT_MAX_BYTES: usize = 1024;

/// Who a file is, across renames and restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: u64,
}

/// The fingerprint of a file's first bytes, `None` while the first line is incomplete.
pub fn of_prefix(prefix: &[u8]) -> Option<u64> {
    let end = match memchr::memchr(b'\n', prefix) {
        Some(nl) if nl < FINGERPRINT_MAX_BYTES => nl + 1,
        _ if prefix.len() >= FINGERPRINT_MAX_BYTES => FINGERPRINT_MAX_BYTES,
        _ => return None,
    };
    Some(fnv1a(&prefix[..end]))
}

/// Reads the first bytes of `file` and fingerprints them.
pub fn of_file(file: &File) -> io::Result<Option<u64>> {
    let mut buf = [0u8; FINGERPRINT_MAX_BYTES];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(of_prefix(&buf[..filled]))
}

/// 64-bit FNV-1a: stable across builds and platforms, which `DefaultHasher` is not.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(bytes);
    h.finish()
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_decides() {
        assert_eq!(of_prefix(b"abc"), None);
        let a = of_prefix(b"abc\nmore").unwrap();
        assert_eq!(of_prefix(b"abc\nother"), Some(a));
        assert_ne!(of_prefix(b"abd\nmore"), Some(a));
        let long = vec![b'x'; FINGERPRINT_MAX_BYTES + 10];
        assert!(of_prefix(&long).is_some());
        assert_eq!(of_prefix(&long), of_prefix(&long[..FINGERPRINT_MAX_BYTES]));
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
