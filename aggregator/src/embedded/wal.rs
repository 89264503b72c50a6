//! The write-ahead log: every acknowledged record is in it until a segment holds it.
//!
//! `DATA_DIR/wal/<first id, 20 digits>.wal` files, each a sequence of entries:
//!
//! ```text
//! u32 payload length | u32 CRC-32 of the payload | payload
//! payload: u32 record count, then per record:
//!          i64 id | i64 time (µs) | 6 × (u32 length or u32::MAX for none | UTF-8 bytes)
//!          (event_id, service, level, request_id, message, body)
//! ```
//!
//! All integers little-endian. One entry is one group commit, written with one `write`;
//! with `SYNC_MODE=full` it is followed by `fdatasync`. Replay stops at the first entry
//! whose length or checksum does not hold (the torn tail of a crash) and cuts the file
//! there, so a half-written group is never half-applied; it was never acknowledged.
//! A new file is started when the memory buffer is sealed for a flush, so a whole file
//! can be deleted once the segment made from its records is in place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::config::SyncMode;
use crate::record::Record;

/// The directory of the log inside `DATA_DIR`.
pub const WAL_DIR: &str = "wal";
const HEADER: usize = 8;
const NONE: u32 = u32::MAX;
/// A length beyond this is damage, not an entry (a group is at most a few bodies' size).
const MAX_ENTRY_BYTES: usize = 1 << 30;

/// The path of the log file whose first record has id `first`.
pub fn file_path(dir: &Path, first: i64) -> PathBuf {
    dir.join(WAL_DIR).join(format!("{first:020}.wal"))
}

/// The log files in `dir`, oldest first, with the id each starts at.
pub fn list(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut files = Vec::new();
    let wal = dir.join(WAL_DIR);
    if !wal.exists() {
        return Ok(files);
    }
    for entry in fs::read_dir(&wal)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<i64>().ok());
        if let Some(first) = first {
            files.push((first, path));
        }
    }
    files.sort();
    Ok(files)
}

/// The file being appended to.
pub struct Wal {
    file: File,
    sync: SyncMode,
    /// The encoded group, reused between commits.
    buf: Vec<u8>,
    /// Bytes of whole entries: a failed append is cut back to this, so that the next
    /// entry never follows a half-written one (replay would stop there).
    len: u64,
    /// A failed append could not be cut back: no entry may follow it.
    broken: bool,
}

impl Wal {
    /// Creates (or reopens, to append) the log file that starts at id `first`.
    pub fn create(dir: &Path, first: i64, sync: SyncMode) -> io::Result<Wal> {
        fs::create_dir_all(dir.join(WAL_DIR))?;
        let path = file_path(dir, first);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        if sync == SyncMode::Full {
            // The new name must survive a power loss as well as the entries.
            File::open(dir.join(WAL_DIR))?.sync_all()?;
        }
        Ok(Wal {
            file,
            sync,
            buf: Vec::new(),
            len,
            broken: false,
        })
    }

    /// Appends one group of records (with their ids) as one entry; durable per the sync
    /// mode when this returns.
    pub fn append<'a>(
        &mut self,
        records: impl ExactSizeIterator<Item = (i64, &'a Record)>,
    ) -> io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; HEADER]);
        self.buf
            .extend_from_slice(&(records.len() as u32).to_le_bytes());
        for (id, r) in records {
            encode(&mut self.buf, id, r);
        }
        let len = (self.buf.len() - HEADER) as u32;
        let crc = crc32fast::hash(&self.buf[HEADER..]);
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        if self.broken {
            return Err(io::Error::other(
                "an earlier write to the log failed and could not be undone; restart the aggregator",
            ));
        }
        let written = self.file.write_all(&self.buf).and_then(|()| {
            if self.sync == SyncMode::Full {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(e);
        }
        self.len += self.buf.len() as u64;
        // A large group's buffer is not kept for ever.
        if self.buf.capacity() > 64 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }
}

fn put_str(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => buf.extend_from_slice(&NONE.to_le_bytes()),
        Some(s) => {
            buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

fn encode(buf: &mut Vec<u8>, id: i64, r: &Record) {
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&r.ts_us.to_le_bytes());
    put_str(buf, r.event_id.as_deref());
    put_str(buf, r.service.as_deref());
    put_str(buf, r.level.as_deref());
    put_str(buf, r.request_id.as_deref());
    put_str(buf, r.message.as_deref());
    put_str(buf, Some(&r.body));
}

/// Reads entries from a byte slice.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<Option<String>> {
        let n = self.u32()?;
        if n == NONE {
            return Some(None);
        }
        let bytes = self.take(n as usize)?;
        Some(Some(std::str::from_utf8(bytes).ok()?.to_owned()))
    }
}

fn decode_group(payload: &[u8]) -> Option<Vec<(i64, Record)>> {
    let mut c = Cursor {
        bytes: payload,
        at: 0,
    };
    let n = c.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(payload.len() / 40));
    for _ in 0..n {
        let id = c.i64()?;
        let ts_us = c.i64()?;
        let record = Record {
            event_id: c.string()?,
            service: c.string()?,
            level: c.string()?,
            request_id: c.string()?,
            message: c.string()?,
            ts_us,
            body: c.string()??,
        };
        out.push((id, record));
    }
    (c.at == payload.len()).then_some(out)
}

/// What replaying one file found.
#[derive(Debug)]
pub struct Replayed {
    pub records: Vec<(i64, Record)>,
    /// Bytes cut from the end: a torn or damaged tail.
    pub cut_bytes: u64,
}

/// Reads every whole entry of `path`; a torn or damaged tail is cut off the file.
pub fn replay(path: &Path) -> io::Result<Replayed> {
    let bytes = fs::read(path)?;
    let mut records = Vec::new();
    let mut at = 0;
    while at + HEADER <= bytes.len() {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let end = at + HEADER + len;
        if len > MAX_ENTRY_BYTES || end > bytes.len() {
            break;
        }
        let payload = &bytes[at + HEADER..end];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(group) = decode_group(payload) else {
            break;
        };
        records.extend(group);
        at = end;
    }
    let cut_bytes = (bytes.len() - at) as u64;
    if cut_bytes > 0 {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(at as u64)?;
        file.sync_all()?;
    }
    Ok(Replayed { records, cut_bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{self, Received};

    fn rec(i: usize) -> Record {
        let text = format!(
            r#"{{"service":"s{}","level":"info","message":"m {i}","event_id":"e{i}"}}"#,
            i % 3
        );
        record::parse(&text, &Received::now()).unwrap()
    }

    #[test]
    fn groups_round_trip_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 1, SyncMode::Full).unwrap();
        let a: Vec<Record> = (0..3).map(rec).collect();
        let b: Vec<Record> = (3..5).map(rec).collect();
        wal.append(a.iter().enumerate().map(|(i, r)| (i as i64 + 1, r)))
            .unwrap();
        wal.append(b.iter().enumerate().map(|(i, r)| (i as i64 + 4, r)))
            .unwrap();
        drop(wal);
        let path = file_path(dir.path(), 1);
        let whole = fs::read(&path).unwrap();
        let got = replay(&path).unwrap();
        assert_eq!(got.cut_bytes, 0);
        let want: Vec<(i64, Record)> = (1..).zip(a.iter().chain(&b).cloned()).collect();
        assert_eq!(got.records, want);

        // Every cut inside the second entry loses exactly that entry, and the file is
        // cut back to the first.
        let first_end = HEADER + u32::from_le_bytes(whole[..4].try_into().unwrap()) as usize;
        for cut in [first_end + 1, first_end + 8, whole.len() - 1] {
            fs::write(&path, &whole[..cut]).unwrap();
            let got = replay(&path).unwrap();
            assert_eq!(got.records.len(), 3, "cut at {cut}");
            assert_eq!(fs::metadata(&path).unwrap().len() as usize, first_end);
        }
        // A flipped byte in the payload is damage: the entry and all after it go.
        let mut bad = whole.clone();
        bad[HEADER + 10] ^= 0xff;
        fs::write(&path, &bad).unwrap();
        assert_eq!(replay(&path).unwrap().records.len(), 0);
        assert_eq!(list(dir.path()).unwrap(), vec![(1, path)]);
    }
}
