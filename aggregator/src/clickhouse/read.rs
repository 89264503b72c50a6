//! The reads of the ClickHouse store — `GET /logs` pages and totals, `/logs/count`,
//! Loki's scans — and `POST /logs/clear`. Counts use `FINAL` and pages leave out second
//! copies ([`super::page`]), so a record stored twice in a race (see [`super`]) is
//! shown and counted once.

use std::sync::Arc;
use std::time::Instant;

use super::http::ChError;
use super::page::{self, Want};
use super::rows::Reader;
use super::sql::{log_conditions, scan_conditions, where_clause};
use super::write::refused;
use super::Shared;
use crate::query::LogQuery;
use crate::store::{
    Counts, Page, ScanPage, ScanQuery, StoreError, MAX_PAGE_BYTES, SCAN_PAGE_BYTES, UNKNOWN,
};

/// Runs a read and reads its `RowBinary` answer with `rows`.
async fn select<T>(
    shared: &Shared,
    sql: String,
    deadline: Instant,
    rows: impl FnOnce(&mut Reader<'_>) -> Result<T, ChError>,
) -> Result<T, StoreError> {
    let answer = shared.server.select(sql, deadline).await;
    shared.status.observe(&answer);
    let body = answer.map_err(|e| refused(shared, e))?;
    rows(&mut Reader::new(&body)).map_err(ChError::into_store)
}

fn observe(shared: &Shared, kind: &str, started: Instant) {
    shared
        .metrics
        .query_duration
        .with_label_values(&[kind])
        .observe(started.elapsed().as_secs_f64());
}

/// One page of `GET /logs`, and how many records match in all.
pub async fn query(
    shared: Arc<Shared>,
    q: LogQuery,
    deadline: Instant,
) -> Result<Page, StoreError> {
    shared.ready().await?;
    let started = Instant::now();
    let table = &shared.table;
    let conds = log_conditions(&q);
    let total_sql = format!(
        "SELECT count() FROM {table} FINAL{} FORMAT RowBinary",
        where_clause(&conds)
    );
    let total = select(&shared, total_sql, deadline, |r| r.u64()).await?;
    if total == 0 {
        observe(&shared, "logs", started);
        return Ok(Page {
            total,
            logs: Vec::new(),
            last: None,
        });
    }
    let want = Want {
        conds,
        order: q.order,
        after: q.cursor.map(|c| (c.ts_us, c.id)),
        limit: q.limit,
        max_bytes: MAX_PAGE_BYTES,
    };
    let (rows, more) = page::rows(&shared, want, deadline).await?;
    observe(&shared, "logs", started);
    Ok(Page {
        total,
        last: if more {
            rows.last().map(|r| (r.ts_us, r.id))
        } else {
            None
        },
        logs: rows.into_iter().map(|r| r.body).collect(),
    })
}

/// Records stored, by service and by level.
pub async fn count(shared: Arc<Shared>, deadline: Instant) -> Result<Counts, StoreError> {
    shared.ready().await?;
    let started = Instant::now();
    let sql = format!(
        "SELECT service, level, count() FROM {} FINAL GROUP BY service, level FORMAT RowBinary",
        shared.table
    );
    let counts = select(&shared, sql, deadline, |r| {
        let mut c = Counts::default();
        while !r.is_empty() {
            let service = r.nullable()?.unwrap_or_else(|| UNKNOWN.to_owned());
            let level = r.nullable()?.unwrap_or_else(|| UNKNOWN.to_owned());
            let n = r.u64()?;
            c.total += n;
            *c.by_service.entry(service).or_insert(0) += n;
            *c.by_level.entry(level).or_insert(0) += n;
        }
        Ok(c)
    })
    .await?;
    observe(&shared, "count", started);
    Ok(counts)
}

/// One page of a time range, for Loki's API.
pub async fn scan(
    shared: Arc<Shared>,
    q: ScanQuery,
    deadline: Instant,
) -> Result<ScanPage, StoreError> {
    shared.ready().await?;
    let started = Instant::now();
    let want = Want {
        conds: scan_conditions(&q),
        order: q.order,
        after: q.after,
        limit: q.limit,
        max_bytes: SCAN_PAGE_BYTES,
    };
    let (rows, more) = page::rows(&shared, want, deadline).await?;
    observe(&shared, "loki_scan", started);
    Ok(ScanPage { rows, more })
}

/// Deletes every record (of every aggregator: the table is shared); answers how many
/// there were.
pub async fn clear(shared: Arc<Shared>) -> Result<u64, StoreError> {
    shared.ready().await?;
    let timeout = shared.config.timeout;
    let n = select(
        &shared,
        format!(
            "SELECT count() FROM {} FINAL FORMAT RowBinary",
            shared.table
        ),
        Instant::now() + timeout,
        |r| r.u64(),
    )
    .await?;
    let writing = shared.status.begin_write();
    let done = shared
        .server
        .execute(format!("TRUNCATE TABLE {}", shared.table), timeout)
        .await;
    shared.status.observe(&done);
    done.map_err(|e| refused(&shared, e))?;
    shared.status.set_stored(0);
    drop(writing);
    shared.metrics.records_stored.set(0);
    Ok(n)
}
