//! The ClickHouse store behind the [`Backend`] interface (`STORE=clickhouse`): the
//! records live in one table of a ClickHouse server, and the aggregator keeps no state
//! of its own, so any number of aggregators can share the server behind a load
//! balancer.
//!
//! - [`http`]: statements over ClickHouse's HTTP interface, with their time limits, and
//!   its errors sorted into the store's (down → 503, past the deadline → timeout).
//! - [`rows`]: the `RowBinary` format of inserts and answers.
//! - [`sql`]: quoting, the schema, the filters as SQL.
//! - [`write`]: a batch checked against what is stored, given ids, inserted.
//! - [`read`]: totals, counts, clear; [`page`]: pages of rows, each record once.
//! - [`feed`]: the live feed, by polling for new rows while someone listens.
//! - [`upkeep`]: the table created, health kept current, retention.
//!
//! **Exactly once across aggregators.** A batch retried through another aggregator must
//! be stored once, and nothing may show twice. Two mechanisms, one for the common case
//! and one for the race:
//! 1. Before an insert, the aggregator reads which of the batch's `event_id`s are
//!    stored already, at any time (a record re-sent under another `timestamp` is still
//!    the one stored; the table is ordered by time, so the look-up reads the
//!    `dedup_key` column of the whole table, a cost that grows with it), and leaves
//!    them out: the answer counts them as
//!    duplicates, as the other stores do. This is every retry that follows an
//!    acknowledged or failed attempt.
//! 2. Two copies can still be inserted when both attempts are in flight at once (a
//!    sender that timed out and retried elsewhere while the first insert was still
//!    running). The table is a `ReplacingMergeTree` ordered by `(ts, dedup_key)`,
//!    where `dedup_key` is the `event_id`: both copies have the same key (the record
//!    text, so its own `timestamp`, is the same), background merges keep one, counts
//!    and totals use `FINAL` (which merges what the background has not yet), and pages
//!    leave out every copy but the first ([`page`]), so no answer shows both. The copy
//!    kept is the first stored (`ver` is larger for a smaller id).
//!
//! The cost: `FINAL` makes ClickHouse merge the parts of the range read on the sorting
//! key before filtering: measured on 18.16 with 2,000,000 records in 10 parts, a count
//! took 0.4–0.6 s instead of 0.1–0.2 s, counts by service and level 1.2–1.5 s instead
//! of 0.3–0.4 s (less once merges have run). Pages avoid it (three small reads, see
//! [`page`]). The look-up before an insert costs one small read per batch. A record
//! with an `event_id` but no `timestamp` of its own is timed by its arrival, which
//! differs between the two attempts of a race, so that race (and only it) can store
//! such a record twice: the sidecars' records carry their service's `timestamp`.
//!
//! **Ids.** A [`RecordId`](crate::store::RecordId) is the receive time in µs shifted
//! left by 10 bits, plus 10 random bits chosen by each aggregator at start; within one
//! aggregator the µs only grow (one per record), so ids are unique per aggregator and
//! grow with the receive time across aggregators. Two aggregators share an id only if
//! they drew the same 10 bits and stamped the same µs (and then only the order of the
//! two records on a cursor's boundary is affected). They fit an `i64` until 2255.
//!
//! **Acknowledgement and failure.** A batch is acknowledged once ClickHouse has
//! answered its `INSERT` (ClickHouse writes the part to its files before it answers;
//! without an fsync unless the server is set to). When
//! ClickHouse does not answer, the ingest fails with [`StoreError::Unavailable`] (503;
//! the sidecar keeps the batch in its file and retries), and `/health` answers 503
//! naming ClickHouse, from state kept by [`upkeep`] and by every statement.
//!
//! **Retention** runs in every aggregator (it is idempotent): days older than
//! `RETENTION_MAX_AGE` are dropped as whole partitions, the rest of that age by an
//! `ALTER TABLE ... DELETE` (a mutation, which rewrites the parts it touches);
//! `RETENTION_MAX_RECORDS` deletes the oldest by arrival the same way. ClickHouse 18.16
//! has no `TTL`, so no version difference there.

pub mod feed;
pub mod http;
pub mod page;
pub mod read;
pub mod rows;
pub mod sql;
pub mod upkeep;
pub mod write;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::task::JoinHandle;

use self::http::{ChError, Server};
use self::sql::Capabilities;
use self::write::Ids;
use crate::config::{AggregatorConfig, ClickHouseConfig, Retention};
use crate::metrics::Metrics;
use crate::query::LogQuery;
use crate::record::Record;
use crate::store::{
    Answer, Backend, Counts, Feed, FeedSender, Health, Inserted, Page, ScanPage, ScanQuery,
    StoreError,
};

/// What every operation and background task of the store shares.
pub struct Shared {
    pub server: Server,
    pub config: ClickHouseConfig,
    /// `` `database`.`table` ``, ready for SQL.
    pub table: String,
    pub retention: Retention,
    pub metrics: Metrics,
    pub feed: FeedSender,
    pub ids: Ids,
    pub status: Status,
    /// Set once the table is known to exist (and the server's version is known).
    caps: Mutex<Option<Capabilities>>,
}

/// ClickHouse's state as `/health` reports it, kept current by every statement and by
/// the periodic check.
#[derive(Debug, Default)]
pub struct Status {
    reachable: AtomicBool,
    problem: Mutex<Option<String>>,
    stored: AtomicU64,
    /// Local writes (ingests, clears, retention) begun or ended so far, and those under
    /// way: a background count that raced one is not applied, since it may or may not
    /// include it.
    writes: AtomicU64,
    writing: AtomicU64,
    stopped: AtomicBool,
}

impl Status {
    /// The server answered.
    pub fn up(&self) {
        self.reachable.store(true, Ordering::Relaxed);
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The server did not answer (or the table cannot be made).
    pub fn down(&self, error: &ChError) {
        self.reachable.store(false, Ordering::Relaxed);
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("clickhouse is failing: {error}"));
    }

    /// Sorts a statement's outcome into the state: only a server that does not answer
    /// makes the store unwritable; a refused statement is that statement's problem.
    pub fn observe<T>(&self, result: &Result<T, ChError>) {
        match result {
            Ok(_) => self.up(),
            Err(e) if e.is_down() => self.down(e),
            Err(_) => {}
        }
    }

    /// Marks a write under way until the guard is dropped (after its count is added).
    pub fn begin_write(&self) -> Writing<'_> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.writing.fetch_add(1, Ordering::SeqCst);
        Writing(self)
    }

    /// A mark that no write is under way, to compare after a count; `None` while one is.
    pub fn quiet(&self) -> Option<u64> {
        let w = self.writes.load(Ordering::SeqCst);
        (self.writing.load(Ordering::SeqCst) == 0).then_some(w)
    }

    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    pub fn set_stored(&self, n: u64) {
        self.stored.store(n, Ordering::Relaxed);
    }

    pub fn add_stored(&self, n: u64) {
        self.stored.fetch_add(n, Ordering::Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// A local write under way; see [`Status::begin_write`].
pub struct Writing<'a>(&'a Status);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.writing.fetch_sub(1, Ordering::SeqCst);
        self.0.writes.fetch_add(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// The server's capabilities, creating the table first if that has not been done
    /// (at start the server may still be coming up; the first statement after makes it).
    pub async fn ready(&self) -> Result<Capabilities, StoreError> {
        if self.status.is_stopped() {
            return Err(StoreError::Unavailable("ClickHouse store (stopped)"));
        }
        if let Some(caps) = *self.caps.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(caps);
        }
        match upkeep::create_table(self).await {
            Ok(caps) => {
                self.status.up();
                *self.caps.lock().unwrap_or_else(|e| e.into_inner()) = Some(caps);
                Ok(caps)
            }
            Err(e) => {
                // Whatever the reason (down, a wrong password), the store cannot work.
                self.status.down(&e);
                Err(match e {
                    ChError::Refused { .. } | ChError::Answer(_) => {
                        StoreError::Unavailable("ClickHouse table")
                    }
                    e => e.into_store(),
                })
            }
        }
    }

    /// What `/health` says is wrong, if anything.
    pub fn health_problem(&self) -> Option<String> {
        self.status
            .problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The table was dropped behind the store's back: make it again on next use.
    pub fn forget_table(&self) {
        *self.caps.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The running ClickHouse store: the shared state and its background tasks.
pub struct ClickHouse {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ClickHouse {
    /// Starts the store's background tasks on the current (main) thread; the table is
    /// created by the first of them, or by the first request, once ClickHouse answers.
    pub fn start(config: &AggregatorConfig, metrics: &Metrics) -> anyhow::Result<ClickHouse> {
        let ch = config
            .clickhouse
            .clone()
            .ok_or_else(|| anyhow::anyhow!("STORE=clickhouse needs CLICKHOUSE_URL"))?;
        let shared = Arc::new(Shared {
            server: Server::new(&ch),
            table: format!("`{}`.`{}`", ch.database, ch.table),
            config: ch,
            retention: config.retention,
            metrics: metrics.clone(),
            feed: FeedSender::default(),
            ids: Ids::new(),
            status: Status::default(),
            caps: Mutex::new(None),
        });
        log::info!(
            url = shared.config.url.as_str(),
            table = shared.table.as_str(),
            node = shared.ids.node();
            "ClickHouse store: the table is created when the server first answers."
        );
        let tasks = vec![
            actix_rt::spawn(upkeep::run(shared.clone())),
            actix_rt::spawn(feed::run(shared.clone())),
        ];
        Ok(ClickHouse {
            shared,
            tasks: Mutex::new(tasks),
        })
    }
}

impl Backend for ClickHouse {
    fn ingest(&self, records: Vec<Record>) -> Answer<Inserted> {
        Box::pin(write::ingest(self.shared.clone(), records))
    }

    fn query(&self, query: LogQuery, deadline: Instant) -> Answer<Page> {
        Box::pin(read::query(self.shared.clone(), query, deadline))
    }

    fn count(&self, deadline: Instant) -> Answer<Counts> {
        Box::pin(read::count(self.shared.clone(), deadline))
    }

    fn scan(&self, query: ScanQuery, deadline: Instant) -> Answer<ScanPage> {
        Box::pin(read::scan(self.shared.clone(), query, deadline))
    }

    fn clear(&self) -> Answer<u64> {
        Box::pin(read::clear(self.shared.clone()))
    }

    fn health(&self) -> Health {
        let status = &self.shared.status;
        let problem = self.shared.health_problem();
        Health {
            writable: status.reachable.load(Ordering::Relaxed) && !status.is_stopped(),
            stored: status.stored(),
            // Nothing of this store can die: a server that is down is `writable: false`,
            // and the aggregator waits for it rather than restarting.
            running: true,
            problems: problem.into_iter().collect(),
        }
    }

    fn subscribe(&self) -> Feed {
        self.shared.feed.subscribe()
    }

    fn stop(&self) {
        self.shared.status.stopped.store(true, Ordering::Relaxed);
        for task in std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner())) {
            task.abort();
        }
    }
}
