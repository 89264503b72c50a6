//! One client against the real aggregator, trying to exhaust, block or grow it; each
//! test shows the bound holding and the other clients still served.
//!
//! - `metrics_stay_bounded_under_distinct_methods_and_paths`: 20,000 methods and paths
//!   never seen before leave `/metrics` the size it was.
//! - `slow_bodies_hold_no_slot_and_time_out`: 16 connections that send headers and no
//!   body; a normal batch is stored meanwhile, and each slow one gets a 408.
//! - `one_client_cannot_take_every_ingest_request`: past its per-client limit a client
//!   gets 429 with `Retry-After`.
//! - `tiny_record_bombs_stay_within_the_memory_bound`: gzip bodies of millions of tiny
//!   records, three at once, refused by the record limit (defaults) or the memory
//!   budget; peak memory stays under the documented bound, and a normal batch is
//!   stored after.
//! - `query_cost_is_bounded`: a word repeated 1,000 times is one word; too many words
//!   are a 400; a query past `QUERY_TIMEOUT` is a 503 naming it, and others are served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{get, post, post_ndjson, records, sample, Aggregator};
use serde_json::Value;

/// Peak resident memory of the process, MiB.
fn peak_mib(agg: &Aggregator) -> f64 {
    shared::measure::memory_mib(agg.process.id())
        .expect("read /proc")
        .1
}

/// A connection that sends a POST's headers, promising a body it never sends.
fn slow_body(agg: &Aggregator) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", agg.port)).unwrap();
    write!(
        stream,
        "POST /logs HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n{{\"message\":"
    )
    .unwrap();
    stream
}

/// The status and JSON body of the answer on a raw connection.
fn read_answer(stream: &mut TcpStream) -> (u16, Value) {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn metrics_stay_bounded_under_distinct_methods_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[]).await;
    shared::testkit::assert_metrics_stay_bounded(
        format!("127.0.0.1:{}", agg.port).parse().unwrap(),
    )
    .await;
}

#[actix_rt::test]
async fn slow_bodies_hold_no_slot_and_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(
        dir.path(),
        &[
            ("BODY_READ_TIMEOUT", "3s"),
            ("INGEST_SLOTS", "2"),
            ("INGEST_MAX_REQUESTS_PER_CLIENT", "32"),
        ],
    )
    .await;
    let mut slow: Vec<TcpStream> = (0..16).map(|_| slow_body(&agg)).collect();
    // Every one of them is being read before the normal batch comes.
    agg.wait_sample("aggregator_ingest_requests", 16.0).await;
    let (status, answer) = post_ndjson(&agg.url("/logs"), &records("normal", "svc", 10)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 10);
    let text = agg.metrics().await;
    assert_eq!(sample(&text, "aggregator_ingest_requests"), 16.0, "{text}");
    for stream in &mut slow {
        let (status, answer) = read_answer(stream);
        assert_eq!(status, 408, "{answer}");
        assert_eq!(
            answer["error"],
            "the request body did not arrive within 3s (BODY_READ_TIMEOUT)"
        );
    }
    let text = agg.metrics().await;
    assert_eq!(
        sample(
            &text,
            "aggregator_requests_rejected_total{reason=\"read_timeout\"}"
        ),
        16.0
    );
    assert_eq!(sample(&text, "aggregator_ingest_requests"), 0.0);
    assert_eq!(sample(&text, "aggregator_ingest_memory_bytes"), 0.0);
    let (_, count) = get(&agg.url("/logs/count"), &[]).await;
    assert_eq!(count["total_logs"], 10);
}

#[actix_rt::test]
async fn one_client_cannot_take_every_ingest_request() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[("INGEST_MAX_REQUESTS_PER_CLIENT", "2")]).await;
    let _slow: Vec<TcpStream> = (0..2).map(|_| slow_body(&agg)).collect();
    agg.wait_sample("aggregator_ingest_requests", 2.0).await;
    let mut res = common::client()
        .post(agg.url("/logs"))
        .insert_header(("Content-Type", "application/x-ndjson"))
        .send_body("{\"message\":\"one too many\"}\n")
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers().get("retry-after").unwrap(), "1");
    let answer: Value = res.json().await.unwrap();
    assert_eq!(
        answer["error"],
        "this client already has 2 ingest requests under way; wait for their answers"
    );
    let text = agg.metrics().await;
    assert_eq!(
        sample(
            &text,
            "aggregator_requests_rejected_total{reason=\"client_too_many_requests\"}"
        ),
        1.0
    );
    // Queries are not ingest: the same client is still answered.
    let (status, _) = get(&agg.url("/logs?limit=1"), &[]).await;
    assert_eq!(status, StatusCode::OK);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[actix_rt::test]
async fn tiny_record_bombs_stay_within_the_memory_bound() {
    /// The documented bound of ingest memory with the default settings (docs/log-aggregator.md).
    const BOUND_MIB: f64 = 512.0;
    // 16 MiB of 8-byte records: two million of them, in about 16 KiB of gzip.
    let bomb = gzip(&b"{\"a\":1}\n".repeat(2 << 20));
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    for (env, refusal) in [
        // The defaults: the record limit refuses each bomb early.
        (vec![], "too_many_records"),
        // No practical record limit: the memory budget refuses them (a smaller budget
        // than the default, so that a debug build reaches it quickly).
        (
            vec![
                ("MAX_RECORDS_PER_REQUEST", "10000000"),
                ("INGEST_MEMORY_BUDGET", "64MiB"),
            ],
            "memory_budget",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let agg = Aggregator::start(dir.path(), &env).await;
        let logs = agg.url("/logs");
        let sends = (0..3).map(|_| {
            post(
                &logs,
                "application/x-ndjson",
                &[("Content-Encoding", "gzip")],
                bomb.clone(),
            )
        });
        for (status, answer) in futures_util::future::join_all(sends).await {
            assert!(
                status == StatusCode::PAYLOAD_TOO_LARGE
                    || status == StatusCode::SERVICE_UNAVAILABLE,
                "{status}: {answer}"
            );
        }
        let text = agg.metrics().await;
        let reason = format!("aggregator_requests_rejected_total{{reason=\"{refusal}\"}}");
        assert!(sample(&text, &reason) >= 1.0, "{reason}:\n{text}");
        let peak = peak_mib(&agg);
        assert!(
            peak < BOUND_MIB,
            "peak memory {peak:.0} MiB over the bound of {BOUND_MIB} MiB"
        );
        // Everything came back; others are served.
        assert_eq!(sample(&text, "aggregator_ingest_memory_bytes"), 0.0);
        let (status, answer) = post_ndjson(&agg.url("/logs"), &records("after", "svc", 100)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let (_, count) = get(&agg.url("/logs/count"), &[]).await;
        assert_eq!(count["total_logs"], 100, "{count}");
        println!("{refusal}: peak {peak:.0} MiB");
    }
}

#[actix_rt::test]
async fn query_cost_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(
        dir.path(),
        &[("READER_THREADS", "1"), ("QUERY_TIMEOUT", "10ms")],
    )
    .await;
    // Every message holds "request" and "handled".
    for chunk in 0..10 {
        let batch = records(&format!("c{chunk}"), "svc", 5_000);
        let (status, answer) = post_ndjson(&agg.url("/logs"), &batch).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let repeated = vec!["request"; 1000].join("+");
    let many: Vec<String> = (0..17).map(|i| format!("word{i}")).collect();
    let (status, answer) = get(&agg.url(&format!("/logs?q={}", many.join("+"))), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(
        answer["error"],
        "invalid q: it has 17 words; a search may have at most 16 (QUERY_MAX_TERMS)"
    );

    // Sixteen searches at once on one reader: those that wait past QUERY_TIMEOUT are
    // told so, and the reader goes on serving.
    let url = agg.url(&format!("/logs?q={repeated}&limit=1"));
    let sends = (0..16).map(|_| get(&url, &[]));
    let answers = futures_util::future::join_all(sends).await;
    let mut timed_out = 0;
    for (status, answer) in &answers {
        match *status {
            StatusCode::OK => assert_eq!(answer["total"], 50_000, "{answer}"),
            StatusCode::SERVICE_UNAVAILABLE => {
                timed_out += 1;
                assert!(
                    answer["error"]
                        .as_str()
                        .unwrap()
                        .starts_with("the query did not finish within 10ms (QUERY_TIMEOUT)"),
                    "{answer}"
                );
                assert_eq!(answer["timeout_ms"], 10);
            }
            other => panic!("{other}: {answer}"),
        }
    }
    assert!(timed_out > 0, "no search waited past 10ms: {answers:?}");
    let text = agg.metrics().await;
    assert_eq!(
        sample(
            &text,
            "aggregator_requests_rejected_total{reason=\"query_timeout\"}"
        ),
        timed_out as f64
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = get(&agg.url("/logs?limit=1"), &[]).await;
        if status == StatusCode::OK {
            assert_eq!(page["logs"].as_array().unwrap().len(), 1);
            break;
        }
        assert!(Instant::now() < deadline, "{status}: {page}");
    }
    let (status, _) = get(&agg.url("/health"), &[]).await;
    assert_eq!(status, StatusCode::OK);
}
