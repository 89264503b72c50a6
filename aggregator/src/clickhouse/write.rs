//! `POST /logs` on the ClickHouse store: duplicates left out (within the batch, and
//! those already stored), ids given, one `INSERT ... FORMAT RowBinary`, acknowledged
//! when ClickHouse has answered it.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::http::{Call, ChError};
use super::rows::{Reader, Writer};
use super::sql::{dedup_key, quote, INSERT_COLUMNS};
use super::Shared;
use crate::record::Record;
use crate::store::{Inserted, RecordId, StoreError};

/// Bits of an id below the µs: the aggregator's random node number.
pub const NODE_BITS: u32 = 10;

/// Gives ids: receive time in µs (never going back, one per record) and the node bits.
#[derive(Debug)]
pub struct Ids {
    node: i64,
    last_us: AtomicI64,
}

impl Default for Ids {
    fn default() -> Ids {
        Ids::new()
    }
}

impl Ids {
    /// With a node number drawn at random (std's hasher keys are random per process).
    pub fn new() -> Ids {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Ids {
            node: (random & ((1 << NODE_BITS) - 1)) as i64,
            last_us: AtomicI64::new(0),
        }
    }

    pub fn node(&self) -> i64 {
        self.node
    }

    /// The first of `n` consecutive ids, all after every id given before.
    pub fn reserve(&self, n: usize) -> RecordId {
        let now = chrono::Utc::now().timestamp_micros();
        let n = n as i64;
        let mut last = self.last_us.load(Ordering::Relaxed);
        loop {
            let first = now.max(last + 1);
            match self.last_us.compare_exchange_weak(
                last,
                first + n - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return first,
                Err(seen) => last = seen,
            }
        }
    }

    /// The id of the `i`-th µs from `first_us`.
    pub fn id(&self, first_us: i64, i: usize) -> RecordId {
        ((first_us + i as i64) << NODE_BITS) | self.node
    }
}

/// The smallest id any record received at `us` or later can have.
pub fn first_id_at(us: i64) -> RecordId {
    us << NODE_BITS
}

/// Stores a batch; see the module doc of [`super`] for how duplicates are found.
pub async fn ingest(shared: Arc<Shared>, records: Vec<Record>) -> Result<Inserted, StoreError> {
    let caps = shared.ready().await?;
    let started = Instant::now();
    let total = records.len() as u64;
    // Within the batch: the first of an event_id is kept.
    let mut seen = HashSet::new();
    let mut fresh: Vec<Record> = records
        .into_iter()
        .filter(|r| r.event_id.as_ref().map_or(true, |e| seen.insert(e.clone())))
        .collect();
    let stored = stored_already(&shared, &fresh).await?;
    if !stored.is_empty() {
        fresh.retain(|r| {
            r.event_id
                .as_ref()
                .map_or(true, |e| !stored.contains(&dedup_key(Some(e), 0)))
        });
    }
    let inserted = Inserted {
        stored: fresh.len() as u64,
        duplicates: total - fresh.len() as u64,
    };
    if fresh.is_empty() {
        return Ok(inserted);
    }
    let first_us = shared.ids.reserve(fresh.len());
    let bytes: usize = fresh.iter().map(|r| r.body.len() + 128).sum();
    let mut w = Writer::with_capacity(bytes);
    for (i, r) in fresh.iter().enumerate() {
        let id = shared.ids.id(first_us, i);
        w.i64(r.ts_us);
        w.i64(id);
        w.u64(i64::MAX.saturating_sub(id) as u64);
        w.string(&dedup_key(r.event_id.as_deref(), id));
        w.nullable(r.event_id.as_deref());
        w.nullable(r.service.as_deref());
        w.nullable(r.level.as_deref());
        w.nullable(r.request_id.as_deref());
        w.nullable(r.message.as_deref());
        w.string(&r.body);
    }
    let query = format!(
        "INSERT INTO {} ({INSERT_COLUMNS}) FORMAT RowBinary",
        shared.table
    );
    let mut settings = Vec::new();
    if caps.partition_limit {
        // A batch may hold records of many days (a backlog, or odd timestamps).
        settings.push(("max_partitions_per_insert_block", "0".to_owned()));
    }
    let writing = shared.status.begin_write();
    let sent = shared
        .server
        .send(Call {
            query: Some(&query),
            body: Bytes::from(w.buf),
            settings,
            deadline: Instant::now() + shared.config.timeout,
        })
        .await;
    shared.status.observe(&sent);
    match sent {
        Ok(_) => {}
        // Not answered in time: it may still be stored, or not; the sender retries, and
        // the retry finds what was stored.
        Err(ChError::Timeout(_)) => return Err(StoreError::Unavailable("ClickHouse server")),
        Err(e) => return Err(refused(&shared, e)),
    }
    shared.status.add_stored(inserted.stored);
    shared.metrics.records_stored.add(inserted.stored as i64);
    drop(writing);
    shared
        .metrics
        .batch_commit
        .observe(started.elapsed().as_secs_f64());
    Ok(inserted)
}

/// An error of a statement, as the store reports it; a missing table is made again on
/// the next statement.
pub fn refused(shared: &Shared, e: ChError) -> StoreError {
    // 60: UNKNOWN_TABLE, 81: UNKNOWN_DATABASE.
    if matches!(e, ChError::Refused { code: 60 | 81, .. }) {
        shared.forget_table();
    }
    e.into_store()
}

/// The `dedup_key`s of `records` that are stored already, at any time: a record re-sent
/// with another `timestamp` is still the one stored. The table is ordered by time, so
/// this reads the `dedup_key` column of every part (its cost grows with the table; see
/// docs/scale-out.md).
async fn stored_already(
    shared: &Shared,
    records: &[Record],
) -> Result<HashSet<String>, StoreError> {
    let mut keys = String::new();
    for r in records {
        if let Some(e) = &r.event_id {
            if !keys.is_empty() {
                keys.push(',');
            }
            keys.push_str(&quote(&dedup_key(Some(e), 0)));
        }
    }
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "SELECT DISTINCT dedup_key FROM {} PREWHERE dedup_key IN ({keys}) FORMAT RowBinary",
        shared.table
    );
    let answer = shared
        .server
        .select(sql, Instant::now() + shared.config.timeout)
        .await;
    shared.status.observe(&answer);
    let body = match answer {
        Ok(b) => b,
        Err(ChError::Timeout(_)) => return Err(StoreError::Unavailable("ClickHouse server")),
        Err(e) => return Err(refused(shared, e)),
    };
    let mut r = Reader::new(&body);
    let mut found = HashSet::new();
    while !r.is_empty() {
        found.insert(r.string().map_err(ChError::into_store)?);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_and_never_repeat() {
        let ids = Ids::new();
        let a = ids.reserve(1000);
        let b = ids.reserve(1);
        assert!(b >= a + 1000);
        let first = ids.id(a, 0);
        let last = ids.id(a, 999);
        assert!(first < last && last < ids.id(b, 0));
        assert_eq!(first & ((1 << NODE_BITS) - 1), ids.node());
        assert!(first_id_at(a) <= first && first < first_id_at(a + 1));
    }
}
