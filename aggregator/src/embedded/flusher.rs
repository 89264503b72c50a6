//! The flusher actor: writes sealed buffers to segments and merges small segments, on
//! its own thread so that encoding and compression never hold up a commit.
//!
//! It only writes `.tmp` files and answers with their names; the writer puts them in
//! place (rename, then delete what they replace), so every change of the store's files
//! happens in one thread, in an order that is safe at any crash.

use actix::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::engine::{Rewritten, Sealed};
use super::filter::request_id_of;
use super::segment::{
    structured_id_in, Row, Segment, SegmentError, SegmentWriter, COL_BODY, COL_ID, COL_LEVEL,
    COL_MESSAGE, COL_SERVICE, COL_TS, SEGMENT_DIR,
};
use crate::record::Record;
use crate::store::StoreError;

/// Messages waiting for the flusher: the writer never has more than a few under way.
pub const FLUSHER_MAILBOX: usize = 8;

/// Write a sealed buffer to a `.tmp` segment; answers its path.
#[derive(Message)]
#[rtype(result = "Result<PathBuf, StoreError>")]
pub struct Flush(pub Sealed);

/// Rewrite one segment without the records retention deletes.
#[derive(Message)]
#[rtype(result = "Result<Option<Rewritten>, StoreError>")]
pub struct Rewrite {
    pub segment: Arc<Segment>,
    pub drop_oldest: u64,
    pub min_ts_us: Option<i64>,
}

/// Merge adjacent segments into one `.tmp` segment; answers its path and last id.
#[derive(Message)]
#[rtype(result = "Result<(PathBuf, i64), StoreError>")]
pub struct Compact(pub Vec<Arc<Segment>>);

pub struct Flusher {
    dir: PathBuf,
    group_rows: usize,
}

impl Flusher {
    pub fn start(arbiter: &ArbiterHandle, dir: PathBuf, group_rows: usize) -> Addr<Flusher> {
        Flusher::start_in_arbiter(arbiter, move |ctx: &mut Context<Flusher>| {
            ctx.set_mailbox_capacity(FLUSHER_MAILBOX);
            Flusher { dir, group_rows }
        })
    }
}

impl Actor for Flusher {
    type Context = Context<Self>;
}

fn failed(e: SegmentError) -> StoreError {
    StoreError::Failed(format!("cannot write a segment: {e}"))
}

/// The temporary path a segment is written to before the writer renames it.
pub fn tmp_path(dir: &Path, first: i64, what: &str) -> PathBuf {
    dir.join(SEGMENT_DIR)
        .join(format!("{first:020}.{what}.tmp"))
}

/// Writes the records of `sealed`, sorted by `(time, id)`, to a `.tmp` segment.
pub fn write_sealed(dir: &Path, sealed: &Sealed, group_rows: usize) -> Result<PathBuf, StoreError> {
    write_sealed_as(dir, sealed, group_rows, "flush")
}

/// [`write_sealed`] to a temporary file of its own `kind`: the writer's last flush at
/// shutdown must not share a file with the flusher, which may be writing the same
/// buffer at that moment.
pub fn write_sealed_as(
    dir: &Path,
    sealed: &Sealed,
    group_rows: usize,
    kind: &str,
) -> Result<PathBuf, StoreError> {
    std::fs::create_dir_all(dir.join(SEGMENT_DIR))
        .map_err(|e| StoreError::Failed(format!("cannot create the segment directory: {e}")))?;
    let mut rows: Vec<Row<'_>> = sealed
        .chunks
        .iter()
        .flat_map(|c| c.rows.iter().map(|(id, record)| Row { id: *id, record }))
        .collect();
    rows.sort_unstable_by_key(|r| (r.record.ts_us, r.id));
    let path = tmp_path(dir, sealed.owner, kind);
    super::segment::write(&path, &rows, group_rows).map_err(failed)?;
    Ok(path)
}

/// One input of a merge: its rows, one row group at a time.
struct Input<'a> {
    seg: &'a Segment,
    group: usize,
    rows: Vec<(i64, Record)>,
    at: usize,
}

impl Input<'_> {
    /// The next row, loading the next group when this one is done.
    fn peek(&mut self) -> Result<Option<(i64, i64)>, SegmentError> {
        while self.at >= self.rows.len() {
            if self.group >= self.seg.index.groups.len() {
                return Ok(None);
            }
            self.rows = read_group(self.seg, self.group)?;
            self.group += 1;
            self.at = 0;
        }
        let (id, r) = &self.rows[self.at];
        Ok(Some((r.ts_us, *id)))
    }

    fn take(&mut self) -> (i64, Record) {
        let (id, r) = &mut self.rows[self.at];
        self.at += 1;
        (*id, std::mem::replace(r, empty_record()))
    }
}

fn empty_record() -> Record {
    Record {
        event_id: None,
        service: None,
        level: None,
        request_id: None,
        message: None,
        ts_us: 0,
        body: String::new(),
    }
}

/// Every record of one row group, as the writer had it.
pub fn read_group(seg: &Segment, g: usize) -> Result<Vec<(i64, Record)>, SegmentError> {
    let ids = seg.read_i64(g, COL_ID)?;
    let ts = seg.read_i64(g, COL_TS)?;
    let services = seg.read_strings(g, COL_SERVICE)?;
    let levels = seg.read_strings(g, COL_LEVEL)?;
    // Structured ids are read from the bodies, which are read here anyway.
    let mut events = seg.read_event_ids(g, false)?;
    let in_bodies = seg.index.ids.in_bodies;
    let messages = seg.read_strings(g, COL_MESSAGE)?;
    let bodies = seg.read_strings(g, COL_BODY)?;
    let owned = |v: Option<&str>| v.map(str::to_owned);
    Ok((0..ids.len())
        .map(|i| {
            let body = bodies.get(i).unwrap_or("{}").to_owned();
            let record = Record {
                event_id: events[i]
                    .take()
                    .or_else(|| in_bodies.then(|| structured_id_in(&body)).flatten()),
                service: owned(services.get(i)),
                level: owned(levels.get(i)),
                request_id: request_id_of(&body),
                message: owned(messages.get(i)),
                ts_us: ts[i],
                body,
            };
            (ids[i], record)
        })
        .collect())
}

/// Merges `inputs` (adjacent, in id order) into one `.tmp` segment sorted by
/// `(time, id)`, one row group in memory per input.
pub fn merge(
    dir: &Path,
    inputs: &[Arc<Segment>],
    group_rows: usize,
) -> Result<(PathBuf, i64), StoreError> {
    let first = inputs.first().map_or(0, |s| s.first_id);
    let last = inputs.iter().map(|s| s.last_id).max().unwrap_or(first);
    let path = tmp_path(dir, first, "compact");
    let mut out = SegmentWriter::create(&path, group_rows).map_err(failed)?;
    let mut cursors: Vec<Input<'_>> = inputs
        .iter()
        .map(|seg| Input {
            seg,
            group: 0,
            rows: Vec::new(),
            at: 0,
        })
        .collect();
    let mut heap = BinaryHeap::new();
    for (i, c) in cursors.iter_mut().enumerate() {
        if let Some(key) = c.peek().map_err(failed)? {
            heap.push(Reverse((key, i)));
        }
    }
    let mut group: Vec<(i64, Record)> = Vec::with_capacity(out.group_rows());
    while let Some(Reverse((_, i))) = heap.pop() {
        group.push(cursors[i].take());
        if let Some(key) = cursors[i].peek().map_err(failed)? {
            heap.push(Reverse((key, i)));
        }
        if group.len() == out.group_rows() {
            write_owned(&mut out, &group)?;
            group.clear();
        }
    }
    write_owned(&mut out, &group)?;
    out.finish().map_err(failed)?;
    Ok((path, last))
}

fn write_owned(out: &mut SegmentWriter, group: &[(i64, Record)]) -> Result<(), StoreError> {
    let rows: Vec<Row<'_>> = group
        .iter()
        .map(|(id, record)| Row { id: *id, record })
        .collect();
    out.write_group(&rows).map_err(failed)
}

/// Writes `seg` again without its `drop_oldest` oldest records (by id) and those older
/// than `min_ts_us`; `None` when nothing is kept.
pub fn rewrite(
    dir: &Path,
    seg: &Segment,
    drop_oldest: u64,
    min_ts_us: Option<i64>,
    group_rows: usize,
) -> Result<Option<Rewritten>, StoreError> {
    let mut ids = Vec::new();
    for g in 0..seg.index.groups.len() {
        ids.extend(seg.read_i64(g, COL_ID).map_err(failed)?);
    }
    ids.sort_unstable();
    let keep_from = ids.get(drop_oldest as usize).copied().unwrap_or(i64::MAX);
    let path = tmp_path(dir, seg.first_id, "rewrite");
    let mut out = SegmentWriter::create(&path, group_rows).map_err(failed)?;
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut event_ids = Vec::new();
    let mut group: Vec<(i64, Record)> = Vec::with_capacity(out.group_rows());
    for g in 0..seg.index.groups.len() {
        for (id, r) in read_group(seg, g).map_err(failed)? {
            if id < keep_from || min_ts_us.is_some_and(|min| r.ts_us < min) {
                continue;
            }
            first = first.min(id);
            last = last.max(id);
            event_ids.extend(r.event_id.clone());
            group.push((id, r));
            if group.len() == out.group_rows() {
                write_owned(&mut out, &group)?;
                group.clear();
            }
        }
    }
    write_owned(&mut out, &group)?;
    out.finish().map_err(failed)?;
    if first > last {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    Ok(Some(Rewritten {
        tmp: path,
        first,
        last,
        event_ids,
    }))
}

impl Handler<Rewrite> for Flusher {
    type Result = Result<Option<Rewritten>, StoreError>;

    fn handle(&mut self, msg: Rewrite, _: &mut Context<Self>) -> Self::Result {
        rewrite(
            &self.dir,
            &msg.segment,
            msg.drop_oldest,
            msg.min_ts_us,
            self.group_rows,
        )
    }
}

impl Handler<Flush> for Flusher {
    type Result = Result<PathBuf, StoreError>;

    fn handle(&mut self, msg: Flush, _: &mut Context<Self>) -> Self::Result {
        write_sealed(&self.dir, &msg.0, self.group_rows)
    }
}

impl Handler<Compact> for Flusher {
    type Result = Result<(PathBuf, i64), StoreError>;

    fn handle(&mut self, msg: Compact, _: &mut Context<Self>) -> Self::Result {
        merge(&self.dir, &msg.0, self.group_rows)
    }
}
