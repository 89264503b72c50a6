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

/// Bytes before a checkpointed offset that are hashed to recognise the file again.
pub const TAIL_BYTES: u64 = 64;

/// A hash of the up to [`TAIL_BYTES`] bytes before `offset`; `None` at offset 0 or when
/// the file is shorter than `offset` (it cannot be the file that was checkpointed).
pub fn tail_hash(file: &File, offset: u64) -> io::Result<Option<u64>> {
    if offset == 0 {
        return Ok(None);
    }
    let start = offset.saturating_sub(TAIL_BYTES);
    let mut buf = [0u8; TAIL_BYTES as usize];
    let want = (offset - start) as usize;
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..want], start + filled as u64) {
            Ok(0) => return Ok(None),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Some(fnv1a(&buf[..want])))
}

/// Up to this offset, what a file held before a position is hashed whole: the first line
/// (at most [`FINGERPRINT_MAX_BYTES`]) and the [`TAIL_BYTES`] before the position would
/// otherwise leave bytes between them unchecked.
pub const PREFIX_BYTES: u64 = FINGERPRINT_MAX_BYTES as u64 + TAIL_BYTES;

/// Evidence of what a file holds before `offset`, to recognise a copy of it: a hash of
/// all of its bytes before `offset` when `offset` is at most [`PREFIX_BYTES`], else of
/// the [`TAIL_BYTES`] before it (the first line is checked by the fingerprint). `None` at
/// offset 0 or when the file is shorter than `offset`. Up to [`TAIL_BYTES`] it is the
/// same hash as [`tail_hash`].
pub fn evidence(file: &File, offset: u64) -> io::Result<Option<u64>> {
    if offset > PREFIX_BYTES {
        return tail_hash(file, offset);
    }
    if offset == 0 {
        return Ok(None);
    }
    let mut buf = [0u8; PREFIX_BYTES as usize];
    let want = offset as usize;
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..want], filled as u64) {
            Ok(0) => return Ok(None),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Some(fnv1a(&buf[..want])))
}

/// [`evidence`] at the end of `bytes`, which were read from `file` at `start`: computed
/// from `bytes` when they hold what is needed, else read from the file.
pub fn evidence_after(file: &File, start: u64, bytes: &[u8]) -> Option<u64> {
    let end = start + bytes.len() as u64;
    if end == 0 {
        return None;
    }
    if end <= PREFIX_BYTES {
        if start == 0 {
            return Some(fnv1a(bytes));
        }
    } else if bytes.len() as u64 >= TAIL_BYTES {
        return Some(fnv1a(&bytes[bytes.len() - TAIL_BYTES as usize..]));
    }
    evidence(file, end).ok().flatten()
}

/// What a file was when the sidecar first met it, to tell it from a new file that has
/// its device, inode and first line (an inode reused at once, or the file rewritten in
/// place) when its checkpoint holds no `tail` to compare, at offset 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Birth {
    /// Its birth time in nanoseconds since the epoch, where the file system keeps one
    /// (ext4, XFS, Btrfs, tmpfs): a new file on a reused inode is born later.
    pub born: Option<u64>,
    /// How many first bytes it held (at most [`PREFIX_BYTES`]), and their
    /// [`evidence`]: a file rewritten in place keeps its birth time, not its bytes.
    pub head: Option<(u64, u64)>,
}

impl Birth {
    /// `file`'s birth as it is now.
    pub fn of(file: &File) -> Birth {
        let Ok(meta) = file.metadata() else {
            return Birth::default();
        };
        let born = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as u64);
        let len = meta.len().min(PREFIX_BYTES);
        let head = evidence(file, len).ok().flatten().map(|h| (len, h));
        Birth { born, head }
    }

    /// Whether `file` may be the file this birth was taken of: not if it was born at
    /// another time, nor if its first bytes differ from those it held then.
    pub fn matches(&self, file: &File) -> bool {
        if let (Some(then), Some(now)) = (self.born, Birth::of(file).born) {
            if then != now {
                return false;
            }
        }
        match self.head {
            None => true,
            Some((len, hash)) => evidence(file, len).ok().flatten() == Some(hash),
        }
    }
}

/// A new stream for a file instance met for the first time: 64 bits that no other
/// file instance, on this host or another sidecar's, is expected to share. Drawn from
/// the clock, the process, a counter and the file's key, mixed by SplitMix64 (the
/// standard library offers no random source; uniqueness, not secrecy, is what counts).
pub fn new_stream(key: &FileKey) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ u64::from(std::process::id()).rotate_left(32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= splitmix(key.dev ^ splitmix(key.ino ^ splitmix(key.fingerprint)));
    splitmix(x)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
    fn streams_differ_and_tails_tell_files_apart() {
        let key = FileKey {
            dev: 1,
            ino: 2,
            fingerprint: 3,
        };
        let streams: std::collections::HashSet<u64> = (0..1000).map(|_| new_stream(&key)).collect();
        assert_eq!(streams.len(), 1000);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"same first line\nline 1\n").unwrap();
        std::fs::write(&b, b"same first line\nline 2\n").unwrap();
        let (fa, fb) = (File::open(&a).unwrap(), File::open(&b).unwrap());
        assert_eq!(tail_hash(&fa, 0).unwrap(), None);
        assert_eq!(tail_hash(&fa, 16).unwrap(), tail_hash(&fb, 16).unwrap());
        assert_ne!(tail_hash(&fa, 23).unwrap(), tail_hash(&fb, 23).unwrap());
        assert_eq!(tail_hash(&fa, 99).unwrap(), None);
    }

    #[test]
    fn evidence_covers_the_whole_prefix_then_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        // Alike in the first line and in the 64 bytes before offset 300, not in between.
        let mut x = b"first line\n".to_vec();
        x.extend([b'x'; 100]);
        x.extend(vec![b'z'; 2000]);
        let mut y = x.clone();
        y[50] = b'y';
        std::fs::write(&a, &x).unwrap();
        std::fs::write(&b, &y).unwrap();
        let (fa, fb) = (File::open(&a).unwrap(), File::open(&b).unwrap());
        assert_eq!(evidence(&fa, 0).unwrap(), None);
        assert_eq!(evidence(&fa, 40).unwrap(), evidence(&fb, 40).unwrap());
        assert_eq!(evidence(&fa, 40).unwrap(), tail_hash(&fa, 40).unwrap());
        assert_eq!(tail_hash(&fa, 300).unwrap(), tail_hash(&fb, 300).unwrap());
        assert_ne!(evidence(&fa, 300).unwrap(), evidence(&fb, 300).unwrap());
        assert_eq!(evidence(&fa, 2000).unwrap(), evidence(&fb, 2000).unwrap());
        assert_eq!(evidence(&fa, 5000).unwrap(), None);
        for (start, len) in [(0, 300), (200, 100), (1000, 200), (1100, 10), (0, 2000)] {
            let bytes = &x[start..start + len];
            assert_eq!(
                evidence_after(&fa, start as u64, bytes),
                evidence(&fa, (start + len) as u64).unwrap(),
                "{start}+{len}"
            );
        }
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
