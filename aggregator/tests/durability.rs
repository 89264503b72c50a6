//! Acknowledged means stored: across `kill -9`, across SIGTERM, and under many parallel
//! writers and readers.
//!
//! - `acknowledged_batches_survive_kill_9`: writers run flat out, the process is killed
//!   right after acknowledgements; after a restart every acknowledged record is there,
//!   and resending everything (as a sidecar retries) stores each record exactly once.
//! - `sigterm_finishes_in_flight_batches`: SIGTERM during ingestion exits 0 and loses
//!   no acknowledged record.
//! - `parallel_writers_and_readers`: every record stored once, every answer well formed.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{all_logs, get, post_ndjson, records, Aggregator};
use serde_json::Value;

const WRITERS: usize = 4;
const BATCH: usize = 100;

/// Batches sent and acknowledged so far, shared by the writer tasks.
#[derive(Default)]
struct Ledger {
    sent: Vec<Vec<Value>>,
    acked: Vec<Vec<Value>>,
}

/// Starts `WRITERS` tasks that post batches until one fails; returns the shared ledger.
fn start_writers(url: String, limit: usize) -> Rc<RefCell<Ledger>> {
    let ledger = Rc::new(RefCell::new(Ledger::default()));
    for w in 0..WRITERS {
        let ledger = ledger.clone();
        let url = url.clone();
        actix_rt::spawn(async move {
            for b in 0..limit {
                let batch = records(&format!("w{w}-b{b}"), &format!("svc-{w}"), BATCH);
                ledger.borrow_mut().sent.push(batch.clone());
                let client = common::client();
                let res = client
                    .post(&url)
                    .insert_header(("Content-Type", "application/x-ndjson"))
                    .send_body(common::ndjson(&batch))
                    .await;
                match res {
                    Ok(res) if res.status() == StatusCode::OK => {
                        ledger.borrow_mut().acked.push(batch);
                    }
                    _ => return,
                }
            }
        });
    }
    ledger
}

async fn wait_for_acks(ledger: &Rc<RefCell<Ledger>>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger.borrow().acked.len() < n {
        assert!(
            Instant::now() < deadline,
            "writers did not get {n} acknowledgements"
        );
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

fn event_ids(records: &[Value]) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for r in records {
        *ids.entry(r["event_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    ids
}

fn assert_all_present(stored: &HashMap<String, usize>, batches: &[Vec<Value>]) {
    for batch in batches {
        for r in batch {
            let id = r["event_id"].as_str().unwrap();
            assert_eq!(stored.get(id), Some(&1), "{id} is not stored exactly once");
        }
    }
}

#[actix_rt::test]
async fn acknowledged_batches_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = Aggregator::start(dir.path(), &[]).await;
    let ledger = start_writers(agg.url("/logs"), 1000);
    wait_for_acks(&ledger, 30).await;
    agg.process.kill();
    let acked = ledger.borrow().acked.clone();
    // Let the writer tasks see the failure and stop.
    actix_rt::time::sleep(Duration::from_millis(1)).await;

    let agg = Aggregator::start(dir.path(), &[]).await;
    let stored = event_ids(&all_logs(&agg.base, &[]).await);
    assert_all_present(&stored, &acked);
    assert!(stored.values().all(|&n| n == 1));

    // A sidecar resends whatever it has no acknowledgement for; resending everything
    // must leave each record stored exactly once.
    let sent = ledger.borrow().sent.clone();
    for batch in &sent {
        let (status, body) = post_ndjson(&agg.url("/logs"), batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["accepted"].as_u64().unwrap() + body["duplicates"].as_u64().unwrap(),
            BATCH as u64
        );
    }
    let stored = event_ids(&all_logs(&agg.base, &[]).await);
    assert_all_present(&stored, &sent);
    assert_eq!(stored.len(), sent.len() * BATCH);
}

#[actix_rt::test]
async fn sigterm_finishes_in_flight_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = Aggregator::start(dir.path(), &[]).await;
    let ledger = start_writers(agg.url("/logs"), 1000);
    wait_for_acks(&ledger, 10).await;
    agg.process.signal(libc::SIGTERM);
    let status = agg
        .process
        .wait_timeout(Duration::from_secs(30))
        .expect("stops after SIGTERM");
    assert!(status.success(), "{status}: {}", agg.process.stderr());
    let acked = ledger.borrow().acked.clone();

    let agg = Aggregator::start(dir.path(), &[]).await;
    let stored = event_ids(&all_logs(&agg.base, &[]).await);
    assert_all_present(&stored, &acked);
}

#[actix_rt::test]
async fn parallel_writers_and_readers() {
    const BATCHES: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[]).await;
    let ledger = start_writers(agg.url("/logs"), BATCHES);
    let done = Rc::new(RefCell::new(false));
    let mut readers = Vec::new();
    for r in 0..4 {
        let base = agg.base.clone();
        let done = done.clone();
        readers.push(actix_rt::spawn(async move {
            let mut last_total = 0;
            let mut answers = 0;
            while !*done.borrow() {
                let url = match r % 2 {
                    0 => format!("{base}/logs/count"),
                    _ => format!("{base}/logs?service=svc-{r}&limit=100&q=handled"),
                };
                let (status, body) = get(&url, &[]).await;
                assert_eq!(status, StatusCode::OK, "{url}: {body}");
                let total = body
                    .get("total_logs")
                    .or_else(|| body.get("total"))
                    .and_then(Value::as_u64)
                    .unwrap();
                assert!(
                    total >= last_total,
                    "{url}: total went from {last_total} to {total}"
                );
                last_total = total;
                answers += 1;
            }
            answers
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger.borrow().acked.len() < WRITERS * BATCHES {
        assert!(Instant::now() < deadline, "writers did not finish");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    *done.borrow_mut() = true;
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
    let stored = event_ids(&all_logs(&agg.base, &[]).await);
    assert_eq!(stored.len(), WRITERS * BATCHES * BATCH);
    assert_all_present(&stored, &ledger.borrow().acked);
    let (_, count) = get(&agg.url("/logs/count"), &[]).await;
    assert_eq!(count["total_logs"], (WRITERS * BATCHES * BATCH) as u64);
    assert_eq!(count["by_service"]["svc-1"], (BATCHES * BATCH) as u64);
}
