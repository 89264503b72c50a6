//! The console's endpoints over HTTP against the real binary, on the default store.
//!
//! - `volume_buckets_add_up_to_the_query_total`: `GET /logs/volume` with the filters of
//!   `GET /logs` (service, level, q, request_id, a time range) has buckets whose counts
//!   add up to `GET /logs`' total for the same filters, facets and a service overview
//!   matching the records' statuses; bad parameters are 400s that name them.
//! - `the_tail_streams_new_records_and_resumes`: `GET /logs/tail` sends a matching
//!   record POSTed after it opened, within a second of the acknowledgement (printed),
//!   skips non-matching ones, and a reconnect with `Last-Event-ID` gets exactly the
//!   records it missed; an id from another run gets a `skipped` event.
//! - `a_client_that_does_not_read_is_told_it_skipped`: a tail whose client stops reading
//!   while far more arrives than the aggregator keeps (48 MB in 400 commits) gets a
//!   `skipped` event when it reads again, then the live records: the server held no
//!   more for it than its bounded buffers.
//! - `open_tails_do_not_hold_up_a_stop`: SIGTERM ends open tails' streams, so the
//!   aggregator exits at once rather than after `SHUTDOWN_GRACE`.

mod common;

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{get, post_ndjson, Aggregator};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Records at known times: 3 services, levels, statuses and durations.
fn known_records(base_s: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..120i64 {
        let service = ["user-service", "order-service", "payment-service"][(i % 3) as usize];
        let status = match i % 10 {
            0 => 503,
            1 | 2 => 404,
            _ => 200,
        };
        let level = if status >= 500 {
            "ERROR"
        } else if status >= 400 {
            "WARN"
        } else {
            "INFO"
        };
        let t = chrono::DateTime::from_timestamp(base_s + i * 7, 0).unwrap();
        out.push(json!({
            "timestamp": t.to_rfc3339(),
            "service": service,
            "level": level,
            "message": format!("GET /orders/{i} answered {status} after lookup"),
            "request_id": format!("req-{}", i % 4),
            "status": status,
            "duration_ms": 10 + i,
            "event_id": format!("known-{i}"),
        }));
    }
    out
}

fn sum_buckets(v: &Value) -> u64 {
    v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let counts: u64 = b["counts"]
                .as_object()
                .unwrap()
                .values()
                .map(|n| n.as_u64().unwrap())
                .sum();
            assert_eq!(counts, b["total"].as_u64().unwrap(), "{b}");
            counts
        })
        .sum()
}

#[actix_rt::test]
async fn volume_buckets_add_up_to_the_query_total() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[]).await;
    let base_s = 1_780_000_020; // 2026-05-28, on a whole minute
    let records = known_records(base_s);
    let (status, body) = post_ndjson(&agg.url("/logs"), &records).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let since = chrono::DateTime::from_timestamp(base_s, 0)
        .unwrap()
        .to_rfc3339();
    let until = chrono::DateTime::from_timestamp(base_s + 600, 0)
        .unwrap()
        .to_rfc3339();
    let range = format!("since={}&until={}", urlencode(&since), urlencode(&until));
    for filters in [
        String::new(),
        "service=order-service".to_owned(),
        "level=warn".to_owned(),
        "q=answered+503".to_owned(),
        "request_id=req-1".to_owned(),
        "service=user-service&q=lookup".to_owned(),
    ] {
        let (s, page) = get(&agg.url(&format!("/logs?{range}&{filters}")), &[]).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let total = page["total"].as_u64().unwrap();
        let (s, vol) = get(
            &agg.url(&format!("/logs/volume?{range}&{filters}&step=1m")),
            &[],
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{filters}: {vol}");
        assert_eq!(vol["total"].as_u64(), Some(total), "{filters}");
        assert_eq!(sum_buckets(&vol), total, "{filters}");
        assert_eq!(vol["buckets"].as_array().unwrap().len(), 10);
        assert_eq!(vol["step"], "1m");
        let facet_sum: u64 = vol["facets"]["service"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(facet_sum, total, "{filters}");
    }
    // The whole store without a range: the range starts at the oldest record.
    let (_, vol) = get(&agg.url("/logs/volume?by=service"), &[]).await;
    assert_eq!(vol["total"], 120, "{vol}");
    assert_eq!(sum_buckets(&vol), 120);
    assert_eq!(vol["by"], "service");
    assert!(
        vol["buckets"][0]["counts"]["user-service"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(vol["facets"]["level"]["ERROR"], 12, "{vol}");
    // The overview counts what the records say.
    let mut expect: std::collections::BTreeMap<&str, (u64, u64, u64)> = Default::default();
    for r in &records {
        let e = expect.entry(r["service"].as_str().unwrap()).or_default();
        let st = r["status"].as_u64().unwrap();
        e.0 += 1;
        e.1 += u64::from((400..500).contains(&st));
        e.2 += u64::from(st >= 500);
    }
    for (service, (requests, c4, c5)) in expect {
        let s = &vol["services"][service];
        assert_eq!(s["requests"].as_u64(), Some(requests), "{service}: {s}");
        assert_eq!(s["status_4xx"].as_u64(), Some(c4), "{service}: {s}");
        assert_eq!(s["status_5xx"].as_u64(), Some(c5), "{service}: {s}");
        let p50 = s["p50_ms"].as_f64().unwrap();
        assert!((10.0..140.0).contains(&p50), "{service}: {s}");
    }
    for (query, param) in [
        ("step=fast", "step"),
        ("step=0", "step"),
        ("by=host", "by"),
        ("since=yesterday", "since"),
        ("step=1ms&since=2020-01-01T00:00:00Z", "step"),
    ] {
        let (s, err) = get(&agg.url(&format!("/logs/volume?{query}")), &[]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {err}");
        let msg = err["error"].as_str().unwrap();
        assert!(msg.contains(param), "{query}: {msg}");
    }
    let res = common::client()
        .post(agg.url("/logs/volume"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers().get("allow").unwrap(), "GET");
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// An open event stream, read event by event.
struct Events {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>>>,
    >,
    buf: String,
}

/// One Server-Sent Event.
#[derive(Debug, Default, Clone)]
struct Event {
    id: Option<String>,
    kind: String,
    data: String,
}

impl Events {
    async fn open(url: &str, last_id: Option<&str>) -> Events {
        let mut req = awc::Client::builder()
            .timeout(Duration::from_secs(3600))
            .finish()
            .get(url);
        if let Some(id) = last_id {
            req = req.insert_header(("Last-Event-ID", id));
        }
        let body = req.send().await.expect("tail answered");
        assert_eq!(body.status(), StatusCode::OK);
        assert_eq!(
            body.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        Events {
            body: Box::pin(body),
            buf: String::new(),
        }
    }

    /// The next event (comments and `retry:` skipped), up to `deadline`.
    async fn next(&mut self, deadline: Instant) -> Option<Event> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Event {
                    kind: "message".to_owned(),
                    ..Event::default()
                };
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.kind = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v);
                    }
                }
                if data.is_empty() {
                    continue;
                }
                ev.data = data.join("\n");
                return Some(ev);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.body.next()).await.ok()??;
            self.buf
                .push_str(std::str::from_utf8(&chunk.expect("stream chunk")).unwrap());
        }
    }
}

#[actix_rt::test]
async fn the_tail_streams_new_records_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[]).await;
    let url = agg.url("/logs/tail?service=order-service&level=info");
    let mut tail = Events::open(&url, None).await;
    let mut last_id = None;
    for i in 0..5 {
        let other =
            json!({"service": "user-service", "level": "INFO", "message": format!("other {i}")});
        let wanted = json!({"service": "order-service", "level": "info", "message": format!("wanted {i}"), "status": 200});
        let (s, _) = post_ndjson(&agg.url("/logs"), &[other, wanted]).await;
        assert_eq!(s, StatusCode::OK);
        let acked = Instant::now();
        let ev = tail
            .next(acked + Duration::from_secs(5))
            .await
            .expect("an event");
        let latency = acked.elapsed();
        println!("acknowledged to event: {latency:?}");
        assert!(latency < Duration::from_secs(1), "{latency:?}");
        assert_eq!(ev.kind, "log");
        let rec: Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(rec["message"], format!("wanted {i}"));
        assert!(rec["aggregator_received_at"].is_string());
        last_id = ev.id;
    }
    drop(tail);
    // Missed while disconnected: given on resumption, in order, then the live ones.
    let missed: Vec<Value> = (0..3)
            .map(|i| json!({"service": "order-service", "level": "INFO", "message": format!("missed {i}")}))
            .collect();
    assert_eq!(
        post_ndjson(&agg.url("/logs"), &missed).await.0,
        StatusCode::OK
    );
    let mut tail = Events::open(&url, last_id.as_deref()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    for i in 0..3 {
        let ev = tail.next(deadline).await.expect("a missed event");
        let rec: Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(rec["message"], format!("missed {i}"));
    }
    let live = json!({"service": "order-service", "level": "INFO", "message": "live\nline"});
    assert_eq!(
        post_ndjson(&agg.url("/logs"), &[live]).await.0,
        StatusCode::OK
    );
    let ev = tail
        .next(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    let rec: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(rec["message"], "live\nline");
    // An id of another run: told so, not resumed from the wrong place.
    let mut tail = Events::open(&url, Some("1-5")).await;
    let ev = tail
        .next(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ev.kind, "skipped", "{ev:?}");
    // Bad filters are refused before the stream opens.
    let (s, err) = get(&agg.url("/logs/tail?since=never"), &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
}

#[actix_rt::test]
async fn the_console_endpoints_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[("AGGREGATOR_TOKEN", "s3cret")]).await;
    for path in ["/logs/volume", "/logs/tail"] {
        let (s, _) = get(&agg.url(path), &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (s, vol) = get(
        &agg.url("/logs/volume"),
        &[("Authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{vol}");
    assert_eq!(vol["total"], 0);
}

#[actix_rt::test]
async fn a_client_that_does_not_read_is_told_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[]).await;
    let mut tail = Events::open(&agg.url("/logs/tail?service=big"), None).await;
    // More commits than the hub's channel holds (256), more bytes than its ring (16 MiB)
    // and the sockets' buffers together.
    let filler = "x".repeat(120_000);
    for i in 0..400 {
        let r = json!({"service": "big", "level": "INFO", "message": format!("big {i} {filler}")});
        let (s, body) = post_ndjson(&agg.url("/logs"), &[r]).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let marker = json!({"service": "big", "level": "INFO", "message": "after the flood"});
    assert_eq!(
        post_ndjson(&agg.url("/logs"), &[marker]).await.0,
        StatusCode::OK
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut logs, mut skipped) = (0, 0);
    loop {
        let ev = tail.next(deadline).await.expect("events until the marker");
        match ev.kind.as_str() {
            "skipped" => {
                skipped += 1;
                assert!(ev.data.contains("too slowly"), "{}", ev.data);
            }
            "log" => {
                logs += 1;
                if ev.data.contains("after the flood") {
                    break;
                }
            }
            other => panic!("unexpected event {other}"),
        }
    }
    println!("a client that stopped reading: {logs} records delivered, told {skipped} times that it skipped");
    assert!(skipped >= 1, "{logs} records and no skipped event");
    assert!(logs < 401, "{logs}");
}

#[actix_rt::test]
async fn open_tails_do_not_hold_up_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = Aggregator::start(dir.path(), &[("SHUTDOWN_GRACE", "60s")]).await;
    let mut tail = Events::open(&agg.url("/logs/tail"), None).await;
    let r = json!({"service": "s", "message": "before the stop"});
    assert_eq!(post_ndjson(&agg.url("/logs"), &[r]).await.0, StatusCode::OK);
    let ev = tail
        .next(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ev.kind, "log");
    let stopping = Instant::now();
    agg.process.signal(libc::SIGTERM);
    // The stream ends (the client sees its end, then reconnects elsewhere).
    assert!(tail
        .next(Instant::now() + Duration::from_secs(20))
        .await
        .is_none());
    let status = agg
        .process
        .wait_timeout(Duration::from_secs(20))
        .expect("stops after SIGTERM");
    println!(
        "stopped {:?} after SIGTERM with a tail open",
        stopping.elapsed()
    );
    assert!(status.success(), "{status:?}");
    assert!(stopping.elapsed() < Duration::from_secs(10));
}
