//! The ClickHouse store under faults, against a private, real ClickHouse server:
//!
//! - `an_aggregator_killed_and_clickhouse_restarted_lose_and_repeat_nothing`: two
//!   aggregators, a sender whose batches alternate between them (some sent to both at
//!   once) and that retries a failed batch through the other one; one aggregator is
//!   kill -9'd mid-stream and started again, and ClickHouse is kill -9'd and restarted
//!   once, at seeded random moments that may overlap (the seed is printed; replay with
//!   `CLICKHOUSE_FAULT_SEED`). Every record is stored exactly once.
//! - `clickhouse_down_for_a_while_answers_503_then_catches_up`: while ClickHouse is
//!   down (`CLICKHOUSE_TEST_OUTAGE`, 5s by default; the 30s with
//!   `CLICKHOUSE_TEST_OUTAGE=30s`) ingest and queries answer 503 and `/health` names
//!   ClickHouse; once it is back, the batches kept by the sender are all stored, once.
//! - `a_hung_clickhouse_is_reported_and_then_recovered`: a server that keeps its
//!   connections but answers nothing (SIGSTOP) is reported by `/health` within about
//!   `CLICKHOUSE_TIMEOUT`, ingest answers 503, and after SIGCONT both recover.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::clickhouse::{
    assert_exactly_once, available, batch, deliver, pairs, try_post, ClickHouse,
};
use common::{get, Aggregator};
use shared::testkit::{free_port, SeededRng};

#[actix_rt::test]
async fn an_aggregator_killed_and_clickhouse_restarted_lose_and_repeat_nothing() {
    if !available() {
        return;
    }
    let seed = SeededRng::seed_from_env("CLICKHOUSE_FAULT_SEED");
    println!("seed {seed} (replay: CLICKHOUSE_FAULT_SEED={seed})");
    let rng = RefCell::new(SeededRng::new(seed));
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(&dir.path().join("clickhouse")).await;
    let mut env = ch.env("faults");
    env.push(("CLICKHOUSE_TIMEOUT", "2s".to_owned()));
    let env = pairs(&env);
    let port_a = free_port();
    let a = RefCell::new(Some(
        Aggregator::start_on(port_a, &dir.path().join("a"), &env).await,
    ));
    let b = Aggregator::start(&dir.path().join("b"), &env).await;
    let bases = [format!("http://127.0.0.1:{port_a}"), b.base.clone()];
    let faults_done = Cell::new(0);

    let kill_aggregator = async {
        let (wait, down) = {
            let mut r = rng.borrow_mut();
            (r.millis(200, 1500), r.millis(200, 1500))
        };
        actix_rt::time::sleep(wait).await;
        println!("kill -9 aggregator a after {wait:?}, for {down:?}");
        if let Some(mut agg) = a.borrow_mut().take() {
            agg.process.kill();
        }
        actix_rt::time::sleep(down).await;
        let agg = Aggregator::start_on(port_a, &dir.path().join("a"), &env).await;
        *a.borrow_mut() = Some(agg);
        faults_done.set(faults_done.get() + 1);
    };
    let restart_clickhouse = async {
        let mut ch = ch;
        let (wait, down) = {
            let mut r = rng.borrow_mut();
            (r.millis(200, 2000), r.millis(200, 2000))
        };
        actix_rt::time::sleep(wait).await;
        println!("kill -9 clickhouse after {wait:?}, for {down:?}");
        ch.kill();
        actix_rt::time::sleep(down).await;
        ch.restart().await;
        faults_done.set(faults_done.get() + 1);
        ch
    };
    let send = async {
        let mut sent = BTreeSet::new();
        let mut raced = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        // At least 40 batches, and on until both faults are over.
        let mut n = 0;
        while n < 40 || faults_done.get() < 2 {
            let (body, ids) = batch("f", n, 50);
            sent.extend(ids);
            let both = rng.borrow_mut().below(5) == 0;
            if both {
                // A sender that timed out and retried elsewhere while the first attempt
                // still ran: both attempts in flight at once.
                raced += 1;
                let (x, y) = futures_util::join!(
                    deliver(&bases, 0, &body, deadline),
                    deliver(&bases, 1, &body, deadline)
                );
                assert!(x.accepted + y.accepted >= 50, "{x:?} {y:?}");
            } else {
                let d = deliver(&bases, n % 2, &body, deadline).await;
                assert_eq!(d.accepted + d.duplicates, 50, "{d:?}");
            }
            n += 1;
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        println!("{n} batches, {raced} of them sent to both at once");
        sent
    };
    let (sent, (), _ch) = futures_util::join!(send, kill_aggregator, restart_clickhouse);
    let a = a.borrow_mut().take().unwrap();
    for agg in [&a, &b] {
        assert_exactly_once(&agg.base, &sent).await;
    }
}

#[actix_rt::test]
async fn clickhouse_down_for_a_while_answers_503_then_catches_up() {
    if !available() {
        return;
    }
    let outage = std::env::var("CLICKHOUSE_TEST_OUTAGE")
        .ok()
        .map(|v| {
            shared::config::parse_duration(&v)
                .expect("CLICKHOUSE_TEST_OUTAGE: a duration such as 30s")
        })
        .unwrap_or(Duration::from_secs(5));
    println!("ClickHouse down for {outage:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut ch = ClickHouse::start(&dir.path().join("clickhouse")).await;
    let mut env = ch.env("outage");
    env.push(("CLICKHOUSE_TIMEOUT", "2s".to_owned()));
    let agg = Aggregator::start(&dir.path().join("a"), &pairs(&env)).await;
    let bases = [agg.base.clone()];
    let mut sent = BTreeSet::new();
    let deadline = Instant::now() + outage + Duration::from_secs(120);
    for n in 0..5 {
        let (body, ids) = batch("o", n, 100);
        sent.extend(ids);
        assert_eq!(deliver(&bases, 0, &body, deadline).await.accepted, 100);
    }

    ch.kill();
    let down_since = Instant::now();
    let (body, _) = batch("probe", 0, 10);
    let (status, answer) = try_post(&agg.url("/logs"), &body).await.unwrap();
    assert_eq!(status, 503, "{answer}");
    let (status, _) = get(&agg.url("/logs"), &[]).await;
    assert_eq!(status.as_u16(), 503);
    let (status, health) = get(&agg.url("/health"), &[]).await;
    assert_eq!(status.as_u16(), 503, "{health}");
    assert!(
        health["problems"][0]
            .as_str()
            .unwrap()
            .contains("clickhouse"),
        "{health}"
    );

    // The sender keeps its batches (as the sidecar keeps its file) and retries them.
    let unavailable = Cell::new(0);
    let send = async {
        for n in 5..40 {
            let (body, ids) = batch("o", n, 100);
            sent.extend(ids);
            let d = deliver(&bases, 0, &body, deadline).await;
            unavailable.set(unavailable.get() + d.unavailable);
            assert_eq!(d.accepted, 100, "{d:?}");
        }
    };
    let back = async {
        actix_rt::time::sleep(outage.saturating_sub(down_since.elapsed())).await;
        ch.restart().await;
        println!("ClickHouse back after {:?}", down_since.elapsed());
    };
    futures_util::join!(send, back);
    assert!(unavailable.get() > 0, "no 503 while ClickHouse was down");
    println!("{} answers 503 during the outage", unavailable.get());
    assert_exactly_once(&agg.base, &sent).await;
    let (status, health) = get(&agg.url("/health"), &[]).await;
    assert_eq!(status.as_u16(), 200, "{health}");
}

/// Polls `/health` until it answers `status`, for at most `within`.
async fn health_becomes(base: &str, status: u16, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let (now, health) = get(&format!("{base}/health"), &[]).await;
        if now.as_u16() == status {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "/health still answers {now} after {within:?}: {health}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn a_hung_clickhouse_is_reported_and_then_recovered() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(&dir.path().join("clickhouse")).await;
    let mut env = ch.env("hung");
    env.push(("CLICKHOUSE_TIMEOUT", "1s".to_owned()));
    let agg = Aggregator::start(&dir.path().join("a"), &pairs(&env)).await;
    let mut sent = BTreeSet::new();
    let (body, ids) = batch("h", 0, 100);
    sent.extend(ids);
    let deadline = Instant::now() + Duration::from_secs(60);
    assert_eq!(
        deliver(std::slice::from_ref(&agg.base), 0, &body, deadline)
            .await
            .accepted,
        100
    );

    ch.pause(true);
    // The check runs every second and gives up after CLICKHOUSE_TIMEOUT.
    let health = health_becomes(&agg.base, 503, Duration::from_secs(20)).await;
    let problem = health["problems"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(problem.contains("clickhouse is failing"), "{health}");
    let (body, _) = batch("probe", 0, 10);
    let (status, answer) = try_post(&agg.url("/logs"), &body).await.unwrap();
    assert_eq!(status, 503, "{answer}");

    ch.pause(false);
    health_becomes(&agg.base, 200, Duration::from_secs(30)).await;
    let (body, ids) = batch("h", 1, 100);
    sent.extend(ids);
    assert_eq!(
        deliver(std::slice::from_ref(&agg.base), 0, &body, deadline)
            .await
            .accepted,
        100
    );
    assert_exactly_once(&agg.base, &sent).await;
}
