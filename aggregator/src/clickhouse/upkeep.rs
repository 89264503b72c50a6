//! What the store does by itself, in the background of every aggregator: the table made
//! when the server first answers, `/health`'s state kept current by a check every
//! [`CHECK_INTERVAL`], and retention every `RETENTION_INTERVAL`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::ChError;
use super::rows::Reader;
use super::sql::{self, quote, Capabilities};
use super::Shared;

/// How often ClickHouse is asked whether it is up and how many records it holds.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
const DAY_US: i64 = 86_400_000_000;

/// Creates the database and the table when missing; answers what the server can do.
pub async fn create_table(shared: &Shared) -> Result<Capabilities, ChError> {
    let timeout = shared.config.timeout;
    let version = shared
        .server
        .execute("SELECT version()".to_owned(), timeout)
        .await?;
    let version = String::from_utf8_lossy(&version).trim().to_owned();
    let caps = Capabilities::of_version(&version);
    shared
        .server
        .execute(
            format!("CREATE DATABASE IF NOT EXISTS `{}`", shared.config.database),
            timeout,
        )
        .await?;
    shared
        .server
        .execute(sql::create_table(&shared.table, caps), timeout)
        .await?;
    log::info!(
        version = version.as_str(),
        table = shared.table.as_str(),
        codecs = caps.codecs;
        "ClickHouse answered; the table is ready."
    );
    Ok(caps)
}

/// The background loop; ends when the task is aborted by [`super::ClickHouse`]'s stop.
pub async fn run(shared: Arc<Shared>) {
    let tick = CHECK_INTERVAL.min(shared.retention.interval);
    let mut next_check = Instant::now();
    // Any interval is accepted; one too long to add to a clock means "not this year".
    let after = |d: Duration| {
        let now = Instant::now();
        now.checked_add(d)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
    };
    let mut next_retention = after(shared.retention.interval);
    let mut was_up = true;
    loop {
        let now = Instant::now();
        if now >= next_check {
            next_check = now + CHECK_INTERVAL;
            let up = check(&shared).await;
            if up != was_up {
                match shared.health_problem() {
                    Some(p) if !up => {
                        log::warn!(problem = p.as_str(); "ClickHouse is failing; ingest answers 503 until it is back.")
                    }
                    _ => log::info!("ClickHouse answers again."),
                }
                was_up = up;
            }
        }
        if now >= next_retention {
            next_retention = after(shared.retention.interval);
            if let Err(e) = retention(&shared).await {
                log::warn!(error = e.to_string().as_str(); "Retention failed; it will run again.");
            }
        }
        actix_rt::time::sleep(tick).await;
    }
}

/// Asks the server for its count; answers whether it is up.
async fn check(shared: &Shared) -> bool {
    if shared.ready().await.is_err() {
        return false;
    }
    let quiet = shared.status.quiet();
    let answer = shared
        .server
        .select(
            format!("SELECT count() FROM {} FORMAT RowBinary", shared.table),
            Instant::now() + shared.config.timeout,
        )
        .await;
    shared.status.observe(&answer);
    match answer {
        Ok(body) => {
            // A count that raced a local write may not include it; the next one will.
            if let Ok(n) = Reader::new(&body).u64() {
                if quiet.is_some() && quiet == shared.status.quiet() {
                    shared.status.set_stored(n);
                    shared.metrics.records_stored.set(n as i64);
                }
            }
            true
        }
        Err(e) => {
            // A server that takes connections but does not answer (hung, stopped,
            // overloaded past CLICKHOUSE_TIMEOUT) is as failing for `/health` as one
            // that refuses them; a slow read elsewhere is only that read's timeout.
            if matches!(e, ChError::Timeout(_)) {
                shared.status.down(&e);
            }
            let _ = super::write::refused(shared, e);
            false
        }
    }
}

async fn number(shared: &Shared, sql: String) -> Result<u64, ChError> {
    let body = shared
        .server
        .select(sql, Instant::now() + shared.config.timeout)
        .await?;
    Reader::new(&body).u64()
}

/// One retention pass: by age (whole days dropped, the rest deleted), then by count.
/// Nothing is done while a deletion of an earlier pass is still being applied, so each
/// record is counted once in `aggregator_records_pruned_total`.
async fn retention(shared: &Shared) -> Result<(), ChError> {
    let max_age = shared.retention.max_age;
    let max_records = shared.retention.max_records;
    if (max_age.is_none() && max_records.is_none()) || shared.ready().await.is_err() {
        return Ok(());
    }
    let t = &shared.table;
    let timeout = shared.config.timeout;
    let (db, name) = (quote(&shared.config.database), quote(&shared.config.table));
    let pending = number(
        shared,
        format!("SELECT toUInt64(count()) FROM system.mutations WHERE database = {db} AND table = {name} AND is_done = 0 FORMAT RowBinary"),
    )
    .await?;
    if pending > 0 {
        return Ok(());
    }
    let mut pruned = 0;
    if let Some(age) = max_age {
        let age_us = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
        let cutoff = chrono::Utc::now().timestamp_micros().saturating_sub(age_us);
        let old = number(
            shared,
            format!("SELECT count() FROM {t} FINAL WHERE ts < {cutoff} FORMAT RowBinary"),
        )
        .await?;
        if old > 0 {
            // Partition ids are the days as YYYYMMDD; days before the cutoff's go whole.
            let day = chrono::DateTime::from_timestamp_micros(cutoff.div_euclid(DAY_US) * DAY_US)
                .map(|d| d.format("%Y%m%d").to_string())
                .unwrap_or_default();
            let parts = shared
                .server
                .select(
                    format!("SELECT DISTINCT partition_id FROM system.parts WHERE database = {db} AND table = {name} AND active AND partition_id < {} FORMAT RowBinary", quote(&day)),
                    Instant::now() + timeout,
                )
                .await?;
            let mut r = Reader::new(&parts);
            while !r.is_empty() {
                let id = r.string()?;
                shared
                    .server
                    .execute(
                        format!("ALTER TABLE {t} DROP PARTITION ID {}", quote(&id)),
                        timeout,
                    )
                    .await?;
            }
            let rest = number(
                shared,
                format!("SELECT count() FROM {t} WHERE ts < {cutoff} FORMAT RowBinary"),
            )
            .await?;
            pruned += old;
            if rest > 0 {
                shared
                    .server
                    .execute(
                        format!("ALTER TABLE {t} DELETE WHERE ts < {cutoff}"),
                        timeout,
                    )
                    .await?;
            }
            if rest > 0 {
                // Counted by the next pass, once this deletion is applied.
                finish(shared, pruned);
                return Ok(());
            }
        }
    }
    if let Some(max) = max_records {
        let total = number(
            shared,
            format!("SELECT count() FROM {t} FINAL FORMAT RowBinary"),
        )
        .await?;
        if total > max {
            let body = shared
                .server
                .select(
                    format!("SELECT id FROM {t} FINAL ORDER BY id DESC LIMIT 1 OFFSET {max} FORMAT RowBinary"),
                    Instant::now() + timeout,
                )
                .await?;
            let cutoff = Reader::new(&body).i64()?;
            // Counted against the cutoff itself: a batch stored meanwhile is not deleted.
            let doomed = number(
                shared,
                format!("SELECT count() FROM {t} FINAL WHERE id <= {cutoff} FORMAT RowBinary"),
            )
            .await?;
            shared
                .server
                .execute(
                    format!("ALTER TABLE {t} DELETE WHERE id <= {cutoff}"),
                    timeout,
                )
                .await?;
            pruned += doomed;
        }
    }
    finish(shared, pruned);
    Ok(())
}

/// Counts what a pass deleted. The number stored is left to the next check: a deletion
/// by mutation is applied in the background, and until then the records are still there.
fn finish(shared: &Shared, pruned: u64) {
    if pruned > 0 {
        shared.metrics.records_pruned.inc_by(pruned);
        log::info!(records = pruned; "Retention deleted the oldest records.");
    }
}
