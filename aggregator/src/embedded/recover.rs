//! Start-up: the data directory as a crash may have left it, made whole again.
//!
//! - `.tmp` files are unfinished flushes or compactions: deleted (their records are
//!   still in the log or in their input segments).
//! - A segment that cannot be read whole is moved to `DATA_DIR/damaged/` and reported
//!   in the log and in `/health`; the store starts without it.
//! - A segment whose id range lies inside another's is the input of a compaction that
//!   finished: deleted.
//! - The log is replayed after the segments: records whose id a segment holds are
//!   skipped, a torn tail is cut, and log files that segments cover are deleted.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use super::dedup::Dedup;
use super::engine::Recovered;
use super::segment::{self, Segment, SEGMENT_DIR};
use super::wal;
use crate::store::StoreError;

/// Where damaged segments are moved, inside `DATA_DIR`.
pub const DAMAGED_DIR: &str = "damaged";

fn failed(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("{what}: {e}"))
}

/// Recovers the store in `dir`; the second value lists the problems found, as
/// sentences for the log and `/health`.
pub fn recover(dir: &Path) -> Result<(Recovered, Vec<String>), StoreError> {
    let seg_dir = dir.join(SEGMENT_DIR);
    fs::create_dir_all(&seg_dir).map_err(|e| failed("cannot create the segment directory", e))?;
    let mut problems = Vec::new();
    let mut segments: Vec<Segment> = Vec::new();
    let entries = fs::read_dir(&seg_dir).map_err(|e| failed("cannot list the segments", e))?;
    for entry in entries {
        let path = entry
            .map_err(|e| failed("cannot list the segments", e))?
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned();
        if name.ends_with(".tmp") {
            fs::remove_file(&path).map_err(|e| failed("cannot delete an unfinished segment", e))?;
            continue;
        }
        if segment::parse_name(&name).is_none() {
            continue;
        }
        match Segment::open(&path) {
            Ok(s) => segments.push(s),
            Err(e) => problems.push(move_aside(dir, &path, &e.to_string())?),
        }
    }
    // Widest first among those that start together, so that leftovers of a finished
    // compaction come after the segment that replaced them.
    segments.sort_by_key(|s| (s.first_id, std::cmp::Reverse(s.last_id)));
    let mut kept: Vec<Arc<Segment>> = Vec::new();
    for s in segments {
        match kept.last() {
            Some(k) if s.first_id >= k.first_id && s.last_id <= k.last_id => {
                fs::remove_file(&s.path)
                    .map_err(|e| failed("cannot delete a compacted segment", e))?;
            }
            Some(k) if s.first_id <= k.last_id => {
                let reason = format!("its ids overlap those of {}", k.path.display());
                problems.push(move_aside(dir, &s.path, &reason)?);
            }
            _ => kept.push(Arc::new(s)),
        }
    }
    let mut dedup = Dedup::default();
    for s in &kept {
        let summary = &s.index.ids;
        let from_footer = summary
            .ranges
            .as_ref()
            .is_some_and(|ranges| dedup.load_ranges(s.first_id, ranges));
        if from_footer && summary.opaque == 0 {
            continue;
        }
        // Opaque ids (or ranges that overlap) are read back from the column.
        // With the ranges loaded only the opaque ones are needed, and the column holds
        // them; otherwise every id, structured ones from the bodies.
        let mut ids = Vec::new();
        for g in 0..s.index.groups.len() {
            let col = s
                .read_event_ids(g, !from_footer)
                .map_err(|e| failed("cannot read a segment's event ids", e))?;
            ids.extend(col.into_iter().flatten());
        }
        let ids = ids.iter().map(String::as_str);
        if from_footer {
            dedup.load_opaque(s.first_id, ids);
        } else {
            dedup.load_segment(s.first_id, ids);
        }
    }
    let flushed = kept.iter().map(|s| s.last_id).max().unwrap_or(0);
    let mut memory = Vec::new();
    let mut last = flushed;
    let files = wal::list(dir).map_err(|e| failed("cannot list the log", e))?;
    for (_, path) in files {
        let replayed = wal::replay(&path).map_err(|e| failed("cannot read the log", e))?;
        if replayed.cut_bytes > 0 {
            log::warn!(
                file = path.display().to_string().as_str(),
                bytes = replayed.cut_bytes;
                "Cut the torn tail of a log file (a commit that was never acknowledged)."
            );
        }
        let mut newer = false;
        for (id, record) in replayed.records {
            if id > last {
                last = id;
                memory.push((id, record));
                newer = true;
            }
        }
        if !newer {
            fs::remove_file(&path).map_err(|e| failed("cannot delete a flushed log file", e))?;
        }
    }
    for p in &problems {
        log::error!(problem = p.as_str(); "A damaged segment was moved aside; the store starts without it.");
    }
    Ok((
        Recovered {
            segments: kept,
            dedup,
            memory,
            next_id: last + 1,
        },
        problems,
    ))
}

/// Moves a segment that cannot be used to `damaged/`; returns the sentence reporting it.
fn move_aside(dir: &Path, path: &Path, reason: &str) -> Result<String, StoreError> {
    let damaged = dir.join(DAMAGED_DIR);
    fs::create_dir_all(&damaged).map_err(|e| failed("cannot create the damaged directory", e))?;
    let name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
    let to = damaged.join(&name);
    fs::rename(path, &to).map_err(|e| failed("cannot move a damaged segment aside", e))?;
    Ok(format!(
        "segment {} was damaged ({reason}) and was moved to {}",
        name.to_string_lossy(),
        to.display()
    ))
}
