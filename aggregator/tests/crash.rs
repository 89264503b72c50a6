//! `kill -9` at random moments of the embedded store's life (flushes, compactions,
//! retention passes all running often), in a seeded schedule printed for replay.
//!
//! - `kill_9_at_random_moments_loses_nothing_and_stores_nothing_twice`: rounds on one
//!   data directory; in each, writers post batches of structured (sidecar) and opaque
//!   ids, some of them records old enough for retention to delete, with small flushes
//!   and a short retention interval; the process is killed after a random delay; after
//!   the restart, every batch ever sent is sent again (as a sidecar retries). At the
//!   end every recent record is stored exactly once, and no record twice.
//!   `CRASH_SEED=<n>` replays a schedule.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{all_logs, post_ndjson, Aggregator};
use serde_json::{json, Value};

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A batch of `n` records: structured ids continuing `stream`'s offsets, some opaque
/// ids, and every fifth record from 2001 (retention deletes those).
fn batch(tag: &str, stream: u64, offset: &mut u64, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let old = i % 5 == 0;
            let ts = if old {
                "2001-01-01T00:00:00Z".to_owned()
            } else {
                chrono::Utc::now().to_rfc3339()
            };
            let event_id = if i % 3 == 0 {
                format!("{tag}-{i}")
            } else {
                let len = 40 + (i as u64 % 7);
                let id = format!("svc:{stream:016x}:{:x}-{:x}", *offset, *offset + len);
                *offset += len;
                id
            };
            json!({
                "timestamp": ts, "service": "svc", "level": if old { "OLD" } else { "INFO" },
                "message": format!("record {i} of {tag}"), "request_id": format!("{tag}-r{}", i % 4),
                "event_id": event_id,
            })
        })
        .collect()
}

#[actix_rt::test]
async fn kill_9_at_random_moments_loses_nothing_and_stores_nothing_twice() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        });
    println!("CRASH_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let sent: Rc<RefCell<Vec<Vec<Value>>>> = Rc::default();
    let acked: Rc<RefCell<Vec<Vec<Value>>>> = Rc::default();
    let mut offsets = [0u64; 4];
    let rounds = 5;
    for round in 0..rounds {
        let flush = ["40", "150", "700"][rng.below(3) as usize];
        let mut agg = Aggregator::start(
            dir.path(),
            &[
                ("FLUSH_RECORDS", flush),
                ("RETENTION_MAX_AGE", "1h"),
                ("RETENTION_INTERVAL", "10ms"),
            ],
        )
        .await;
        // After a restart, everything ever sent is sent again, as a sidecar retries.
        let again = sent.borrow().clone();
        for b in &again {
            let (status, body) = post_ndjson(&agg.url("/logs"), b).await;
            assert_eq!(status, StatusCode::OK, "seed {seed} round {round}: {body}");
        }
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let (sent, acked) = (sent.clone(), acked.clone());
                let url = agg.url("/logs");
                let mut offset = offsets[w as usize];
                let stream = w + 1;
                actix_rt::spawn(async move {
                    for b in 0..1000 {
                        let records = batch(&format!("r{round}w{w}b{b}"), stream, &mut offset, 60);
                        sent.borrow_mut().push(records.clone());
                        let res = common::client()
                            .post(&url)
                            .insert_header(("Content-Type", "application/x-ndjson"))
                            .send_body(common::ndjson(&records))
                            .await;
                        match res {
                            Ok(r) if r.status() == StatusCode::OK => {
                                acked.borrow_mut().push(records)
                            }
                            _ => return offset,
                        }
                    }
                    offset
                })
            })
            .collect();
        let delay = Duration::from_millis(50 + rng.below(400));
        actix_rt::time::sleep(delay).await;
        agg.process.kill();
        for (w, h) in writers.into_iter().enumerate() {
            offsets[w] = h.await.unwrap();
        }
        println!(
            "round {round}: FLUSH_RECORDS={flush}, killed after {delay:?}, {} batches acknowledged so far",
            acked.borrow().len()
        );
    }
    let agg = Aggregator::start(
        dir.path(),
        &[("RETENTION_MAX_AGE", "1h"), ("RETENTION_INTERVAL", "10ms")],
    )
    .await;
    let again = sent.borrow().clone();
    for b in &again {
        let (status, _) = post_ndjson(&agg.url("/logs"), b).await;
        assert_eq!(status, StatusCode::OK);
    }
    // Old records sent again are deleted by retention in time; wait until none is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let all = all_logs(&agg.base, &[]).await;
        if all.iter().all(|r| r["level"] != "OLD") {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: retention left old records"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in &stored {
        *count
            .entry(r["event_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        count.values().all(|&n| n == 1),
        "seed {seed}: a record is stored twice"
    );
    let mut recent = 0;
    for b in sent.borrow().iter() {
        for r in b.iter().filter(|r| r["level"] != "OLD") {
            recent += 1;
            let id = r["event_id"].as_str().unwrap();
            assert_eq!(count.get(id), Some(&1), "seed {seed}: {id} is missing");
        }
    }
    assert_eq!(stored.len(), recent, "seed {seed}");
    assert!(
        !acked.borrow().is_empty(),
        "seed {seed}: nothing was acknowledged"
    );
}

/// A segment that cannot be read is moved aside at start and reported in `/health`;
/// the store starts without it and keeps everything else.
#[actix_rt::test]
async fn a_damaged_segment_is_moved_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = Aggregator::start(dir.path(), &[("FLUSH_RECORDS", "50")]).await;
    let mut offset = 0;
    for b in 0..4 {
        let records = batch(&format!("d{b}"), 9, &mut offset, 50);
        let (status, body) = post_ndjson(&agg.url("/logs"), &records).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    agg.process.signal(libc::SIGTERM);
    assert!(agg.process.wait_timeout(Duration::from_secs(30)).is_some());
    let segments = dir.path().join("store/segments");
    let mut files: Vec<_> = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    // Damage the first segment: its footer is cut off.
    let victim = files[0].clone();
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let agg = Aggregator::start(dir.path(), &[]).await;
    let (status, health) = common::get(&agg.url("/health"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let problems = health["problems"].as_array().expect("problems are listed");
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        problems.iter().any(|p| p.as_str().unwrap().contains(&name)),
        "{health}"
    );
    assert!(dir.path().join("store/damaged").join(&name).exists());
    assert!(!victim.exists());
    let stored = all_logs(&agg.base, &[]).await;
    assert_eq!(health["logs_stored"], stored.len() as u64);
    assert!(!stored.is_empty() && stored.len() < 200, "{}", stored.len());
    assert!(agg.process.stderr().contains("damaged"));
}
