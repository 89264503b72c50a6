//! `POST /loki/api/v1/push` over HTTP against the real binary, in the wire formats
//! Loki's clients send.
//!
//! - `protobuf_and_json_pushes_are_stored_as_records`: protobuf + snappy written field
//!   by field from the schema, JSON and gzipped JSON; 204; every entry a record with its
//!   labels, metadata, line fields and time.
//! - `a_resent_entry_is_stored_once_and_a_different_one_never_dropped`: re-sends and
//!   repeats within a push stored once; same time and stream with another line, or the
//!   same line in another stream, stored; a forged id collision still stored.
//! - `bad_pushes_are_refused_and_change_nothing`: 400, 401, 413, 415 as plain text.
//! - `pushes_keep_the_ingest_bounds_of_post_logs`: the record limit (413), a client's
//!   share of ingest requests (429), the body read timeout (408), 405 with `Allow`.

mod common;

use awc::http::StatusCode;
use common::loki::{gzip, json_push, push_request, query, send, snappy, Entry};
use common::{all_logs, get, post_ndjson, Aggregator};
use log_aggregator::loki::entry::event_id;
use serde_json::{json, Value};

const T0: i64 = 1_700_000_000_000_000_000;
const PROTO: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn by_message<'a>(logs: &'a [Value], message: &str) -> Vec<&'a Value> {
    logs.iter().filter(|l| l["message"] == message).collect()
}

#[actix_rt::test]
async fn protobuf_and_json_pushes_are_stored_as_records() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[]).await;
    let push = agg.url("/loki/api/v1/push");

    let body = push_request(&[
        (
            r#"{job="checkout", service="shop", level="warn"}"#,
            &[
                (T0 + 1, "payment slow \"card\"", &[("trace_id", "t-1")]),
                (
                    T0 + 2,
                    r#"{"message":"paid","status":200,"level":"info"}"#,
                    &[],
                ),
            ],
        ),
        (r#"{job="batch"}"#, &[(T0 + 3, "nightly run done", &[])]),
    ]);
    let (status, text) = send(&push, &[PROTO], snappy(&body)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    assert_eq!(text, "");

    let json_body = json_push(&[(
        json!({"job": "web", "service": "front"}),
        &[(T0 + 4, "GET / 200", &[("user", "u1")])],
    )]);
    let (status, text) = send(&push, &[JSON], json_body.into_bytes()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let gz =
        gzip(json_push(&[(json!({"job": "web"}), &[(T0 + 5, "gzipped line", &[])])]).as_bytes());
    let (status, text) = send(&push, &[JSON, ("Content-Encoding", "gzip")], gz).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");

    let logs = all_logs(&agg.base, &[]).await;
    assert_eq!(logs.len(), 5, "{logs:#?}");
    let slow = by_message(&logs, "payment slow \"card\"")[0];
    assert_eq!(slow["job"], "checkout");
    assert_eq!(slow["level"], "warn");
    assert_eq!(slow["trace_id"], "t-1");
    assert_eq!(slow["timestamp"], "2023-11-14T22:13:20.000000001Z");
    assert_eq!(slow["loki"]["ts"], (T0 + 1).to_string());
    assert!(slow["aggregator_received_at"].is_string());
    // A JSON line is a record like our own: its fields, then the labels it lacks.
    let paid = by_message(&logs, "paid")[0];
    assert_eq!(paid["status"], 200);
    assert_eq!(paid["level"], "info");
    assert_eq!(paid["job"], "checkout");
    assert_eq!(
        paid["loki"]["stream"],
        json!({"job": "checkout", "level": "warn", "service": "shop"})
    );
    assert_eq!(by_message(&logs, "GET / 200")[0]["user"], "u1");
    assert_eq!(by_message(&logs, "gzipped line").len(), 1);

    // The indexed fields follow the labels: service and level filters find them.
    let (_, page) = get(&agg.url("/logs?service=shop&level=WARN"), &[]).await;
    assert_eq!(page["total"], 2, "{page}");
    let (_, page) = get(&agg.url("/logs?q=nightly"), &[]).await;
    assert_eq!(page["total"], 1);

    // And they come back through Loki's API exactly as pushed.
    let (status, v, text) = query(
        &agg.base,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{job="checkout"}"#),
            ("start", &T0.to_string()),
            ("end", &(T0 + 10).to_string()),
            ("direction", "forward"),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2, "metadata is part of the labels: {v}");
    let with_trace = result
        .iter()
        .find(|s| s["stream"]["trace_id"] == "t-1")
        .unwrap();
    assert_eq!(
        with_trace["values"],
        json!([[(T0 + 1).to_string(), "payment slow \"card\""]])
    );
    let plain = result
        .iter()
        .find(|s| s["stream"]["trace_id"].is_null())
        .unwrap();
    assert_eq!(
        plain["stream"],
        json!({"job": "checkout", "level": "warn", "service": "shop"})
    );
    assert_eq!(
        plain["values"][0][1],
        r#"{"message":"paid","status":200,"level":"info"}"#
    );
}

#[actix_rt::test]
async fn a_resent_entry_is_stored_once_and_a_different_one_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[]).await;
    let push = agg.url("/loki/api/v1/push");
    let entries: Vec<(i64, String)> = (0..300)
        .map(|i| (T0 + i / 3, format!("line {}", i % 7)))
        .collect();
    let refs: Vec<common::loki::Entry<'_>> = entries
        .iter()
        .map(|(t, l)| (*t, l.as_str(), &[][..]))
        .collect();
    // Distinct (time, line) pairs among them.
    let mut distinct: Vec<(i64, &str)> = refs.iter().map(|(t, l, _)| (*t, *l)).collect();
    distinct.sort();
    distinct.dedup();
    let body = snappy(&push_request(&[(r#"{job="a"}"#, &refs)]));
    for _ in 0..3 {
        let (status, text) = send(&push, &[PROTO], body.clone()).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    }
    // The same entries in one request twice, and through JSON: still once.
    let twice = snappy(&push_request(&[
        (r#"{job="a"}"#, &refs),
        (r#"{job="a"}"#, &refs),
    ]));
    assert_eq!(send(&push, &[PROTO], twice).await.0, StatusCode::NO_CONTENT);
    let as_json = json_push(&[(json!({"job": "a"}), &refs)]);
    assert_eq!(
        send(&push, &[JSON], as_json.into_bytes()).await.0,
        StatusCode::NO_CONTENT
    );
    let logs = all_logs(&agg.base, &[]).await;
    assert_eq!(logs.len(), distinct.len());

    // Another stream with the same times and lines is other entries.
    let other = snappy(&push_request(&[(r#"{job="b"}"#, &refs)]));
    assert_eq!(send(&push, &[PROTO], other).await.0, StatusCode::NO_CONTENT);
    assert_eq!(all_logs(&agg.base, &[]).await.len(), 2 * distinct.len());

    // A record that already holds the id an entry derives (as a hash collision would)
    // does not make the entry a duplicate: it is stored under the next id.
    let labels = vec![("job".to_owned(), "c".to_owned())];
    let taken = event_id(&labels, T0, "collides", 0);
    let (status, _) = post_ndjson(
        &agg.url("/logs"),
        &[json!({"message": "squatter", "event_id": taken})],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body = snappy(&push_request(&[(r#"{job="c"}"#, &[(T0, "collides", &[])])]));
    for _ in 0..2 {
        assert_eq!(
            send(&push, &[PROTO], body.clone()).await.0,
            StatusCode::NO_CONTENT
        );
    }
    let logs = all_logs(&agg.base, &[]).await;
    assert_eq!(by_message(&logs, "squatter").len(), 1);
    assert_eq!(
        by_message(&logs, "collides").len(),
        1,
        "stored once, under the next id"
    );
    // The first push met the squatter; the second found the entry stored under `#1`.
    let metrics = get_text(&agg.url("/metrics")).await;
    assert!(
        metrics.contains("aggregator_loki_id_collisions_total 1"),
        "{metrics}"
    );
}

async fn get_text(url: &str) -> String {
    let mut res = common::client().get(url).send().await.unwrap();
    String::from_utf8_lossy(&res.body().limit(1 << 20).await.unwrap()).into_owned()
}

/// Headers, body, the status expected and a part of the answer.
type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<u8>, StatusCode, &'a str);

#[actix_rt::test]
async fn bad_pushes_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(
        dir.path(),
        &[("AGGREGATOR_TOKEN", "s3cret"), ("MAX_BODY_BYTES", "64KiB")],
    )
    .await;
    let push = agg.url("/loki/api/v1/push");
    let auth = ("Authorization", "Bearer s3cret");
    let good = snappy(&push_request(&[(r#"{job="a"}"#, &[(T0, "x", &[])])]));
    let big_line = "y".repeat(70 * 1024);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![PROTO],
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "missing bearer token",
        ),
        (
            vec![PROTO, ("Authorization", "Bearer nope")],
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "wrong bearer token",
        ),
        (
            vec![auth, ("Content-Type", "text/csv")],
            good.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Type",
        ),
        (
            vec![auth, PROTO, ("Content-Encoding", "br")],
            good.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Encoding",
        ),
        (
            vec![auth, PROTO],
            b"not snappy at all".to_vec(),
            StatusCode::BAD_REQUEST,
            "snappy",
        ),
        (
            vec![auth, PROTO],
            snappy(b"\x0a\x03\x0a\x01"),
            StatusCode::BAD_REQUEST,
            "protobuf",
        ),
        (
            vec![auth, PROTO],
            snappy(&push_request(&[("{job=a}", &[(T0, "x", &[])])])),
            StatusCode::BAD_REQUEST,
            "error parsing labels",
        ),
        (
            vec![auth, PROTO],
            snappy(&push_request(&[("{}", &[(T0, "x", &[])])])),
            StatusCode::BAD_REQUEST,
            "at least one label pair",
        ),
        (
            vec![auth, JSON],
            br#"{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid JSON push",
        ),
        (
            vec![auth, JSON],
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "empty request body",
        ),
        (
            vec![auth, PROTO],
            snappy(&push_request(&[(r#"{job="a"}"#, &[(T0, &big_line, &[])])])),
            StatusCode::PAYLOAD_TOO_LARGE,
            "exceeds the limit",
        ),
        (
            vec![auth, JSON, ("Content-Encoding", "gzip")],
            gzip(big_line.as_bytes()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "exceeds the limit",
        ),
    ];
    for (headers, body, want, text) in cases {
        let (status, answer) = send(&push, &headers, body).await;
        assert_eq!(status, want, "{headers:?}: {answer}");
        assert!(
            answer.contains(text),
            "{headers:?}: {answer:?} lacks {text:?}"
        );
    }
    let (_, count) = get(&agg.url("/logs/count"), &[auth]).await;
    assert_eq!(count["total_logs"], 0, "{count}");
    let (status, _) = send(&push, &[auth, PROTO], good).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, count) = get(&agg.url("/logs/count"), &[auth]).await;
    assert_eq!(count["total_logs"], 1);
}

/// A connection that sends a push's headers, promising a body it never sends.
fn slow_push(port: u16) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /loki/api/v1/push HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"streams\":"
    )
    .unwrap();
    stream
}

/// The status line and the rest of an answer on a raw connection.
fn read_raw(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

#[actix_rt::test]
async fn pushes_keep_the_ingest_bounds_of_post_logs() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(
        dir.path(),
        &[
            ("MAX_RECORDS_PER_REQUEST", "5"),
            ("BODY_READ_TIMEOUT", "2s"),
            ("INGEST_MAX_REQUESTS_PER_CLIENT", "2"),
        ],
    )
    .await;
    let push = agg.url("/loki/api/v1/push");
    let six: Vec<Entry<'_>> = (0..6).map(|i| (T0 + i, "x", &[][..])).collect();
    let body = snappy(&push_request(&[(r#"{job="a"}"#, &six)]));
    let (status, answer) = send(&push, &[PROTO], body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer.contains("more than 5 records"), "{answer}");
    let (_, count) = get(&agg.url("/logs/count"), &[]).await;
    assert_eq!(count["total_logs"], 0, "{count}");

    // Two pushes whose bodies never come hold this client's two requests, once the
    // server has let both in (a push sent before then could take one of the places)...
    let mut slow: Vec<_> = (0..2).map(|_| slow_push(agg.port)).collect();
    agg.wait_sample("aggregator_ingest_requests", 2.0).await;
    let one = snappy(&push_request(&[(r#"{job="a"}"#, &six[..1])]));
    let (status, refused) = send(&push, &[PROTO], one).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    assert!(refused.contains("2 ingest requests under way"), "{refused}");
    // ...until their bodies time out.
    for stream in &mut slow {
        let answer = read_raw(stream);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("BODY_READ_TIMEOUT"), "{answer}");
    }
    let one = snappy(&push_request(&[(r#"{job="b"}"#, &six[..1])]));
    assert_eq!(send(&push, &[PROTO], one).await.0, StatusCode::NO_CONTENT);

    // A wrong method is a 405 naming the right ones.
    let res = common::client()
        .put(agg.url("/loki/api/v1/query_range"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers().get("allow").unwrap(), "GET, POST");
}
