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
//! [`Store::insert_batches`] returns, they are committed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OpenFlags};

use crate::borrowed::{BorrowedStatement, Param};
use crate::config::SyncMode;
use crate::query::{text_phrase, LogQuery, Order};
use crate::record::Record;

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
/// The key `counts` uses for a record without a service or a level.
const NONE_KEY: &str = "";
/// How an absent service or level is shown in `/logs/count`.
pub const UNKNOWN: &str = "unknown";
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
pub enum StoreError {
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
    /// The commit shared by several batches failed; each of them gets this copy.
    #[error("{0}")]
    Shared(String),
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

/// One page of `GET /logs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub total: u64,
    /// The stored JSON texts, in page order.
    pub logs: Vec<String>,
    /// Position of the last record, when more records may follow.
    pub last: Option<(i64, i64)>,
}

/// `GET /logs/count`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub by_service: BTreeMap<String, u64>,
    pub by_level: BTreeMap<String, u64>,
}

pub struct Store {
    /// The writer's insert statements, prepared on first use. Declared before `conn`
    /// so that they are finalized before it closes.
    inserts: Option<Inserts>,
    pub(crate) conn: Connection,
    /// [`SPARSE_MATCHES_MIN`]; tests lower it to reach the other plan with few records.
    sparse_matches_min: u64,
}

impl Store {
    /// Opens (creating when missing) the database for writing; only one writer at a time.
    pub fn open_writer(dir: &Path, sync: SyncMode) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path, found });
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
        Ok(Store {
            conn,
            sparse_matches_min: SPARSE_MATCHES_MIN,
            inserts: None,
        })
    }

    /// Opens the connection that checkpoints the WAL; the writer must have created it.
    pub fn open_checkpointer(dir: &Path, sync: SyncMode) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            dir.join(DB_FILE),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", sync_pragma(sync))?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
        Ok(Store {
            conn,
            sparse_matches_min: SPARSE_MATCHES_MIN,
            inserts: None,
        })
    }

    /// Copies committed WAL pages into the database without blocking the writer or the
    /// readers (`PASSIVE`); returns the WAL's frames and how many are now copied.
    pub fn checkpoint(&self) -> Result<(i64, i64), StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })?)
    }

    /// Opens the database for queries; the writer must have created it.
    pub fn open_reader(dir: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            dir.join(DB_FILE),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(Store {
            conn,
            sparse_matches_min: SPARSE_MATCHES_MIN,
            inserts: None,
        })
    }

    /// Stores a batch in one transaction; a record whose `event_id` is stored is skipped.
    pub fn insert(&mut self, records: &[Record]) -> Result<Inserted, StoreError> {
        Ok(self.insert_batches(&[records])?[0])
    }

    /// Stores several batches in one transaction (group commit), each counted on its
    /// own, in order: a record repeated in a later batch is that batch's duplicate.
    ///
    /// Records go in [`ROWS_PER_STATEMENT`] at a time. The writer gives each row its id
    /// (one past the largest, in order), so the ids of the rows that a multi-row
    /// `INSERT OR IGNORE` skipped are known without asking row by row: when fewer rows
    /// than given were stored, the ids present in the chunk's range say which.
    pub fn insert_batches(&mut self, batches: &[&[Record]]) -> Result<Vec<Inserted>, StoreError> {
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
            for records in batches {
                let mut done = Inserted::default();
                for chunk in records.chunks(ROWS_PER_STATEMENT) {
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
                    for ((id, r), &kept) in (first..).zip(chunk).zip(&stored_in_chunk) {
                        if !kept {
                            done.duplicates += 1;
                            continue;
                        }
                        done.stored += 1;
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
        Ok(outcome)
    }

    /// One page of records matching `q`, and how many match in all.
    pub fn query(&self, q: &LogQuery) -> Result<Page, StoreError> {
        let mut conds: Vec<&str> = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        if let Some(s) = &q.service {
            conds.push("service = ?");
            args.push(Value::Text(s.clone()));
        }
        if let Some(l) = &q.level {
            conds.push("level = ?");
            args.push(Value::Text(l.clone()));
        }
        if let Some(t) = q.since_us {
            conds.push("ts >= ?");
            args.push(Value::Integer(t));
        }
        if let Some(t) = q.until_us {
            conds.push("ts < ?");
            args.push(Value::Integer(t));
        }
        let mut search = Vec::new();
        if let Some(t) = &q.text {
            search.push(format!("message : {t}"));
        }
        if let Some(r) = &q.request_id {
            // An id without a letter or digit cannot be looked up in FTS5: the exact
            // comparison alone then finds it, by a scan.
            if let Some(phrase) = text_phrase(r) {
                search.push(format!("request_id : {phrase}"));
            }
            conds.push("request_id = ?");
            args.push(Value::Text(r.clone()));
        }
        if !search.is_empty() {
            conds.push("id IN (SELECT rowid FROM logs_text WHERE logs_text MATCH ?)");
            args.push(Value::Text(search.join(" AND ")));
        }
        let total = self.total(q, &conds, &args)?;
        if total == 0 {
            return Ok(Page {
                total,
                logs: Vec::new(),
                last: None,
            });
        }
        // Many matches: walk the time index (of the service or level when filtered).
        let walk = if !search.is_empty() && total > self.sparse_limit(q.limit)? {
            if q.service.is_some() {
                " INDEXED BY logs_service_ts"
            } else if q.level.is_some() {
                " INDEXED BY logs_level_ts"
            } else {
                " INDEXED BY logs_ts"
            }
        } else {
            ""
        };

        let (cmp, dir) = match q.order {
            Order::Asc => (">", "ASC"),
            Order::Desc => ("<", "DESC"),
        };
        let mut page_conds = conds.clone();
        let cursor_cond = format!("(ts, id) {cmp} (?, ?)");
        let mut page_args = args;
        if let Some(c) = q.cursor {
            page_conds.push(&cursor_cond);
            page_args.push(Value::Integer(c.ts_us));
            page_args.push(Value::Integer(c.id));
        }
        let sql = format!(
            "SELECT id, ts, body FROM logs{walk}{} ORDER BY ts {dir}, id {dir} LIMIT {}",
            where_clause(&page_conds),
            q.limit + 1
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(page_args.iter()))?;
        let mut logs = Vec::with_capacity(q.limit.min(1024));
        let mut last = None;
        let mut more = false;
        let mut bytes = 0;
        while let Some(row) = rows.next()? {
            if logs.len() == q.limit || bytes > MAX_PAGE_BYTES {
                more = true;
                break;
            }
            let id: i64 = row.get(0)?;
            let ts: i64 = row.get(1)?;
            let body = row.get::<_, String>(2)?;
            bytes += body.len();
            logs.push(body);
            last = Some((ts, id));
        }
        Ok(Page {
            total,
            logs,
            last: if more { last } else { None },
        })
    }

    /// Matches above which a search walks the time index (see [`SPARSE_MATCHES_MIN`]).
    fn sparse_limit(&self, limit: usize) -> Result<u64, StoreError> {
        let balance = ((limit as f64 + 1.0) * self.stored()? as f64).sqrt() as u64;
        Ok(balance.max(self.sparse_matches_min))
    }

    /// The number of records matching the filters, from `counts` when only service and
    /// level filter, from an index otherwise.
    fn total(&self, q: &LogQuery, conds: &[&str], args: &[Value]) -> Result<u64, StoreError> {
        let only_counted = q.request_id.is_none()
            && q.since_us.is_none()
            && q.until_us.is_none()
            && q.text.is_none();
        let n: i64 = if only_counted {
            let mut sql = "SELECT coalesce(sum(n), 0) FROM counts".to_owned();
            sql.push_str(&where_clause(conds));
            self.conn
                .prepare_cached(&sql)?
                .query_row(params_from_iter(args.iter()), |r| r.get(0))?
        } else if conds.len() == 1 && q.text.is_some() {
            // The search alone: counted on the FTS5 index, without visiting `logs`.
            self.conn
                .prepare_cached("SELECT count(*) FROM logs_text WHERE logs_text MATCH ?")?
                .query_row(params_from_iter(args.iter()), |r| r.get(0))?
        } else {
            let sql = format!("SELECT count(*) FROM logs{}", where_clause(conds));
            self.conn
                .prepare_cached(&sql)?
                .query_row(params_from_iter(args.iter()), |r| r.get(0))?
        };
        Ok(n.max(0) as u64)
    }

    /// Records stored, by service and by level.
    pub fn counts(&self) -> Result<Counts, StoreError> {
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
    pub fn stored(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT coalesce(sum(n), 0) FROM counts")?
            .query_row([], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Deletes every record; returns how many there were.
    pub fn clear(&mut self) -> Result<u64, StoreError> {
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
    ) -> Result<u64, StoreError> {
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

fn where_clause(conds: &[&str]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{Cursor, LogParams};
    use crate::record::{self, Received};

    fn rec(i: usize, service: &str, level: &str, event: Option<&str>, msg: &str) -> Record {
        let text = serde_json::json!({
            "timestamp": format!("2024-05-01T10:00:{:02}Z", i % 60),
            "service": service, "level": level, "message": msg,
            "request_id": format!("req-{}", i % 7), "event_id": event, "i": i,
        })
        .to_string();
        record::parse(&text, &Received::now()).unwrap()
    }

    fn query(store: &Store, pairs: &[(&str, &str)]) -> Page {
        let qs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let params = actix_web::web::Query::<LogParams>::from_query(&qs.join("&"))
            .unwrap()
            .into_inner();
        store.query(&params.to_query(100, 1000).unwrap()).unwrap()
    }

    fn ids(page: &Page) -> Vec<u64> {
        page.logs
            .iter()
            .map(|b| {
                serde_json::from_str::<serde_json::Value>(b).unwrap()["i"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn insert_dedups_counts_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Store::open_writer(dir.path(), SyncMode::Normal).unwrap();
        let batch: Vec<Record> = (0..10)
            .map(|i| rec(i, "svc-a", "info", Some(&format!("e{i}")), "hello world"))
            .collect();
        assert_eq!(
            w.insert(&batch).unwrap(),
            Inserted {
                stored: 10,
                duplicates: 0
            }
        );
        let mut again = batch.clone();
        again.push(rec(10, "svc-b", "error", None, "boom"));
        again.push(rec(11, "svc-b", "error", None, "boom"));
        again.push(rec(12, "svc-b", "warn", Some("dup-in-batch"), "x"));
        again.push(rec(13, "svc-b", "warn", Some("dup-in-batch"), "x"));
        assert_eq!(
            w.insert(&again).unwrap(),
            Inserted {
                stored: 3,
                duplicates: 11
            }
        );
        drop(w);
        let r = Store::open_reader(dir.path()).unwrap();
        let c = r.counts().unwrap();
        assert_eq!(c.total, 13);
        assert_eq!(c.by_service["svc-a"], 10);
        assert_eq!(c.by_level["ERROR"], 2);
        assert_eq!(r.stored().unwrap(), 13);
    }

    #[test]
    fn filters_search_and_cursor_pages() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Store::open_writer(dir.path(), SyncMode::Normal).unwrap();
        let batch: Vec<Record> = (0..50)
            .map(|i| {
                let svc = if i % 2 == 0 { "even" } else { "odd" };
                let msg = if i % 10 == 0 {
                    "connection refused by peer"
                } else {
                    "ok"
                };
                rec(i, svc, if i % 5 == 0 { "ERROR" } else { "info" }, None, msg)
            })
            .collect();
        w.insert(&batch).unwrap();
        let r = Store::open_reader(dir.path()).unwrap();

        let p = query(&r, &[("service", "even"), ("limit", "10")]);
        assert_eq!(p.total, 25);
        assert_eq!(p.logs.len(), 10);
        // Newest first: timestamps are i % 60 seconds, so 48 is the newest even one.
        assert_eq!(ids(&p)[0], 48);

        let p = query(&r, &[("q", "Connection refused"), ("order", "asc")]);
        assert_eq!(p.total, 5);
        assert_eq!(ids(&p), [0, 10, 20, 30, 40]);
        assert_eq!(query(&r, &[("q", "refused connection")]).total, 0);
        assert_eq!(query(&r, &[("q", "conn*")]).total, 5);
        let p = query(
            &r,
            &[("q", "refused"), ("level", "error"), ("service", "odd")],
        );
        assert_eq!(p.total, 0);

        let req3 = (0..50).filter(|i| i % 7 == 3).count() as u64;
        let p = query(&r, &[("request_id", "req-3")]);
        assert_eq!(p.total, req3);
        assert_eq!(query(&r, &[("request_id", "REQ-3")]).total, 0);
        assert_eq!(query(&r, &[("request_id", "req")]).total, 0);
        assert_eq!(query(&r, &[("request_id", "--")]).total, 0);

        // Past the sparse limit the same searches walk the time index instead.
        let mut r = r;
        r.sparse_matches_min = 0;
        assert_eq!(query(&r, &[("request_id", "req-3")]).total, req3);
        // √((1 + 1) × 50) = 10 matches at most are sorted.
        let p = query(&r, &[("q", "ok"), ("order", "asc"), ("limit", "1")]);
        assert_eq!((p.total, ids(&p)), (45, vec![1]));
        let p = query(&r, &[("q", "ok"), ("service", "odd"), ("limit", "1")]);
        assert_eq!((p.total, ids(&p)), (25, vec![49]));
        let p = query(&r, &[("q", "ok"), ("level", "error"), ("limit", "1")]);
        assert_eq!((p.total, ids(&p)), (5, vec![45]));
        let p = query(&r, &[("q", "ok"), ("level", "info"), ("limit", "1")]);
        assert_eq!((p.total, ids(&p)), (40, vec![49]));
        let p = query(
            &r,
            &[
                ("since", "2024-05-01T10:00:10Z"),
                ("until", "2024-05-01T10:00:20Z"),
            ],
        );
        assert_eq!(p.total, 10);

        // Paging through everything in both orders visits each record once.
        for order in [Order::Asc, Order::Desc] {
            let o = if order == Order::Asc { "asc" } else { "desc" };
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..20 {
                let mut pairs = vec![("limit", "7".to_owned()), ("order", o.to_owned())];
                if let Some(c) = &cursor {
                    pairs.push(("cursor", c.clone()));
                }
                let pairs: Vec<(&str, &str)> =
                    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let p = query(&r, &pairs);
                seen.extend(ids(&p));
                match p.last {
                    Some((ts_us, id)) => cursor = Some(Cursor { order, ts_us, id }.encode()),
                    None => break,
                }
            }
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 50, "{o}");
            assert_eq!(seen.len(), 50, "{o}");
        }
    }

    #[test]
    fn multi_row_statements_skip_exactly_the_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Store::open_writer(dir.path(), SyncMode::Normal).unwrap();
        let n = 3 * ROWS_PER_STATEMENT + 7;
        let first: Vec<Record> = (0..n)
            .filter(|i| i % 3 == 0)
            .map(|i| rec(i, "s", "info", Some(&format!("e{i}")), &format!("w{i}")))
            .collect();
        let stored_first = first.len() as u64;
        assert_eq!(w.insert(&first).unwrap().stored, stored_first);
        // Every third is already stored, every fifth is repeated within the batch, and
        // every seventh has no event id (always stored).
        let mut batch = Vec::new();
        for i in 0..n {
            let event = (i % 7 != 0).then(|| format!("e{i}"));
            batch.push(rec(i, "s", "info", event.as_deref(), &format!("w{i}")));
            if i % 5 == 0 {
                batch.push(rec(i, "s", "info", event.as_deref(), &format!("w{i}")));
            }
        }
        let expect_stored = (0..n)
            .map(|i| match (i % 7 == 0, i % 3 == 0, i % 5 == 0) {
                (true, _, true) => 2,
                (true, _, false) => 1,
                (false, true, _) => 0,
                (false, false, _) => 1,
            })
            .sum::<u64>();
        let done = w.insert(&batch).unwrap();
        assert_eq!(done.stored, expect_stored);
        assert_eq!(done.stored + done.duplicates, batch.len() as u64);
        assert_eq!(w.stored().unwrap(), stored_first + expect_stored);
        // The text index points at the right rows.
        for i in [0, 1, 5, 14, 49, 50, 51, 99, 100, 150, n - 1] {
            let p = query(&w, &[("q", &format!("w{i}"))]);
            let copies = match (i % 7 == 0, i % 3 == 0, i % 5 == 0) {
                (true, true, true) => 3,
                (true, true, false) | (true, false, true) => 2,
                _ => 1,
            };
            assert_eq!(p.total, copies, "w{i}");
            assert!(ids(&p).iter().all(|&j| j == i as u64), "w{i}");
        }
    }

    #[test]
    fn batches_committed_together_are_counted_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Store::open_writer(dir.path(), SyncMode::Normal).unwrap();
        let a: Vec<Record> = (0..5)
            .map(|i| rec(i, "s", "info", Some(&format!("e{i}")), "m"))
            .collect();
        let b: Vec<Record> = (3..8)
            .map(|i| rec(i, "s", "info", Some(&format!("e{i}")), "m"))
            .collect();
        let done = w.insert_batches(&[&a, &b, &[]]).unwrap();
        assert_eq!(
            done,
            [
                Inserted {
                    stored: 5,
                    duplicates: 0
                },
                Inserted {
                    stored: 3,
                    duplicates: 2
                },
                Inserted::default()
            ]
        );
        assert_eq!(w.stored().unwrap(), 8);
    }

    #[test]
    fn cursors_split_records_that_share_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Store::open_writer(dir.path(), SyncMode::Normal).unwrap();
        let same: Vec<Record> = (0..10)
            .map(|i| {
                let mut r = rec(i, "s", "info", None, "m");
                r.ts_us = 1_000;
                r
            })
            .collect();
        w.insert(&same).unwrap();
        for (order, o) in [(Order::Asc, "asc"), (Order::Desc, "desc")] {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..10 {
                let mut pairs = vec![("limit", "3".to_owned()), ("order", o.to_owned())];
                pairs.extend(cursor.clone().map(|c| ("cursor", c)));
                let pairs: Vec<(&str, &str)> =
                    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let p = query(&w, &pairs);
                seen.extend(ids(&p));
                match p.last {
                    Some((ts_us, id)) => cursor = Some(Cursor { order, ts_us, id }.encode()),
                    None => break,
                }
            }
            let mut want: Vec<u64> = (0..10).collect();
            if order == Order::Desc {
                want.reverse();
            }
            assert_eq!(seen, want, "{o}");
        }
    }

    #[test]
    fn prune_and_clear_keep_counts_right() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Store::open_writer(dir.path(), SyncMode::Normal).unwrap();
        let batch: Vec<Record> = (0..30)
            .map(|i| rec(i, "s", "info", Some(&format!("e{i}")), "word"))
            .collect();
        w.insert(&batch).unwrap();
        assert_eq!(w.prune(Some(20), None, 4).unwrap(), 4);
        assert_eq!(w.prune(Some(20), None, 100).unwrap(), 6);
        assert_eq!(w.prune(Some(20), None, 100).unwrap(), 0);
        assert_eq!(w.stored().unwrap(), 20);
        // By age: timestamps are 10:00:00 + i seconds; 10..=29 remain.
        let min = chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:15Z")
            .unwrap()
            .timestamp_micros();
        assert_eq!(w.prune(None, Some(min), 100).unwrap(), 5);
        assert_eq!(w.stored().unwrap(), 15);
        assert_eq!(query(&w, &[("q", "word")]).total, 15);
        // Pruned event ids may come back: they are no longer stored.
        assert_eq!(w.insert(&batch[..1]).unwrap().stored, 1);
        assert_eq!(w.clear().unwrap(), 16);
        assert_eq!(w.counts().unwrap(), Counts::default());
        assert_eq!(query(&w, &[("q", "word")]).total, 0);
        assert_eq!(w.insert(&batch).unwrap().stored, 30);
    }
}
