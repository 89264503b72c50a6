//! Upgrade without loss: a `DATA_DIR` that holds the SQLite store of earlier versions
//! (`logs.db`) is imported on first start, every record kept with its id, time, fields
//! and body.
//!
//! The SQLite store itself was removed once this store became the default; this module
//! is all that still reads its files, so it relies only on what every version of that
//! store wrote: the table `logs(id, ts, service, level, request_id, event_id, body)`,
//! where `id` is the arrival order and `body` the JSON returned by `GET /logs`. Its text
//! index and per-service counts are not read: the segments build their own.
//!
//! Records are read in id order and written as segments of [`FLUSH_ROWS`] records
//! (tmp, sync, rename), so an import that is interrupted resumes after the last segment
//! in place. When every record is in, `logs.db` (and its `-wal`, `-shm`) is renamed to
//! `logs.db.imported`, which is kept until the operator deletes it.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::engine::FLUSH_ROWS;
use super::filter::field_of;
use super::segment::{self, Row, Segment, SEGMENT_DIR};
use crate::record::Record;

/// The SQLite store's database inside `DATA_DIR`; its `-wal` and `-shm` lie beside it.
pub const DB_FILE: &str = "logs.db";
/// What the SQLite files are renamed to once imported.
pub const IMPORTED_SUFFIX: &str = ".imported";

fn failed(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot import the SQLite store: {e}")
}

/// Imports `dir/logs.db` when it is there; returns the records imported.
pub fn import_sqlite(dir: &Path) -> anyhow::Result<u64> {
    let db = dir.join(DB_FILE);
    if !db.exists() {
        return Ok(0);
    }
    let seg_dir = dir.join(SEGMENT_DIR);
    std::fs::create_dir_all(&seg_dir).map_err(failed)?;
    // Resume after what an interrupted import already wrote.
    let mut after = 0i64;
    for entry in std::fs::read_dir(&seg_dir).map_err(failed)? {
        let name = entry.map_err(failed)?.file_name();
        if let Some((_, last)) = segment::parse_name(&name.to_string_lossy()) {
            after = after.max(last);
        }
    }
    let conn = Connection::open_with_flags(
        &db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    let total: i64 = conn
        .query_row("SELECT count(*) FROM logs WHERE id > ?1", [after], |r| {
            r.get(0)
        })
        .map_err(failed)?;
    log::info!(records = total, from = db.display().to_string().as_str(); "Importing the SQLite store into segments.");
    let mut stmt = conn
        .prepare(
            "SELECT id, ts, service, level, request_id, event_id, body FROM logs
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .map_err(failed)?;
    let mut imported = 0u64;
    loop {
        let rows: Vec<(i64, Record)> = stmt
            .query_map([after, FLUSH_ROWS as i64], |r| {
                let body: String = r.get(6)?;
                Ok((
                    r.get(0)?,
                    Record {
                        ts_us: r.get(1)?,
                        service: r.get(2)?,
                        level: r.get(3)?,
                        request_id: r.get(4)?,
                        event_id: r.get(5)?,
                        message: field_of(&body, "message"),
                        body,
                    },
                ))
            })
            .map_err(failed)?
            .collect::<Result<_, _>>()
            .map_err(failed)?;
        let (Some(first), Some(last)) = (rows.first().map(|r| r.0), rows.last().map(|r| r.0))
        else {
            break;
        };
        let mut sorted: Vec<Row<'_>> = rows
            .iter()
            .map(|(id, record)| Row { id: *id, record })
            .collect();
        sorted.sort_unstable_by_key(|r| (r.record.ts_us, r.id));
        let tmp = seg_dir.join(format!("{first:020}.import.tmp"));
        segment::write(&tmp, &sorted, segment::ROW_GROUP_ROWS).map_err(failed)?;
        let path = seg_dir.join(segment::file_name(first, last));
        std::fs::rename(&tmp, &path).map_err(failed)?;
        Segment::open(&path).map_err(failed)?;
        imported += rows.len() as u64;
        after = last;
    }
    drop(stmt);
    drop(conn);
    if let Ok(d) = std::fs::File::open(&seg_dir) {
        d.sync_all().map_err(failed)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}{IMPORTED_SUFFIX}", db.display()));
            std::fs::rename(&from, &to).map_err(failed)?;
        }
    }
    log::info!(records = imported; "The SQLite store was imported; logs.db was renamed to logs.db.imported.");
    Ok(imported)
}
