//! The reads of the ClickHouse store — `GET /logs` pages and totals, `/logs/count`,
//! Loki's scans — and `POST /logs/clear`. Every read uses `FINAL`, so a record stored
//! twice in a race (see [`super`]) is shown and counted once.

use std::sync::Arc;
use std::time::Instant;

use super::http::ChError;
use super::rows::Reader;
use super::sql::{log_conditions, order_by, scan_conditions, where_clause};
use super::write::refused;
use super::Shared;
use crate::query::LogQuery;
use crate::store::{Counts, Page, ScanPage, ScanQuery, ScanRow, StoreError, UNKNOWN};

/// A page stops early (with a cursor) once its records exceed this many bytes of JSON.
pub const MAX_PAGE_BYTES: usize = 16 << 20;
/// A scan's page stops early once its bodies exceed this many bytes.
pub const SCAN_PAGE_BYTES: usize = 4 << 20;

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
    let total_sql = format!(
        "SELECT count() FROM {table} FINAL{} FORMAT RowBinary",
        where_clause(&log_conditions(&q, false))
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
    let page_sql = format!(
        "SELECT id, ts, body FROM {table} FINAL{} {} LIMIT {} FORMAT RowBinary",
        where_clause(&log_conditions(&q, true)),
        order_by(q.order),
        q.limit + 1
    );
    let limit = q.limit;
    let page = select(&shared, page_sql, deadline, |r| {
        let mut logs = Vec::with_capacity(limit.min(1024));
        let mut last = None;
        let mut more = false;
        let mut bytes = 0;
        while !r.is_empty() {
            if logs.len() == limit || bytes > MAX_PAGE_BYTES {
                more = true;
                break;
            }
            let id = r.i64()?;
            let ts = r.i64()?;
            let body = r.string()?;
            bytes += body.len();
            logs.push(body);
            last = Some((ts, id));
        }
        Ok(Page {
            total,
            logs,
            last: if more { last } else { None },
        })
    })
    .await?;
    observe(&shared, "logs", started);
    Ok(page)
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
    let sql = format!(
        "SELECT id, ts, body FROM {} FINAL{} {} LIMIT {} FORMAT RowBinary",
        shared.table,
        where_clause(&scan_conditions(&q)),
        order_by(q.order),
        q.limit + 1
    );
    let limit = q.limit;
    let page = select(&shared, sql, deadline, |r| {
        let mut page = ScanPage::default();
        let mut bytes = 0;
        while !r.is_empty() {
            if page.rows.len() == limit || bytes > SCAN_PAGE_BYTES {
                page.more = true;
                break;
            }
            let id = r.i64()?;
            let ts_us = r.i64()?;
            let body = r.string()?;
            bytes += body.len();
            page.rows.push(ScanRow { id, ts_us, body });
        }
        Ok(page)
    })
    .await?;
    observe(&shared, "loki_scan", started);
    Ok(page)
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
