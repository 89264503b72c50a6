//! The HTTP contract: every endpoint and every error case, over HTTP against the real
//! binary, whatever its store. Each check takes the settings that choose the store
//! (`&[]` for the default one); `tests/http.rs` runs them on the embedded store and
//! `tests/clickhouse_http.rs` on ClickHouse.
//!
//! - `endpoints_answer_in_the_contract_shapes`: POST in three shapes and gzip, GET /logs
//!   filters and cursors, /logs/count, /health, /, /metrics, /logs/clear.
//! - `a_repeated_batch_is_stored_once`: event_id idempotency, within and across batches.
//! - `bad_input_is_refused_and_changes_nothing`: 400 (empty body, object and array
//!   included), 405 with `Allow`, 413, 415, each with a JSON error.
//! - `a_configured_token_guards_writes_clears_and_queries`: 401 without the token.
//! - `retention_bounds_the_store_by_count_and_age`: old records go, new ones stay.
//! - `healthcheck_and_configuration_errors`: the subcommand and exit 64.
//! - `the_openapi_description_is_served_and_its_paths_answer`: `/openapi.json`.

#![allow(dead_code)]

use std::io::Write;
use std::process::Command;

use crate::common::{self, all_logs, get, post, post_ndjson, records, Aggregator};
use awc::http::StatusCode;
use serde_json::{json, Value};

/// The store's settings followed by a check's own.
pub fn with<'a>(
    store: &[(&'a str, &'a str)],
    own: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    store.iter().chain(own).copied().collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub async fn endpoints_answer_in_the_contract_shapes(store: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), store).await;
    let logs = agg.url("/logs");

    // Three shapes, and gzip.
    let (status, body) = post(
        &logs,
        "application/json",
        &[],
        json!({"service": "user-service", "level": "INFO", "message": "one object"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "accepted": 1, "duplicates": 0})
    );
    let array = json!([
        {"service": "product-service", "level": "WARN", "message": "slow query", "request_id": "rq-1"},
        {"service": "order-service", "level": "ERROR", "message": "payment refused", "request_id": "rq-1"},
    ]);
    let (_, body) = post(&logs, "application/json", &[], array.to_string()).await;
    assert_eq!(body["accepted"], 2);
    let (_, body) = post_ndjson(&logs, &records("nd", "user-service", 20)).await;
    assert_eq!(body["accepted"], 20);
    let gz = gzip(common::ndjson(&records("gz", "order-service", 10)).as_bytes());
    let (status, body) = post(
        &logs,
        "application/x-ndjson",
        &[("Content-Encoding", "gzip")],
        gz,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 10);

    // GET /logs: newest first, every record carries aggregator_received_at.
    let (status, page) = get(&agg.url("/logs?limit=5"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 33);
    assert_eq!(page["logs"].as_array().unwrap().len(), 5);
    assert!(page["next_cursor"].is_string());
    assert!(page["logs"][0]["aggregator_received_at"].is_string());
    let (_, page) = get(&agg.url("/logs?service=order-service&level=error"), &[]).await;
    assert_eq!(page["total"], 2, "{page}");
    let (_, page) = get(&agg.url("/logs?request_id=rq-1"), &[]).await;
    assert_eq!(page["total"], 2);
    assert_eq!(page["next_cursor"], Value::Null);
    let (_, page) = get(&agg.url("/logs?q=payment%20refused"), &[]).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["logs"][0]["message"], "payment refused");
    let (_, page) = get(
        &agg.url("/logs?since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z"),
        &[],
    )
    .await;
    assert_eq!(page["total"], 0);
    let (_, page) = get(&agg.url("/logs?since=2000-01-01T00:00:00Z"), &[]).await;
    assert_eq!(page["total"], 33);

    // Following next_cursor visits every record once.
    let all = all_logs(&agg.base, &[]).await;
    assert_eq!(all.len(), 33);
    let mut desc = Vec::new();
    let mut url = agg.url("/logs?limit=4");
    loop {
        let (_, page) = get(&url, &[]).await;
        desc.extend(page["logs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => url = agg.url(&format!("/logs?limit=4&cursor={c}")),
            None => break,
        }
    }
    desc.reverse();
    assert_eq!(desc, all);

    let (status, count) = get(&agg.url("/logs/count"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count["total_logs"], 33);
    assert_eq!(count["by_service"]["user-service"], 21);
    assert_eq!(count["by_level"]["ERROR"], 1 + 2 + 1);

    let (status, health) = get(&agg.url("/health"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        health,
        json!({"status": "healthy", "service": "log-aggregator", "logs_stored": 33})
    );

    let (status, index) = get(&agg.base, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(index["endpoints"].as_array().unwrap().len() >= 6);
    let mut res = common::client()
        .get(&agg.base)
        .insert_header(("Accept", "text/html,application/xhtml+xml"))
        .send()
        .await
        .unwrap();
    let html = res.body().await.unwrap();
    assert!(String::from_utf8_lossy(&html).contains("<form"));

    let mut res = common::client()
        .get(agg.url("/metrics"))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    for name in [
        "aggregator_records_ingested_total 33",
        "aggregator_records_duplicate_total 0",
        "aggregator_records_stored 33",
        "aggregator_batch_records_count 4",
        "aggregator_query_duration_seconds_bucket{kind=\"logs\"",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }

    let (status, cleared) = post(&agg.url("/logs/clear"), "application/json", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cleared, json!({"status": "success", "cleared": 33}));
    let (_, page) = get(&agg.url("/logs"), &[]).await;
    assert_eq!(page, json!({"total": 0, "logs": [], "next_cursor": null}));
}

pub async fn a_repeated_batch_is_stored_once(store: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), store).await;
    let logs = agg.url("/logs");
    let batch = records("dup", "user-service", 50);
    let (_, first) = post_ndjson(&logs, &batch).await;
    assert_eq!(
        first,
        json!({"status": "success", "accepted": 50, "duplicates": 0})
    );
    let (_, again) = post_ndjson(&logs, &batch).await;
    assert_eq!(
        again,
        json!({"status": "success", "accepted": 0, "duplicates": 50})
    );
    // Half old, half new, and one repeated inside the batch.
    let mut mixed = batch[25..].to_vec();
    mixed.extend(records("dup2", "user-service", 10));
    mixed.push(mixed.last().unwrap().clone());
    let (_, body) = post_ndjson(&logs, &mixed).await;
    assert_eq!(body["accepted"], 10);
    assert_eq!(body["duplicates"], 26);
    // The same event_id again with another time and text (a client that re-stamps its
    // retries): still the record already stored, whatever its time.
    let mut restamped = batch[0].clone();
    restamped["timestamp"] = json!("2001-02-03T04:05:06Z");
    restamped["message"] = json!("re-sent with another time");
    let (_, body) = post_ndjson(&logs, &[restamped]).await;
    assert_eq!(
        body,
        json!({"status": "success", "accepted": 0, "duplicates": 1})
    );
    // Records without an event_id are always stored.
    let plain = json!({"service": "s", "message": "no id"});
    post_ndjson(&logs, &[plain.clone(), plain]).await;
    let all = all_logs(&agg.base, &[]).await;
    assert_eq!(all.len(), 62);
    let mut ids: Vec<&str> = all.iter().filter_map(|r| r["event_id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 60);
}

/// Content type, extra headers, body, expected status, words the error must contain.
type Case = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    StatusCode,
    &'static str,
);

pub async fn bad_input_is_refused_and_changes_nothing(store: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &with(store, &[("MAX_BODY_BYTES", "4KiB")])).await;
    let logs = agg.url("/logs");
    let good = common::ndjson(&records("ok", "s", 3));

    let cases: Vec<Case> = vec![
        (
            "application/x-www-form-urlencoded",
            vec![],
            good.clone().into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type",
        ),
        (
            "application/x-ndjson",
            vec![("Content-Encoding", "br")],
            good.clone().into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content encoding",
        ),
        (
            "application/x-ndjson",
            vec![],
            format!("{good}{{\"broken\": \n").into(),
            StatusCode::BAD_REQUEST,
            "line 4",
        ),
        (
            "application/x-ndjson",
            vec![],
            format!("{good}[1,2]\n").into(),
            StatusCode::BAD_REQUEST,
            "line 4: expected a JSON object",
        ),
        (
            "application/json",
            vec![],
            br#"[{"a":1}, "text"]"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "array element 1",
        ),
        (
            "application/json",
            vec![],
            b"{\"a\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (
            "application/json",
            vec![],
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "the request body is empty",
        ),
        (
            "application/json",
            vec![],
            b"{}".to_vec(),
            StatusCode::BAD_REQUEST,
            "empty object: a record needs at least one field",
        ),
        (
            "application/json",
            vec![],
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "empty array",
        ),
        (
            "application/x-ndjson",
            vec![],
            b"{\"a\":\"\xff\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "UTF-8",
        ),
        (
            "application/x-ndjson",
            vec![("Content-Encoding", "gzip")],
            good.clone().into(),
            StatusCode::BAD_REQUEST,
            "gzip",
        ),
        (
            "application/x-ndjson",
            vec![],
            vec![b' '; 5000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit of 4096 bytes",
        ),
        (
            "application/x-ndjson",
            vec![("Content-Encoding", "gzip")],
            gzip(&vec![b'\n'; 1 << 18]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "once decompressed",
        ),
    ];
    for (content_type, headers, body, want, says) in cases {
        let (status, answer) = post(&logs, content_type, &headers, body).await;
        assert_eq!(status, want, "{content_type} {headers:?}: {answer}");
        assert_eq!(answer["status"], want.as_u16());
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(says), "{error:?} should mention {says:?}");
    }
    // No Content-Type at all.
    let mut res = common::client()
        .post(&logs)
        .send_body(good.clone())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let _ = res.body().await;

    for query in [
        "limit=0",
        "limit=x",
        "order=sideways",
        "since=yesterday",
        "cursor=nonsense",
        "q=%2A%2A",
    ] {
        let (status, answer) = get(&agg.url(&format!("/logs?{query}")), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert!(answer["error"].as_str().unwrap().starts_with("invalid"));
    }
    let (status, _) = get(&agg.url("/nowhere"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A known path with a method it does not answer: 405, naming what it answers.
    for (method, path, allow) in [
        ("DELETE", "/logs", "POST, GET"),
        ("GET", "/logs/clear", "POST"),
        ("POST", "/health", "GET"),
        ("PUT", "/logs/count", "GET"),
    ] {
        let mut res = common::client()
            .request(
                actix_web::http::Method::from_bytes(method.as_bytes()).unwrap(),
                agg.url(path),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(
            res.headers().get("allow").unwrap(),
            allow,
            "{method} {path}"
        );
        let answer: serde_json::Value = res.json().await.unwrap();
        assert_eq!(answer["status"], 405);
        assert!(
            answer["error"].as_str().unwrap().contains(allow),
            "{answer}"
        );
    }

    let (_, count) = get(&agg.url("/logs/count"), &[]).await;
    assert_eq!(count["total_logs"], 0, "a refused batch stored something");
    let mut res = common::client()
        .get(agg.url("/metrics"))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(
        text.contains("aggregator_requests_rejected_total{reason=\"json\"} 4"),
        "{text}"
    );
    assert!(text.contains("aggregator_requests_rejected_total{reason=\"empty\"} 3"));
    assert!(text.contains("aggregator_requests_rejected_total{reason=\"too_large\"} 2"));

    // The same records, sent properly, are all stored.
    let (status, body) = post(&logs, "application/x-ndjson", &[], good).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["accepted"], 3);
}

pub async fn a_configured_token_guards_writes_clears_and_queries(store: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &with(store, &[("AGGREGATOR_TOKEN", "t0ken")])).await;
    let good = common::ndjson(&records("auth", "s", 2));
    let right = [("Authorization", "Bearer t0ken")];
    for auth in [
        vec![],
        vec![("Authorization", "Bearer nope")],
        vec![("Authorization", "t0ken")],
    ] {
        let (status, body) = post(
            &agg.url("/logs"),
            "application/x-ndjson",
            &auth,
            good.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}: {body}");
        assert_eq!(body["status"], 401);
        for path in ["/logs", "/logs/count"] {
            let (status, _) = get(&agg.url(path), &auth).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {auth:?}");
        }
        let (status, _) = post(&agg.url("/logs/clear"), "application/json", &auth, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    for path in ["/health", "/"] {
        let (status, _) = get(&agg.url(path), &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, _) = post(&agg.url("/logs"), "application/x-ndjson", &right, good).await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = get(&agg.url("/logs"), &right).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 2);
    let (status, body) = post(&agg.url("/logs/clear"), "application/json", &right, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["cleared"], 2);
    assert!(agg.process.stderr().contains("Listening on"));
    assert!(!agg.process.stderr().contains("AGGREGATOR_TOKEN is not set"));
}

pub async fn retention_bounds_the_store_by_count_and_age(store: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(
        dir.path(),
        &with(
            store,
            &[
                ("RETENTION_MAX_RECORDS", "50"),
                ("RETENTION_MAX_AGE", "1h"),
                ("RETENTION_INTERVAL", "20ms"),
            ],
        ),
    )
    .await;
    let old = json!({"timestamp": "2001-01-01T00:00:00Z", "service": "s", "message": "ancient"});
    post_ndjson(&agg.url("/logs"), &[old]).await;
    for b in 0..4 {
        post_ndjson(&agg.url("/logs"), &records(&format!("r{b}"), "s", 30)).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, health) = get(&agg.url("/health"), &[]).await;
        if health["logs_stored"] == 50 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not run: {health}"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let all = all_logs(&agg.base, &[]).await;
    assert_eq!(all.len(), 50);
    // The oldest by arrival went first: the last batch and part of the one before stay.
    assert!(all.iter().all(|r| r["message"] != "ancient"));
    let kept: Vec<&str> = all
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert!(kept.contains(&"r3-29") && kept.contains(&"r2-10") && !kept.contains(&"r2-9"));
    let mut res = common::client()
        .get(agg.url("/metrics"))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(
        text.contains("aggregator_records_pruned_total 71"),
        "{text}"
    );
}

pub async fn healthcheck_and_configuration_errors(store: &[(&str, &str)]) {
    let bin = env!("CARGO_BIN_EXE_log-aggregator");
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), store).await;
    assert!(agg.process.stderr().contains("AGGREGATOR_TOKEN is not set"));
    let status = Command::new(bin)
        .arg("healthcheck")
        .env("LISTEN_ADDR", format!("0.0.0.0:{}", agg.port))
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new(bin)
        .arg("healthcheck")
        .env(
            "LISTEN_ADDR",
            format!("127.0.0.1:{}", shared::testkit::free_port()),
        )
        .output()
        .unwrap();
    assert!(!status.status.success());

    let out = Command::new(bin)
        .env("DATA_DIR", dir.path())
        .env("MAX_BODY_BYTES", "lots")
        .env("PAGE_SIZE_MAX", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MAX_BODY_BYTES") && err.contains("PAGE_SIZE_MAX"),
        "{err}"
    );
}

/// `GET /openapi.json` serves the description kept in the repository, and every path it
/// describes is one the server answers (not a 404 or a 405).
pub async fn the_openapi_description_is_served_and_its_paths_answer(store: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), store).await;
    let (status, served) = get(&agg.url("/openapi.json"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let kept: serde_json::Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    assert_eq!(served, kept);
    for (path, item) in kept["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method =
                actix_web::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut res = common::client()
                .request(method.clone(), agg.url(path))
                .insert_header(("Content-Type", "application/json"))
                .send_body("{\"message\":\"openapi\"}")
                .await
                .unwrap();
            let status = res.status();
            // An event stream (GET /logs/tail) stays open: its headers are the answer.
            let streaming = res
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            if !streaming {
                let _ = res.body().await;
            }
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {status}"
            );
        }
    }
}
