//! The SQLite store's unit tests: dedup, filters, search plans, cursors, retention.

use super::db::*;
use crate::config::SyncMode;
use crate::query::{Cursor, LogParams, Order};
use crate::record::{self, Received, Record};
use crate::store::{Counts, Inserted, Page};

fn rec(i: usize, service: &str, level: &str, event: Option<&str>, msg: &str) -> Record {
    let text = serde_json::json!({
        "timestamp": format!("2024-05-01T10:00:{:02}Z", i % 60),
        "service": service, "level": level, "message": msg,
        "request_id": format!("req-{}", i % 7), "event_id": event, "i": i,
    })
    .to_string();
    record::parse(&text, &Received::now()).unwrap()
}

fn query(store: &Db, pairs: &[(&str, &str)]) -> Page {
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
    let mut w = Db::open_writer(dir.path(), SyncMode::Normal).unwrap();
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
    let r = Db::open_reader(dir.path()).unwrap();
    let c = r.counts().unwrap();
    assert_eq!(c.total, 13);
    assert_eq!(c.by_service["svc-a"], 10);
    assert_eq!(c.by_level["ERROR"], 2);
    assert_eq!(r.stored().unwrap(), 13);
}

#[test]
fn filters_search_and_cursor_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Db::open_writer(dir.path(), SyncMode::Normal).unwrap();
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
    let r = Db::open_reader(dir.path()).unwrap();

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
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
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
    let mut w = Db::open_writer(dir.path(), SyncMode::Normal).unwrap();
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
    let mut w = Db::open_writer(dir.path(), SyncMode::Normal).unwrap();
    let a: Vec<Record> = (0..5)
        .map(|i| rec(i, "s", "info", Some(&format!("e{i}")), "m"))
        .collect();
    let b: Vec<Record> = (3..8)
        .map(|i| rec(i, "s", "info", Some(&format!("e{i}")), "m"))
        .collect();
    let done = w.insert_batches(&[&a, &b, &[]], None).unwrap();
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
    let mut w = Db::open_writer(dir.path(), SyncMode::Normal).unwrap();
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
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
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
    let mut w = Db::open_writer(dir.path(), SyncMode::Normal).unwrap();
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

#[test]
fn a_reader_stops_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Db::open_writer(dir.path(), SyncMode::Normal).unwrap();
    let batch: Vec<Record> = (0..3000)
        .map(|i| rec(i, "s", "info", None, "many words here"))
        .collect();
    w.insert(&batch).unwrap();
    let r = Db::open_reader(dir.path()).unwrap();
    let params = actix_web::web::Query::<LogParams>::from_query("q=words&limit=1000")
        .unwrap()
        .into_inner();
    let q = params.to_query(100, 1000).unwrap();
    r.set_deadline(Some(std::time::Instant::now()));
    let err = r.query(&q).unwrap_err();
    assert!(err.is_interrupt(), "{err}");
    r.set_deadline(None);
    assert_eq!(r.query(&q).unwrap().total, 3000);
}

/// The backend as the HTTP layer sees it: the feed, deadlines, health, clear.
#[actix_rt::test]
async fn the_backend_feeds_commits_and_honours_deadlines() {
    use crate::store::{Backend, StoreError};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let env: std::collections::HashMap<&str, &str> = [("DATA_DIR", data_dir.as_str())].into();
    let config = crate::config::AggregatorConfig::from_env(&env).unwrap();
    let registry = prometheus::Registry::new();
    let metrics = crate::metrics::Metrics::register(&registry).unwrap();
    let store = super::Sqlite::start(&config, &metrics).unwrap();
    let mut feed = store.subscribe();

    let first: Vec<Record> = (0..5)
        .map(|i| rec(i, "a", "info", Some(&format!("e{i}")), "m"))
        .collect();
    let done = store.ingest(first.clone()).await.unwrap();
    assert_eq!(done.stored, 5);
    let again: Vec<Record> = (3..8)
        .map(|i| rec(i, "a", "info", Some(&format!("e{i}")), "m"))
        .collect();
    assert_eq!(
        store.ingest(again.clone()).await.unwrap(),
        Inserted {
            stored: 3,
            duplicates: 2
        }
    );
    let c1 = feed.recv().await.unwrap();
    let c2 = feed.recv().await.unwrap();
    let fed: Vec<&Record> = c1.iter().chain(c2.iter()).map(|c| &c.record).collect();
    let want: Vec<&Record> = first.iter().chain(&again[2..]).collect();
    assert_eq!(fed, want);
    let ids: Vec<i64> = c1.iter().chain(c2.iter()).map(|c| c.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let health = store.health();
    assert!(health.writable && health.running);
    assert_eq!(health.stored, 8);
    let past = Instant::now() - Duration::from_millis(1);
    let q = LogParams::default().to_query(100, 1000).unwrap();
    assert!(matches!(
        store.query(q.clone(), past).await,
        Err(StoreError::Timeout(_))
    ));
    let soon = Instant::now() + Duration::from_secs(10);
    assert_eq!(store.query(q.clone(), soon).await.unwrap().total, 8);
    assert_eq!(store.count(soon).await.unwrap().total, 8);
    assert_eq!(store.clear().await.unwrap(), 8);
    store.stop();
    assert_eq!(
        store.ingest(first).await,
        Err(StoreError::Unavailable("writer"))
    );
    assert!(!store.health().writable);
    assert!(!store.health().running);
}
