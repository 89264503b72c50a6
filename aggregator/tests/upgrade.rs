//! Upgrade without loss: a data directory of the SQLite store of earlier versions is
//! imported by the default store on its first start, and `STORE=sqlite` is refused with
//! the way to upgrade.
//!
//! The SQLite store is gone from the code, so these tests write its files themselves,
//! with rusqlite, as its last version did: the schema, the settings set on every open
//! and the statements below are copied from it (schema version 1), and each record is
//! read by the aggregator's own `record::parse`, as that store's writer received it.
//! What the old store holds is then read back from its own tables, and the new store
//! must serve exactly that.
//!
//! - `a_sqlite_store_is_imported_with_every_record`: 70,000 records (more than one
//!   segment of the import) with structured, opaque and missing `event_id`s, missing
//!   services and levels, shared and unparsable times, duplicates the old store skipped
//!   and the oldest deleted by its retention. The default store started on that
//!   directory serves the very same records in both orders, the same counts, the same
//!   text and `request_id` matches, answers every record sent again as a duplicate, and
//!   renames `logs.db` to `logs.db.imported`.
//! - `a_sqlite_store_left_by_a_crash_is_imported`: the files a killed aggregator left,
//!   its last commits only in `logs.db-wal` (never checkpointed), are imported whole.
//! - `store_sqlite_is_refused_with_the_way_to_upgrade`: exit 64 naming `STORE`, saying
//!   the store was removed and that the default store imports it; nothing is touched.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;

use awc::http::StatusCode;
use common::{all_logs, get, post, Aggregator};
use log_aggregator::record::{self, Received, Record};
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::{json, Value};

/// The SQLite store's schema, as its last version created it.
const OLD_SCHEMA: &str = "
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
/// Its `user_version`.
const OLD_SCHEMA_VERSION: i64 = 1;
/// Records the old writer stored per transaction in these tests (a sidecar's batch).
const BATCH: usize = 1000;

/// Opens (creating) `dir/logs.db` with what the old writer set on every open.
fn open_old_store(dir: &Path) -> Connection {
    std::fs::create_dir_all(dir).unwrap();
    let conn = Connection::open(dir.join("logs.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(OLD_SCHEMA).unwrap();
    conn.execute(
        "INSERT INTO logs_text (logs_text, rank) VALUES ('automerge', ?1)",
        [16],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO logs_text (logs_text, rank) VALUES ('crisismerge', ?1)",
        [64],
    )
    .unwrap();
    conn.pragma_update(None, "user_version", OLD_SCHEMA_VERSION)
        .unwrap();
    conn
}

/// Stores one batch in one transaction as the old writer did: each record given the id
/// one past the largest (a skipped record's id stays unused), `INSERT OR IGNORE` so that
/// the unique index skips a stored `event_id`, the text index and the counts beside.
fn old_insert(conn: &mut Connection, records: &[Record]) {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    {
        let next: i64 = tx
            .query_row("SELECT coalesce(max(id), 0) + 1 FROM logs", [], |r| {
                r.get(0)
            })
            .unwrap();
        let mut row = tx
            .prepare(
                "INSERT OR IGNORE INTO logs (id, ts, service, level, request_id, event_id, body) \
                 VALUES (?,?,?,?,?,?,?)",
            )
            .unwrap();
        let mut text = tx
            .prepare("INSERT INTO logs_text (rowid, message, request_id) VALUES (?1, ?2, ?3)")
            .unwrap();
        let mut count = tx
            .prepare(
                "INSERT INTO counts (service, level, n) VALUES (?1, ?2, ?3)
                 ON CONFLICT (service, level) DO UPDATE SET n = n + excluded.n",
            )
            .unwrap();
        for (id, r) in (next..).zip(records) {
            let stored = row
                .execute(params![
                    id,
                    r.ts_us,
                    r.service,
                    r.level,
                    r.request_id,
                    r.event_id,
                    r.body
                ])
                .unwrap();
            if stored == 0 {
                continue;
            }
            if r.message.is_some() || r.request_id.is_some() {
                text.execute(params![id, r.message, r.request_id]).unwrap();
            }
            let service = r.service.as_deref().unwrap_or("");
            count
                .execute(params![service, r.level.as_deref().unwrap_or(""), 1])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Deletes the `n` oldest records by arrival as the old store's retention did.
fn old_prune_oldest(conn: &mut Connection, n: usize) {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    let victims: Vec<(i64, String, String)> = tx
        .prepare(
            "SELECT id, coalesce(service, ''), coalesce(level, '') FROM logs
             ORDER BY id LIMIT ?",
        )
        .unwrap()
        .query_map([n as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, service, level) in &victims {
        tx.execute("DELETE FROM logs WHERE id = ?", [id]).unwrap();
        tx.execute("DELETE FROM logs_text WHERE rowid = ?", [id])
            .unwrap();
        tx.execute(
            "UPDATE counts SET n = n - 1 WHERE service = ?1 AND level = ?2",
            params![service, level],
        )
        .unwrap();
    }
    tx.execute("DELETE FROM counts WHERE n <= 0", []).unwrap();
    tx.commit().unwrap();
}

/// The `i`th line a sender wrote, at about `now_s - 3600 + i / 20` seconds: whole
/// seconds (so that records share a time), some times unparsable (the time of arrival
/// counts), some records without `event_id`, service or level, and sidecar ids
/// (`<service>:<stream>:<start>-<end>`) beside opaque ones.
fn line(i: usize, now_s: i64) -> String {
    let service = ["user-service", "order-service", "payment-service"][i % 3];
    let level = ["INFO", "info", "WARN", "ERROR"][i % 4];
    let client = ["alpha", "bravo", "charlie"][i % 7 % 3];
    let time = chrono::DateTime::from_timestamp(now_s - 3600 + (i / 20) as i64, 0).unwrap();
    let (stream, start) = (i % 3, i * 300);
    let mut v = json!({
        "timestamp": time.to_rfc3339(),
        "service": service,
        "level": level,
        "message": format!("GET /orders/{i} handled for {client} café"),
        "request_id": format!("req-{}", i % 11),
        "event_id": format!("{service}:9f3a1c2b7d4e5f6{stream}:{start:x}-{:x}", start + 260),
        "status": 200 + i % 5,
    });
    if i % 5 == 0 {
        v["event_id"] = json!(format!("legacy-{i}"));
    }
    if i % 97 == 0 {
        v.as_object_mut().unwrap().remove("event_id");
    }
    if i % 89 == 0 {
        v.as_object_mut().unwrap().remove("service");
    }
    if i % 83 == 0 {
        v.as_object_mut().unwrap().remove("level");
    }
    if i % 101 == 0 {
        v["timestamp"] = json!("yesterday at noon");
    }
    v.to_string()
}

/// Writes `lines` into the old store in batches of [`BATCH`], each batch also
/// repeating the first line of the one before (which the old store skipped).
fn fill_old_store(conn: &mut Connection, lines: &[String], now_s: i64) {
    for (b, chunk) in lines.chunks(BATCH).enumerate() {
        let received = Received::at(chrono::DateTime::from_timestamp(now_s, b as u32).unwrap());
        let mut records: Vec<Record> = chunk
            .iter()
            .map(|l| record::parse(l, &received).unwrap())
            .collect();
        if b > 0 {
            records.push(record::parse(&lines[(b - 1) * BATCH + 1], &received).unwrap());
        }
        old_insert(conn, &records);
    }
}

/// What the old store holds: each record's body in `(ts, id)` order, its counts as
/// `GET /logs/count` showed them, and its stored `event_id`s.
struct OldContents {
    bodies: Vec<Value>,
    counts: Value,
    event_ids: HashSet<String>,
}

fn old_contents(dir: &Path) -> OldContents {
    let conn = Connection::open(dir.join("logs.db")).unwrap();
    let bodies = conn
        .prepare("SELECT body FROM logs ORDER BY ts, id")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
        .collect();
    let (mut total, mut by_service, mut by_level) = (0, BTreeMap::new(), BTreeMap::new());
    let mut stmt = conn
        .prepare("SELECT service, level, n FROM counts")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })
        .unwrap();
    for row in rows {
        let (service, level, n): (String, String, u64) = row.unwrap();
        let shown = |k: String| if k.is_empty() { "unknown".into() } else { k };
        total += n;
        *by_service.entry(shown(service)).or_insert(0) += n;
        *by_level.entry(shown(level)).or_insert(0) += n;
    }
    let event_ids = conn
        .prepare("SELECT event_id FROM logs WHERE event_id IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    OldContents {
        bodies,
        counts: json!({"total_logs": total, "by_service": by_service, "by_level": by_level}),
        event_ids,
    }
}

/// The newest records first, by following cursors.
async fn all_logs_newest_first(base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut url = format!("{base}/logs?limit=1000");
    loop {
        let (status, page) = get(&url, &[]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        out.extend(page["logs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{base}/logs?limit=1000&cursor={c}"),
            None => return out,
        }
    }
}

#[actix_rt::test]
async fn a_sqlite_store_is_imported_with_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let now_s = chrono::Utc::now().timestamp();
    let lines: Vec<String> = (0..70_000).map(|i| line(i, now_s)).collect();
    let mut conn = open_old_store(&store);
    fill_old_store(&mut conn, &lines, now_s);
    old_prune_oldest(&mut conn, 1500);
    drop(conn);
    let old = old_contents(&store);
    // More than one segment of the import (65,536 records each).
    assert!(old.bodies.len() > 65_536, "{}", old.bodies.len());

    let new = Aggregator::start(dir.path(), &[]).await;
    let stderr = new.process.stderr();
    assert!(stderr.contains("imported"), "{stderr}");
    assert!(!store.join("logs.db").exists());
    assert!(store.join("logs.db.imported").exists());
    assert_eq!(all_logs(&new.base, &[]).await, old.bodies);
    let mut newest_first = all_logs_newest_first(&new.base).await;
    newest_first.reverse();
    assert_eq!(newest_first, old.bodies);
    let (_, counts) = get(&new.url("/logs/count"), &[]).await;
    assert_eq!(counts, old.counts);

    let (_, page) = get(
        &new.url("/logs?q=handled%20for%20bravo&request_id=req-3&limit=1"),
        &[],
    )
    .await;
    let matching = old
        .bodies
        .iter()
        .filter(|b| {
            b["request_id"] == "req-3"
                && b["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("handled for bravo"))
        })
        .count();
    assert!(matching > 0);
    assert_eq!(page["total"], matching, "{page}");

    // Every stored id is known: sent again, each is a duplicate.
    let again: Vec<&String> = lines
        .iter()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["event_id"]
                .as_str()
                .is_some_and(|id| old.event_ids.contains(id))
        })
        .collect();
    for chunk in again.chunks(BATCH) {
        let body: String = chunk.iter().map(|l| format!("{l}\n")).collect();
        let (status, answer) = post(&new.url("/logs"), "application/x-ndjson", &[], body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["accepted"], 0, "{answer}");
        assert_eq!(answer["duplicates"], chunk.len(), "{answer}");
    }
}

#[actix_rt::test]
async fn a_sqlite_store_left_by_a_crash_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let old_dir = dir.path().join("old");
    let store = dir.path().join("store");
    let now_s = chrono::Utc::now().timestamp();
    let lines: Vec<String> = (0..3 * BATCH).map(|i| line(i, now_s)).collect();
    let mut conn = open_old_store(&old_dir);
    fill_old_store(&mut conn, &lines[..BATCH], now_s);
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    fill_old_store(&mut conn, &lines[BATCH..], now_s);
    // What `kill -9` leaves while the connection is open: the database and its WAL,
    // which holds the last commits.
    std::fs::create_dir_all(&store).unwrap();
    for file in ["logs.db", "logs.db-wal"] {
        std::fs::copy(old_dir.join(file), store.join(file)).unwrap();
    }
    assert!(std::fs::metadata(store.join("logs.db-wal")).unwrap().len() > 0);
    drop(conn);
    let old = old_contents(&old_dir);
    assert_eq!(old.bodies.len(), 3 * BATCH);

    let new = Aggregator::start(dir.path(), &[]).await;
    assert_eq!(all_logs(&new.base, &[]).await, old.bodies);
    for file in ["logs.db", "logs.db-wal", "logs.db-shm"] {
        assert!(!store.join(file).exists(), "{file}");
    }
    assert!(store.join("logs.db.imported").exists());
}

#[actix_rt::test]
async fn store_sqlite_is_refused_with_the_way_to_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let now_s = chrono::Utc::now().timestamp();
    let lines: Vec<String> = (0..10).map(|i| line(i, now_s)).collect();
    fill_old_store(&mut open_old_store(&store), &lines, now_s);
    let out = Command::new(env!("CARGO_BIN_EXE_log-aggregator"))
        .env("DATA_DIR", &store)
        .env("STORE", "sqlite")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STORE"), "{err}");
    assert!(err.contains("SQLite store was removed"), "{err}");
    assert!(err.contains("imports"), "{err}");
    assert!(store.join("logs.db").exists());
    assert!(!store.join("logs.db.imported").exists());
}
