//! Exactly once across aggregators on the ClickHouse store: two aggregators share one
//! (private, real) ClickHouse server.
//!
//! - `a_batch_retried_through_the_other_aggregator_is_stored_once`: a batch sent to
//!   one and then to the other is stored once (the second answer counts duplicates);
//!   a batch sent to both at the same moment is shown and counted once by both.
//! - `records_stored_through_one_aggregator_reach_the_other_ones_tail`: the live feed
//!   follows ClickHouse, not only its own aggregator.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::clickhouse::{assert_exactly_once, available, batch, pairs, try_post, ClickHouse};
use common::Aggregator;
use futures_util::StreamExt;

#[actix_rt::test]
async fn a_batch_retried_through_the_other_aggregator_is_stored_once() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(&dir.path().join("clickhouse")).await;
    let env = ch.env("twice");
    let a = Aggregator::start(&dir.path().join("a"), &pairs(&env)).await;
    let b = Aggregator::start(&dir.path().join("b"), &pairs(&env)).await;
    let mut sent = BTreeSet::new();

    // Retried after an answer (lost on the way back, say): the other one finds it.
    let (body, ids) = batch("retry", 0, 200);
    sent.extend(ids);
    let (status, first) = try_post(&a.url("/logs"), &body).await.unwrap();
    assert_eq!((status, first["accepted"].as_u64()), (200, Some(200)));
    let (status, again) = try_post(&b.url("/logs"), &body).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(200))
    );

    // Half stored, half new.
    let (more, more_ids) = batch("retry", 1, 100);
    sent.extend(more_ids);
    let mixed: String = body
        .lines()
        .take(50)
        .chain(more.lines())
        .map(|l| format!("{l}\n"))
        .collect();
    let (_, answer) = try_post(&b.url("/logs"), &mixed).await.unwrap();
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(100), Some(50))
    );

    // Sent to both at the same moment, ten times: both may store it, nothing shows twice.
    let mut both = 0;
    for round in 0..10 {
        let (body, ids) = batch("race", round, 100);
        sent.extend(ids);
        let (url_a, url_b) = (a.url("/logs"), b.url("/logs"));
        let (x, y) = futures_util::join!(try_post(&url_a, &body), try_post(&url_b, &body));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!((x.0, y.0), (200, 200));
        let stored = x.1["accepted"].as_u64().unwrap() + y.1["accepted"].as_u64().unwrap();
        assert!((100..=200).contains(&stored), "{x:?} {y:?}");
        both += u32::from(stored > 100);
    }
    println!("{both} of 10 batches sent to both at once were stored by both");
    for agg in [&a, &b] {
        assert_exactly_once(&agg.base, &sent).await;
    }
    // Cursors of both aggregators walk the same records: the ids are ClickHouse's.
    let via_a = common::all_logs(&a.base, &[]).await;
    let via_b = common::all_logs(&b.base, &[]).await;
    assert_eq!(via_a, via_b);
}

#[actix_rt::test]
async fn records_stored_through_one_aggregator_reach_the_other_ones_tail() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(&dir.path().join("clickhouse")).await;
    let env = ch.env("feed");
    let a = Aggregator::start(&dir.path().join("a"), &pairs(&env)).await;
    let b = Aggregator::start(&dir.path().join("b"), &pairs(&env)).await;
    let res = awc::Client::builder()
        .timeout(Duration::from_secs(3600))
        .finish()
        .get(a.url("/logs/tail?service=svc"))
        .send()
        .await
        .expect("tail answered");
    assert_eq!(res.status().as_u16(), 200);
    let mut stream = Box::pin(res);
    // The tail starts following once it is open; records from then on are sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (body, ids) = batch("feed", 0, 3);
    let mut text = String::new();
    let mut posted = false;
    while !ids.iter().all(|id| text.contains(id.as_str())) {
        if !posted {
            actix_rt::time::sleep(Duration::from_millis(500)).await;
            let (status, _) = try_post(&b.url("/logs"), &body).await.unwrap();
            assert_eq!(status, 200);
            posted = true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk.unwrap())),
            _ => panic!("the tail of one aggregator did not show what the other stored: {text}"),
        }
    }
    // Each once.
    for id in &ids {
        assert_eq!(text.matches(&format!("\"{id}\"")).count(), 1, "{text}");
    }
}
