//! Starting the real aggregator on a free loopback port, and talking to it.

#![allow(dead_code)]

pub mod clickhouse;
pub mod contract;
pub mod loki;

use std::path::Path;
use std::time::Duration;

use awc::http::StatusCode;
use serde_json::Value;
use shared::testkit::{free_port, Process};

/// The value of one sample line of a `/metrics` text, 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Largest answer the tests read.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

pub struct Aggregator {
    pub process: Process,
    pub base: String,
    pub port: u16,
}

impl Aggregator {
    /// Starts the binary with its data in `data_dir` and waits until `/health` answers.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Aggregator {
        Aggregator::start_on(free_port(), data_dir, env).await
    }

    pub async fn start_on(port: u16, data_dir: &Path, env: &[(&str, &str)]) -> Aggregator {
        let mut envs: Vec<(&str, String)> = vec![
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("DATA_DIR", data_dir.join("store").display().to_string()),
        ];
        envs.extend(env.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let mut process = Process::spawn(
            "log-aggregator",
            env!("CARGO_BIN_EXE_log-aggregator"),
            &[],
            &envs,
            &data_dir.join("logs"),
        )
        .expect("spawn log-aggregator");
        let base = format!("http://127.0.0.1:{port}");
        process
            .wait_ready(&format!("{base}/health"), Duration::from_secs(20))
            .await
            .unwrap();
        Aggregator {
            process,
            base,
            port,
        }
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let mut res = client().get(self.url("/metrics")).send().await.unwrap();
        String::from_utf8(res.body().limit(1 << 24).await.unwrap().to_vec()).unwrap()
    }

    /// Waits until a sample of `/metrics` reaches `at_least`, or fails after 30 s.
    pub async fn wait_sample(&self, series: &str, at_least: f64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.metrics().await;
            if sample(&text, series) >= at_least {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{series} stayed below {at_least}:\n{text}"
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .disable_redirects()
        .finish()
}

/// POSTs `body` with `content_type` (and optional extra headers); status and JSON answer.
pub async fn post(
    url: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: impl awc::body::MessageBody + 'static,
) -> (StatusCode, Value) {
    let mut req = client()
        .post(url)
        .insert_header(("Content-Type", content_type));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req.send_body(body).await.expect("POST answered");
    let status = res.status();
    let bytes = res.body().limit(MAX_ANSWER_BYTES).await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{url} answered {status} with non-JSON: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

pub async fn post_ndjson(url: &str, records: &[Value]) -> (StatusCode, Value) {
    post(url, "application/x-ndjson", &[], ndjson(records)).await
}

pub fn ndjson(records: &[Value]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&r.to_string());
        out.push('\n');
    }
    out
}

/// GETs `url`; status and JSON answer.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req.send().await.expect("GET answered");
    let status = res.status();
    let bytes = res.body().limit(MAX_ANSWER_BYTES).await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

/// Every stored record, oldest first, by following cursors.
pub async fn all_logs(base: &str, headers: &[(&str, &str)]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100_000 {
        let mut url = format!("{base}/logs?order=asc&limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = get(&url, headers).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        out.extend(page["logs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("paging did not end");
}

/// `n` records of `service` whose event ids are `<prefix>-<i>`.
pub fn records(prefix: &str, service: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339(),
                "service": service,
                "level": if i % 10 == 0 { "ERROR" } else { "INFO" },
                "message": format!("request {i} handled for {prefix}"),
                "request_id": format!("{prefix}-req-{}", i % 5),
                "event_id": format!("{prefix}-{i}"),
                "sidecar_forwarded_by": format!("{service}-logging-sidecar"),
            })
        })
        .collect()
}
