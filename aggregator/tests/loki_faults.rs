//! Pushed Loki entries under faults that overlap, in a seeded random order:
//! re-sends (whole or in part, in any encoding), repeats within a request, concurrent
//! pushes of overlapping entries, ids forged to collide, and `kill -9` of the aggregator.
//!
//! - `pushed_entries_are_stored_exactly_once_under_faults`: after each restart every
//!   acknowledged entry is there; at every check no entry is stored twice; at the end
//!   the store holds exactly the distinct entries. Replay a run with
//!   `LOKI_FAULTS_SEED=<seed printed>`.

mod common;

use std::collections::{BTreeSet, HashSet};

use awc::http::StatusCode;
use common::loki::{gzip, json_push, push_request, send, snappy, Entry};
use common::{all_logs, post_ndjson, Aggregator};
use log_aggregator::loki::entry::event_id;
use serde_json::json;
use shared::testkit::SeededRng;

const T0: i64 = 1_700_000_000_000_000_000;
const STREAMS: [&str; 3] = ["a", "b", "c"];

/// (stream, nanoseconds, line): Loki's identity of an entry.
type Key = (String, i64, String);

fn entries(rng: &mut SeededRng, n: usize) -> Vec<Key> {
    (0..n)
        .map(|_| {
            let stream = STREAMS[rng.below(3) as usize].to_owned();
            // Few distinct times and lines, so that equal times and equal lines meet.
            let ts = T0 + rng.below(20) as i64;
            let line = format!("line {}", rng.below(6));
            (stream, ts, line)
        })
        .collect()
}

/// One push of `keys` in a random encoding, the keys of a stream together.
async fn push(agg: &Aggregator, rng: &mut SeededRng, keys: &[Key]) -> StatusCode {
    let url = agg.url("/loki/api/v1/push");
    let mut by_stream: Vec<(String, Vec<Entry<'_>>)> = Vec::new();
    for (s, ts, line) in keys {
        match by_stream.iter_mut().find(|(name, _)| name == s) {
            Some((_, v)) => v.push((*ts, line, &[])),
            None => by_stream.push((s.clone(), vec![(*ts, line, &[])])),
        }
    }
    let (headers, body): (Vec<(&str, &str)>, Vec<u8>) = match rng.below(3) {
        0 => {
            let labels: Vec<String> = by_stream
                .iter()
                .map(|(s, _)| format!(r#"{{job="{s}"}}"#))
                .collect();
            let streams: Vec<(&str, &[Entry<'_>])> = labels
                .iter()
                .zip(&by_stream)
                .map(|(l, (_, e))| (l.as_str(), e.as_slice()))
                .collect();
            (
                vec![("Content-Type", "application/x-protobuf")],
                snappy(&push_request(&streams)),
            )
        }
        encoding => {
            let streams: Vec<(serde_json::Value, &[Entry<'_>])> = by_stream
                .iter()
                .map(|(s, e)| (json!({ "job": s }), e.as_slice()))
                .collect();
            let text = json_push(&streams).into_bytes();
            if encoding == 1 {
                (vec![("Content-Type", "application/json")], text)
            } else {
                (
                    vec![
                        ("Content-Type", "application/json"),
                        ("Content-Encoding", "gzip"),
                    ],
                    gzip(&text),
                )
            }
        }
    };
    send(&url, &headers, body).await.0
}

/// The pushed entries stored, as keys, with how many times each is stored.
async fn stored(agg: &Aggregator) -> Vec<Key> {
    all_logs(&agg.base, &[])
        .await
        .into_iter()
        .filter(|r| r["loki"].is_object())
        .map(|r| {
            (
                r["loki"]["stream"]["job"].as_str().unwrap().to_owned(),
                r["loki"]["ts"].as_str().unwrap().parse().unwrap(),
                r["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn assert_once(keys: &[Key], seed: u64) -> BTreeSet<Key> {
    let set: BTreeSet<Key> = keys.iter().cloned().collect();
    assert_eq!(
        set.len(),
        keys.len(),
        "an entry is stored twice (seed {seed})"
    );
    set
}

#[actix_rt::test]
async fn pushed_entries_are_stored_exactly_once_under_faults() {
    let seed = SeededRng::seed_from_env("LOKI_FAULTS_SEED") | 1;
    println!("LOKI_FAULTS_SEED={seed}");
    let mut rng = SeededRng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut agg = Aggregator::start(dir.path(), &[]).await;
    let port = agg.port;
    let all = entries(&mut rng, 150);
    let distinct: BTreeSet<Key> = all.iter().cloned().collect();
    let mut acked: HashSet<Key> = HashSet::new();
    let mut squatters = 0;

    for step in 0..14 {
        match rng.below(5) {
            // A push of a random part, with repeats inside.
            0 | 1 => {
                let mut part: Vec<Key> = (0..1 + rng.below(40))
                    .map(|_| all[rng.below(all.len() as u64) as usize].clone())
                    .collect();
                part.extend(part.clone().into_iter().take(rng.below(5) as usize));
                if push(&agg, &mut rng, &part).await == StatusCode::NO_CONTENT {
                    acked.extend(part);
                }
            }
            // Two overlapping pushes at once.
            2 => {
                let a: Vec<Key> = all.iter().filter(|_| rng.below(3) == 0).cloned().collect();
                let b: Vec<Key> = all.iter().filter(|_| rng.below(3) == 0).cloned().collect();
                let (mut r1, mut r2) = (
                    SeededRng::new(rng.next_u64()),
                    SeededRng::new(rng.next_u64()),
                );
                let (s1, s2) =
                    futures_util::join!(push(&agg, &mut r1, &a), push(&agg, &mut r2, &b));
                if s1 == StatusCode::NO_CONTENT {
                    acked.extend(a);
                }
                if s2 == StatusCode::NO_CONTENT {
                    acked.extend(b);
                }
            }
            // A record that takes the id an entry will derive: a collision.
            3 => {
                let (s, ts, line) = &all[rng.below(all.len() as u64) as usize];
                let id = event_id(&vec![("job".to_owned(), s.clone())], *ts, line, 0);
                let (status, answer) = post_ndjson(
                    &agg.url("/logs"),
                    &[json!({"message": "squatter", "event_id": id})],
                )
                .await;
                assert_eq!(status, StatusCode::OK);
                // Stored only when the entry did not take the id first.
                squatters += answer["accepted"].as_u64().unwrap_or(0) as usize;
            }
            // kill -9, then every acknowledged entry must be there, once.
            _ => {
                agg.process.kill();
                agg = Aggregator::start_on(port, dir.path(), &[]).await;
                let now = assert_once(&stored(&agg).await, seed);
                let missing: Vec<&Key> = acked.iter().filter(|k| !now.contains(*k)).collect();
                assert!(missing.is_empty(), "step {step}: acknowledged entries lost after kill -9: {missing:?} (seed {seed})");
            }
        }
        assert_once(&stored(&agg).await, seed);
    }
    // Everything once more, whole: exactly the distinct entries, beside the squatters.
    assert_eq!(push(&agg, &mut rng, &all).await, StatusCode::NO_CONTENT);
    assert_eq!(
        assert_once(&stored(&agg).await, seed),
        distinct,
        "seed {seed}"
    );
    let squatting = all_logs(&agg.base, &[])
        .await
        .iter()
        .filter(|r| r["message"] == "squatter")
        .count();
    assert_eq!(squatting, squatters, "seed {seed}");
}
