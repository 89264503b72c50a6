//! The log store: one SQLite database in WAL mode, written by one connection and read by
//! others at the same time.
//!
//! - `logs` holds each record's original JSON and the columns queries filter on, each
//!   behind an index; `event_id` is unique, which is what makes ingestion idempotent.
//! - `logs_text` is a contentless FTS5 index (the text lives once, in `logs`) of each
//!   record's `message` and `request_id`, keyed by the record's id. Request ids are
//!   random, and a B-tree over random keys costs a page write per record at 1,000,000
//!   records (ingest fell from about 340,000 to 90,000 records/s of CPU in a
//!   measurement); FTS5 merges its segments in bulk, so the id is found through it and
//!   then checked exactly against the column.
//! - `counts` keeps the number of records per (service, level), updated in the same
//!   transaction as the records, so totals, `/logs/count` and `/health` cost a few rows
//!   instead of a scan.
//!
//! Batches are stored inside one transaction (several at once for group commit): when
//! [`Db::insert_batches`] returns, they are committed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};

use super::borrowed::{BorrowedStatement, Param};
use crate::config::SyncMode;
use crate::record::Record;
use crate::store::{Counts, Inserted, StoreError, UNKNOWN};

/// The database file inside `DATA_DIR`.
pub const DB_FILE: &str = "logs.db";
/// Bumped when the schema changes incompatibly; a newer file is refused, not damaged.
pub const SCHEMA_VERSION: i64 = 1;
/// How long a reader waits on a lock (only a checkpoint can briefly hold one).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache of each connection, in KiB.
pub const CACHE_KIB: i64 = 64 * 1024;
/// WAL pages after which the writer checkpoints by itself. The checkpointer normally
/// keeps the WAL far smaller; this is the safety net if it falls behind (4 KiB pages:
/// 256 MiB).
pub const WRITER_AUTOCHECKPOINT_PAGES: i64 = 65_536;
/// The WAL file is truncated back to this size after a checkpoint lets it restart.
pub const WAL_SIZE_LIMIT_BYTES: i64 = 64 << 20;
/// FTS5 merges this many segments of one level into one segment of the next (its
/// default is 4). Every commit adds a small segment, so merging is most of the text
/// index's cost during ingest; merging 16 at a time rewrites each entry about half as
/// often. Measured, storing 1,000,000 records from empty: 167,000 records/s of CPU
/// with 4, 176,000 with 8, 191,000 with 16 (32 is no better: FTS5's `crisismerge`, 16,
/// merges a level of 16 anyway). A search reads at most 15 segments per level instead
/// of 3, which the query benchmark shows is still far within its target.
pub const FTS_AUTOMERGE: i64 = 16;
/// A level with this many segments is merged at once, inside one commit (FTS5's
/// default is 16). Left at 16 beside [`FTS_AUTOMERGE`] = 16, a level was merged whole
/// in one commit instead of a little at each, and the 99th percentile of a 1,000-record
/// transaction went from 16 ms to 54 ms; with 64, the incremental merges keep the
/// levels small and it is 13 ms (1,000,000 records from empty, the same throughput).
pub const FTS_CRISISMERGE: i64 = 64;
/// Rows per multi-row `INSERT` into `logs`: the work that every statement costs
/// (binding aside) is paid once per this many records, and the indexes are updated in
/// runs. 50 × 7 parameters stays far below SQLite's limit of 32,766. Measured (50,000
/// records): 12% fewer instructions than one row per statement; 100 rows were slightly
/// worse than 50. The text index keeps one row per statement: a multi-row statement
/// opens a savepoint on it, and FTS5 writes its pending entries out as a new segment at
/// every savepoint, which cost far more merging than the statements saved.
pub const ROWS_PER_STATEMENT: usize = 50;
/// A page stops early (with a cursor) once its records exceed this many bytes of JSON,
/// so a page of large records stays a bounded answer.
pub const MAX_PAGE_BYTES: usize = 16 << 20;
/// SQLite virtual-machine steps between two checks of a reader's deadline: about a
/// tenth of a millisecond of work, so a query stops within a millisecond of it.
const PROGRESS_STEPS: std::ffi::c_int = 10_000;
/// The key `counts` uses for a record without a service or a level.
const NONE_KEY: &str = "";
/// A text or request-id search reads its `m` matches and sorts them (about `m` steps),
/// or walks the time index newest first, checking each record against the matches, until
/// a page is full (about `limit × records / m` steps). The two cost the same when
/// `m = √(limit × records)`: fewer matches are sorted, more are walked. This is the
/// floor of that threshold, so that small stores always sort.
pub const SPARSE_MATCHES_MIN: u64 = 1_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    service TEXT,
    level TEXT,
    request_id TEXT,
    event_id TEXT,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS logs_event_id ON logs(event_id) WHERE event_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS logs_ts ON logs(ts);
CREATE INDEX IF NOT EXISTS logs_service_ts ON logs(service, ts);
CREATE INDEX IF NOT EXISTS logs_level_ts ON logs(level, ts);
CREATE VIRTUAL TABLE IF NOT EXISTS logs_text USING fts5(
    message, request_id, content='', contentless_delete=1
);
CREATE TABLE IF NOT EXISTS counts (
    service TEXT NOT NULL,
    level TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (service, level)
) WITHOUT ROWID;
";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create data directory {path}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this build's {SCHEMA_VERSION}"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

impl DbError {
    /// Whether a query was stopped by its deadline (see [`Db::set_deadline`]).
    pub fn is_interrupt(&self) -> bool {
        matches!(self, DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::OperationInterrupted)
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        StoreError::Failed(e.to_string())
    }
}

pub struct Db {
    /// The writer's insert statements, prepared on first use. Declared before `conn`
    /// so that they are finalized before it closes.
    inserts: Option<Inserts>,
    pub(super) conn: Connection,
    /// [`SPARSE_MATCHES_MIN`]; tests lower it to reach the other plan with few records.
    pub(super) sparse_matches_min: u64,
    /// When the statements of a reader must stop (see [`Db::set_deadline`]).
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl Db {
    /// Opens (creating when missing) the database for writing; only one writer at a time.
    pub fn open_writer(dir: &Path, sync: SyncMode) -> Result<Db, DbError> {
        std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(DbError::NewerSchema { path, found });
        }
        // WAL: readers never block the writer nor the writer the readers.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", sync_pragma(sync))?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpoints (copying the WAL into the database, with fsyncs) run on the
        // checkpointer's connection, so the writer does not wait for them: measured, the
        // writer went from about 175,000 to 200,000 records/s of CPU and gained about 40%
        // in wall time.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
        conn.execute_batch(SCHEMA)?;
        // Kept in the index's own config table; set on every open so that a store made
        // before this setting gets it too.
        conn.execute(
            "INSERT INTO logs_text (logs_text, rank) VALUES ('automerge', ?1)",
            [FTS_AUTOMERGE],
        )?;
        conn.execute(
            "INSERT INTO logs_text (logs_text, rank) VALUES ('crisismerge', ?1)",
            [FTS_CRISISMERGE],
        )?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Db {
            conn,
            sparse_matches_min: SPARSE_MATCHES_MIN,
            inserts: None,
            deadline: Arc::default(),
        })
    }

    /// Opens the connection that checkpoints the WAL; the writer must have created it.
    pub fn open_checkpointer(dir: &Path, sync: SyncMode) -> Result<Db, DbError> {
        let conn = Connection::open_with_flags(
            dir.join(DB_FILE),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", sync_pragma(sync))?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
        Ok(Db {
            conn,
            sparse_matches_min: SPARSE_MATCHES_MIN,
            inserts: None,
            deadline: Arc::default(),
        })
    }

    /// Copies committed WAL pages into the database without blocking the writer or the
    /// readers (`PASSIVE`); returns the WAL's frames and how many are now copied.
    pub fn checkpoint(&self) -> Result<(i64, i64), DbError> {
        Ok(self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })?)
    }

    /// Opens the database for queries; the writer must have created it.
    pub fn open_reader(dir: &Path) -> Result<Db, DbError> {
        let conn = Connection::open_with_flags(
            dir.join(DB_FILE),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
        let watched = deadline.clone();
        conn.progress_handler(
            PROGRESS_STEPS,
            Some(move || {
                let at = *watched.lock().unwrap_or_else(|e| e.into_inner());
                at.is_some_and(|at| Instant::now() >= at)
            }),
        );
        Ok(Db {
            conn,
            sparse_matches_min: SPARSE_MATCHES_MIN,
            inserts: None,
            deadline,
        })
    }

    /// Statements on a reader stop with an interrupt error (see [`DbError::is_interrupt`])
    /// once `at` has passed; `None` lifts the limit.
    pub fn set_deadline(&self, at: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Stores a batch in one transaction; a record whose `event_id` is stored is skipped.
    pub fn insert(&mut self, records: &[Record]) -> Result<Inserted, DbError> {
        Ok(self.insert_batches(&[records], None)?[0])
    }

    /// Stores several batches in one transaction (group commit), each counted on its
    /// own, in order: a record repeated in a later batch is that batch's duplicate.
    ///
    /// Records go in [`ROWS_PER_STATEMENT`] at a time. The writer gives each row its id
    /// (one past the largest, in order), so the ids of the rows that a multi-row
    /// `INSERT OR IGNORE` skipped are known without asking row by row: when fewer rows
    /// than given were stored, the ids present in the chunk's range say which.
    ///
    /// With `feed`, once the transaction is committed, it receives each stored record
    /// as `(batch, index in the batch, id)`, in id order (for the live feed).
    pub fn insert_batches(
        &mut self,
        batches: &[&[Record]],
        feed: Option<&mut Vec<(usize, usize, i64)>>,
    ) -> Result<Vec<Inserted>, DbError> {
        let mut kept_at = Vec::new();
        if self.inserts.is_none() {
            self.inserts = Some(Inserts::prepare(&self.conn)?);
        }
        let Some(inserts) = self.inserts.as_mut() else {
            unreachable!("prepared above");
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut outcome = Vec::with_capacity(batches.len());
        let mut counts: HashMap<(&str, &str), i64> = HashMap::new();
        {
            // Only this connection writes, and the transaction holds the write lock, so
            // no other row can take these ids.
            let mut next_id: i64 =
                tx.query_row("SELECT coalesce(max(id), 0) + 1 FROM logs", [], |r| {
                    r.get(0)
                })?;
            let mut present =
                tx.prepare_cached("SELECT id FROM logs WHERE id >= ?1 AND id < ?2")?;
            let mut stored_in_chunk = Vec::with_capacity(ROWS_PER_STATEMENT);
            let mut params = Vec::with_capacity(ROWS_PER_STATEMENT * ROW_PARAMS);
            for (b, records) in batches.iter().enumerate() {
                let mut done = Inserted::default();
                for (c, chunk) in records.chunks(ROWS_PER_STATEMENT).enumerate() {
                    let first = next_id;
                    next_id += chunk.len() as i64;
                    let stored = if chunk.len() == ROWS_PER_STATEMENT {
                        params.clear();
                        row_params(&mut params, first, chunk);
                        inserts.rows_many.execute(&params)?
                    } else {
                        let mut n = 0;
                        for (id, r) in (first..).zip(chunk) {
                            params.clear();
                            row_params(&mut params, id, std::slice::from_ref(r));
                            n += inserts.rows_one.execute(&params)?;
                        }
                        n
                    };
                    stored_in_chunk.clear();
                    if stored == chunk.len() {
                        stored_in_chunk.resize(chunk.len(), true);
                    } else {
                        stored_in_chunk.resize(chunk.len(), false);
                        let mut rows = present.query([first, next_id])?;
                        while let Some(row) = rows.next()? {
                            let id: i64 = row.get(0)?;
                            stored_in_chunk[(id - first) as usize] = true;
                        }
                    }
                    let indexes = c * ROWS_PER_STATEMENT..;
                    for (((id, r), &kept), i) in
                        (first..).zip(chunk).zip(&stored_in_chunk).zip(indexes)
                    {
                        if !kept {
                            done.duplicates += 1;
                            continue;
                        }
                        done.stored += 1;
                        if feed.is_some() {
                            kept_at.push((b, i, id));
                        }
                        let key = (
                            r.service.as_deref().unwrap_or(NONE_KEY),
                            r.level.as_deref().unwrap_or(NONE_KEY),
                        );
                        *counts.entry(key).or_default() += 1;
                        if r.message.is_some() || r.request_id.is_some() {
                            inserts.text.execute(&[
                                Param::Int(id),
                                Param::Text(r.message.as_deref()),
                                Param::Text(r.request_id.as_deref()),
                            ])?;
                        }
                    }
                }
                outcome.push(done);
            }
            add_counts(&tx, &counts)?;
        }
        tx.commit()?;
        if let Some(f) = feed {
            *f = kept_at;
        }
        Ok(outcome)
    }

    /// Records stored, by service and by level.
    pub fn counts(&self) -> Result<Counts, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT service, level, n FROM counts WHERE n > 0")?;
        let mut rows = stmt.query([])?;
        let mut c = Counts::default();
        while let Some(row) = rows.next()? {
            let service: String = row.get(0)?;
            let level: String = row.get(1)?;
            let n = row.get::<_, i64>(2)?.max(0) as u64;
            c.total += n;
            *c.by_service.entry(shown(service)).or_default() += n;
            *c.by_level.entry(shown(level)).or_default() += n;
        }
        Ok(c)
    }

    /// The number of records stored.
    pub fn stored(&self) -> Result<u64, DbError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT coalesce(sum(n), 0) FROM counts")?
            .query_row([], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Deletes every record; returns how many there were.
    pub fn clear(&mut self) -> Result<u64, DbError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute("DELETE FROM logs", [])?;
        tx.execute(
            "INSERT INTO logs_text (logs_text) VALUES ('delete-all')",
            [],
        )?;
        tx.execute("DELETE FROM counts", [])?;
        tx.commit()?;
        Ok(n as u64)
    }

    /// Deletes at most `chunk` of the records that retention no longer keeps: the oldest
    /// (by arrival) beyond `max_records`, then those whose time is before `min_ts_us`.
    /// Returns how many went; fewer than `chunk` means nothing is left to delete.
    pub fn prune(
        &mut self,
        max_records: Option<u64>,
        min_ts_us: Option<i64>,
        chunk: usize,
    ) -> Result<u64, DbError> {
        let mut victims: Vec<(i64, String, String)> = Vec::new();
        if let Some(max) = max_records {
            let excess = self.stored()?.saturating_sub(max);
            let n = excess.min(chunk as u64);
            if n > 0 {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT id, coalesce(service, ''), coalesce(level, '') FROM logs
                     ORDER BY id LIMIT ?",
                )?;
                let rows = stmt.query_map([n as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                for row in rows {
                    victims.push(row?);
                }
            }
        }
        if let (Some(min), true) = (min_ts_us, victims.len() < chunk) {
            let room = (chunk - victims.len()) as i64;
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, coalesce(service, ''), coalesce(level, '') FROM logs
                 WHERE ts < ? ORDER BY ts LIMIT ?",
            )?;
            let rows = stmt.query_map([min, room], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            for row in rows {
                victims.push(row?);
            }
        }
        if victims.is_empty() {
            return Ok(0);
        }
        victims.sort_unstable_by_key(|v| v.0);
        victims.dedup_by_key(|v| v.0);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut counts: HashMap<(&str, &str), i64> = HashMap::new();
        {
            let mut row = tx.prepare_cached("DELETE FROM logs WHERE id = ?")?;
            let mut text = tx.prepare_cached("DELETE FROM logs_text WHERE rowid = ?")?;
            for (id, service, level) in &victims {
                if row.execute([id])? == 1 {
                    text.execute([id])?;
                    *counts.entry((service, level)).or_default() -= 1;
                }
            }
            add_counts(&tx, &counts)?;
        }
        tx.commit()?;
        Ok(victims.len() as u64)
    }

    /// The SQLite library version, for the start-up log.
    pub fn sqlite_version() -> &'static str {
        rusqlite::version()
    }
}

/// `INSERT OR IGNORE` of `n` rows into `logs`, ids given.
fn rows_sql(n: usize) -> String {
    let mut sql =
        "INSERT OR IGNORE INTO logs (id, ts, service, level, request_id, event_id, body) VALUES "
            .to_owned();
    for i in 0..n {
        sql.push_str(if i == 0 {
            "(?,?,?,?,?,?,?)"
        } else {
            ",(?,?,?,?,?,?,?)"
        });
    }
    sql
}

/// Parameters of one row of [`rows_sql`].
const ROW_PARAMS: usize = 7;

/// Appends the parameters of `records` for a statement of [`rows_sql`], with ids from
/// `first` on.
fn row_params<'a>(params: &mut Vec<Param<'a>>, first: i64, records: &'a [Record]) {
    for (id, r) in (first..).zip(records) {
        params.extend([
            Param::Int(id),
            Param::Int(r.ts_us),
            Param::Text(r.service.as_deref()),
            Param::Text(r.level.as_deref()),
            Param::Text(r.request_id.as_deref()),
            Param::Text(r.event_id.as_deref()),
            Param::Text(Some(&r.body)),
        ]);
    }
}

/// The writer's insert statements.
struct Inserts {
    /// [`ROWS_PER_STATEMENT`] rows into `logs`.
    rows_many: BorrowedStatement,
    /// One row into `logs`, for the end of a batch.
    rows_one: BorrowedStatement,
    /// One row into the text index.
    text: BorrowedStatement,
}

impl Inserts {
    fn prepare(conn: &Connection) -> Result<Inserts, rusqlite::Error> {
        Ok(Inserts {
            rows_many: BorrowedStatement::prepare(conn, &rows_sql(ROWS_PER_STATEMENT))?,
            rows_one: BorrowedStatement::prepare(conn, &rows_sql(1))?,
            text: BorrowedStatement::prepare(
                conn,
                "INSERT INTO logs_text (rowid, message, request_id) VALUES (?1, ?2, ?3)",
            )?,
        })
    }
}

fn add_counts(
    tx: &rusqlite::Transaction<'_>,
    counts: &HashMap<(&str, &str), i64>,
) -> Result<(), rusqlite::Error> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO counts (service, level, n) VALUES (?1, ?2, ?3)
         ON CONFLICT (service, level) DO UPDATE SET n = n + excluded.n",
    )?;
    for ((service, level), n) in counts {
        upsert.execute(params![service, level, n])?;
    }
    tx.execute("DELETE FROM counts WHERE n <= 0", [])?;
    Ok(())
}

fn sync_pragma(sync: SyncMode) -> &'static str {
    match sync {
        SyncMode::Normal => "NORMAL",
        SyncMode::Full => "FULL",
    }
}

pub(super) fn where_clause(conds: &[&str]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

fn shown(key: String) -> String {
    if key.is_empty() {
        UNKNOWN.to_owned()
    } else {
        key
    }
}
