//! The one store interface: everything the HTTP layer asks of wherever records live.
//!
//! The handlers hold a [`Store`], a cheap clonable handle over one [`Backend`], and only
//! ever await its methods. How a backend does the work is its own business: the embedded
//! store ([`crate::embedded`]) runs actors on their own threads and answers through their
//! mailboxes; ClickHouse ([`crate::clickhouse`]) answers over HTTP from the worker's own
//! runtime.
//! That is why the futures are [`LocalBoxFuture`]s: they run on the actix-web worker
//! that awaits them, so a backend may use a client that is not `Send` (such as `awc`),
//! one per worker thread.
//!
//! What every backend promises, whatever it is built on:
//!
//! - [`Backend::ingest`] answers only once the batch is durable (as `SYNC_MODE` says),
//!   all or nothing, and a record whose `event_id` is already stored is counted as a
//!   duplicate and not stored again (also within the batch).
//! - Reads take a deadline: past it the backend stops the work (not only the wait) and
//!   answers [`StoreError::Timeout`], so one slow query cannot hold up the others for
//!   longer than that.
//! - [`Backend::subscribe`] is a live feed of the records as they are committed, in
//!   commit order, each with its [`RecordId`]; a subscriber that falls behind the feed's
//!   buffer is told how many batches it missed and can read them back by query.
//! - [`Backend::health`] is answered from state the backend keeps current, without I/O,
//!   so `/health` stays cheap and answers even while the store is busy.
//!
//! Adding an operation (for example counts per time bucket, label values, a scan for
//! LogQL) is a method here with its request and answer types beside it, implemented by
//! each backend; the handlers never learn more than this file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use tokio::sync::broadcast;

use crate::query::LogQuery;
use crate::record::Record;

/// A record's position in arrival order: unique, and larger for a later commit. Pages
/// are ordered by `(time, id)`, and a live feed can be resumed after an id.
pub type RecordId = i64;

/// Why a store operation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The part of the store that does this work is not running (stopped, or being
    /// restarted by its supervisor); the caller may retry later.
    #[error("the store {0} is not running; retry later")]
    Unavailable(&'static str),
    /// A read was stopped at its deadline.
    #[error("the query was stopped after {0:?}; narrow it (a shorter time range, fewer words) and retry")]
    Timeout(Duration),
    /// The store failed (a full disk, a damaged file...); nothing of the request was
    /// stored. The message says what failed.
    #[error("{0}")]
    Failed(String),
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Records stored by this batch.
    pub stored: u64,
    /// Records skipped because their `event_id` was already stored (earlier, or earlier
    /// in the same batch).
    pub duplicates: u64,
}

/// A page of `GET /logs` stops early (with a cursor) once its records exceed this many
/// bytes of JSON, so a page of large records stays a bounded answer, whatever the
/// backend.
pub const MAX_PAGE_BYTES: usize = 16 << 20;
/// A page of a scan (Loki's API) stops early once its bodies exceed this many bytes.
pub const SCAN_PAGE_BYTES: usize = 4 << 20;

/// One page of `GET /logs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub total: u64,
    /// The stored JSON texts, in page order.
    pub logs: Vec<String>,
    /// Position `(time in µs, id)` of the last record, when more records may follow.
    pub last: Option<(i64, RecordId)>,
}

/// `GET /logs/count`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub by_service: BTreeMap<String, u64>,
    pub by_level: BTreeMap<String, u64>,
}

/// How an absent service or level is shown in counts.
pub const UNKNOWN: &str = "unknown";

/// The store's state as `/health` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// The writer is running and its last write succeeded; `false` makes `/health`
    /// answer 503.
    pub writable: bool,
    /// Records stored now.
    pub stored: u64,
    /// Every part of the backend is alive. `false` is a failure the store cannot
    /// repair by itself (a thread of it died): the process then exits non-zero, so
    /// that its supervisor (Docker's restart policy) starts it again, and the store
    /// recovers from its files.
    pub running: bool,
    /// Problems an operator should know about that do not stop the store (a damaged
    /// file moved aside, for example), as sentences.
    pub problems: Vec<String>,
}

/// One record as committed, for the live feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRecord {
    pub id: RecordId,
    pub record: Record,
}

/// The records of one commit, in id order; duplicates are not in it.
pub type Committed = Arc<Vec<CommittedRecord>>;

/// Commits a subscriber may lag behind before it is told that it missed some.
pub const FEED_CAPACITY: usize = 1024;

/// The live feed of committed records; see [`Backend::subscribe`].
pub type Feed = broadcast::Receiver<Committed>;

/// The sending half a backend keeps; publishing costs nothing while nobody listens.
#[derive(Clone)]
pub struct FeedSender(broadcast::Sender<Committed>);

impl Default for FeedSender {
    fn default() -> FeedSender {
        FeedSender(broadcast::channel(FEED_CAPACITY).0)
    }
}

impl FeedSender {
    /// Whether anyone listens; a backend builds a [`Committed`] only then.
    pub fn wanted(&self) -> bool {
        self.0.receiver_count() > 0
    }

    pub fn publish(&self, committed: Vec<CommittedRecord>) {
        if !committed.is_empty() {
            // No receiver left between `wanted` and here: nobody to tell.
            let _ = self.0.send(Arc::new(committed));
        }
    }

    pub fn subscribe(&self) -> Feed {
        self.0.subscribe()
    }
}

/// Which records a [`Backend::scan`] reads: a time range in time order, narrowed by the
/// indexed `service` and `level` when given, continuing after a position. Loki's API
/// reads its ranges with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanQuery {
    pub service: Option<String>,
    /// Upper-cased, as stored.
    pub level: Option<String>,
    /// Inclusive, microseconds.
    pub since_us: i64,
    /// Exclusive, microseconds.
    pub until_us: i64,
    pub order: crate::query::Order,
    /// Continue after this `(time in µs, id)`.
    pub after: Option<(i64, RecordId)>,
    pub limit: usize,
}

/// One record of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRow {
    pub id: RecordId,
    pub ts_us: i64,
    pub body: String,
}

/// One page of a scan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanPage {
    pub rows: Vec<ScanRow>,
    /// More records may follow the last row.
    pub more: bool,
}

/// A future answered on the worker that awaits it.
pub type Answer<T> = LocalBoxFuture<'static, Result<T, StoreError>>;

/// Where records live. Implemented once per kind of store; see the module doc for what
/// every implementation promises.
pub trait Backend: Send + Sync + 'static {
    /// Stores a batch; answered once it is durable.
    fn ingest(&self, records: Vec<Record>) -> Answer<Inserted>;
    /// One page of the records matching `query`, and how many match in all.
    fn query(&self, query: LogQuery, deadline: Instant) -> Answer<Page>;
    /// Records stored, by service and by level.
    fn count(&self, deadline: Instant) -> Answer<Counts>;
    /// One page of the records of a time range, in time order, without counting them:
    /// paging through a range costs one index seek per page and the rows read.
    fn scan(&self, query: ScanQuery, deadline: Instant) -> Answer<ScanPage>;
    /// Deletes every record; answers how many there were.
    fn clear(&self) -> Answer<u64>;
    /// The store's state, from memory.
    fn health(&self) -> Health;
    /// A live feed of committed records, from now on.
    fn subscribe(&self) -> Feed;
    /// Stops the backend's own threads and connections once the HTTP server has
    /// stopped, after which every operation answers [`StoreError::Unavailable`].
    fn stop(&self);
}

/// The handle the HTTP layer holds: one backend, shared by every worker.
#[derive(Clone)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    pub fn new(backend: impl Backend) -> Store {
        Store(Arc::new(backend))
    }

    pub fn ingest(&self, records: Vec<Record>) -> Answer<Inserted> {
        self.0.ingest(records)
    }

    pub fn query(&self, query: LogQuery, deadline: Instant) -> Answer<Page> {
        self.0.query(query, deadline)
    }

    pub fn count(&self, deadline: Instant) -> Answer<Counts> {
        self.0.count(deadline)
    }

    pub fn scan(&self, query: ScanQuery, deadline: Instant) -> Answer<ScanPage> {
        self.0.scan(query, deadline)
    }

    pub fn clear(&self) -> Answer<u64> {
        self.0.clear()
    }

    pub fn health(&self) -> Health {
        self.0.health()
    }

    pub fn subscribe(&self) -> Feed {
        self.0.subscribe()
    }

    pub fn stop(&self) {
        self.0.stop()
    }
}
