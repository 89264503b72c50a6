//! The live feed (`GET /logs/tail`, Loki's tail) of the ClickHouse store: records stored
//! through any aggregator, found by polling ClickHouse while someone listens.
//!
//! Every [`FEED_POLL`] the store reads the rows whose id (receive time, see [`super`])
//! is past the last one published, less a slack of `CLICKHOUSE_TIMEOUT` + 1 s: an insert
//! can be acknowledged up to its timeout after its ids were given, so a row may appear
//! after rows with larger ids. Rows already published (by id, or by `dedup_key` for the
//! second copy of a race) are skipped. So the feed lags the commits by up to
//! [`FEED_POLL`] and the time of a read, and a late row comes after larger ids.
//!
//! Limits, documented in docs/log-aggregator.md: only records whose own time is within
//! [`FEED_LOOKBACK`] of now are followed (the read is a range of the primary index on
//! time; a backlog of old records delivered after an outage is stored and queryable,
//! not tailed), and a poll reads at most [`FEED_MAX_ROWS`]: past that rate, rows that
//! arrive late are skipped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::ChError;
use super::rows::Reader;
use super::sql::event_id_of;
use super::write::{first_id_at, NODE_BITS};
use super::Shared;
use crate::record::Record;
use crate::store::{CommittedRecord, RecordId};

/// How often ClickHouse is polled while the feed has subscribers.
pub const FEED_POLL: Duration = Duration::from_millis(250);
/// Records whose own time is older than this when they arrive are not followed.
pub const FEED_LOOKBACK: Duration = Duration::from_secs(300);
/// Rows read by one poll at most.
pub const FEED_MAX_ROWS: usize = 20_000;

/// Where the feed is.
struct Follow {
    /// The largest id published.
    after: RecordId,
    /// No row at or below this id is read again (raised when a poll was full).
    floor: RecordId,
    /// Ids published within the slack, and the keys they had.
    published: BTreeMap<RecordId, String>,
    keys: HashMap<String, RecordId>,
}

impl Follow {
    fn from_now() -> Follow {
        let now = first_id_at(chrono::Utc::now().timestamp_micros());
        Follow {
            after: now,
            floor: now,
            published: BTreeMap::new(),
            keys: HashMap::new(),
        }
    }

    /// Forgets what is below `low`: those rows are not read again.
    fn prune(&mut self, low: RecordId) {
        let kept = self.published.split_off(&low);
        for key in std::mem::replace(&mut self.published, kept).into_values() {
            self.keys.remove(&key);
        }
    }
}

/// The background loop; ends when the task is aborted.
pub async fn run(shared: Arc<Shared>) {
    let mut follow: Option<Follow> = None;
    loop {
        actix_rt::time::sleep(FEED_POLL).await;
        if !shared.feed.wanted() {
            // Nobody listens: nothing is read, and a new subscriber starts from now.
            follow = None;
            continue;
        }
        if shared.ready().await.is_err() {
            continue;
        }
        let f = follow.get_or_insert_with(Follow::from_now);
        match poll(&shared, f).await {
            Ok(records) => shared.feed.publish(records),
            Err(e) => {
                shared.status.observe::<()>(&Err(e.clone()));
                log::debug!(error = e.to_string().as_str(); "The live feed could not read ClickHouse; it retries.");
            }
        }
    }
}

/// Reads the new rows once; answers them in id order.
async fn poll(shared: &Shared, f: &mut Follow) -> Result<Vec<CommittedRecord>, ChError> {
    let now_us = chrono::Utc::now().timestamp_micros();
    let slack_us = (shared.config.timeout + Duration::from_secs(1)).as_micros() as i64;
    let low = (f.after - (slack_us << NODE_BITS)).max(f.floor);
    let since_us = now_us - FEED_LOOKBACK.as_micros() as i64;
    let sql = format!(
        "SELECT id, ts, dedup_key, service, level, request_id, message, body FROM {} \
         WHERE ts >= {since_us} AND id > {low} ORDER BY id LIMIT {FEED_MAX_ROWS} FORMAT RowBinary",
        shared.table
    );
    let body = shared
        .server
        .select(sql, Instant::now() + shared.config.timeout)
        .await?;
    let mut r = Reader::new(&body);
    let mut out = Vec::new();
    let mut read = 0;
    let mut last = low;
    while !r.is_empty() {
        read += 1;
        let id = r.i64()?;
        let ts_us = r.i64()?;
        let dedup_key = r.string()?;
        let service = r.nullable()?;
        let level = r.nullable()?;
        let request_id = r.nullable()?;
        let message = r.nullable()?;
        let body = r.string()?;
        last = last.max(id);
        if f.published.contains_key(&id) || f.keys.contains_key(&dedup_key) {
            continue;
        }
        f.published.insert(id, dedup_key.clone());
        f.keys.insert(dedup_key.clone(), id);
        out.push(CommittedRecord {
            id,
            record: Record {
                event_id: event_id_of(&dedup_key),
                service,
                level,
                request_id,
                message,
                ts_us,
                body,
            },
        });
    }
    f.after = f.after.max(last);
    if read == FEED_MAX_ROWS {
        f.floor = last;
    }
    f.prune((f.after - (slack_us << NODE_BITS)).max(f.floor));
    Ok(out)
}
