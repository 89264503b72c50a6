//! What `aggregator_bench` and `clickhouse_bench` do alike, kept in one place so that
//! their figures are measured the same way: finding and starting the real
//! `log-aggregator` binary, waiting for `/health`, the ingest driver (NDJSON batches of
//! `BATCH_RECORDS` sidecar records, `INGEST_CONCURRENCY` requests in flight, CPU per
//! million records), the query sampler (p50/p99 of each kind) and the bytes in a
//! directory. Errors are returned as text for the benchmark to print and exit on.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use shared::measure::{cpu_seconds, own_cpu_seconds, percentile};
use shared::testkit::Process;

use super::records::{mix, record, request_id, SERVICES};

pub const BATCH_RECORDS: usize = 1000;
/// Requests in flight in all, whatever the number of aggregators they are spread over.
pub const INGEST_CONCURRENCY: usize = 4;

/// A kind of query: its name, and its path for the `i`-th sample.
type QueryKind = (&'static str, Box<dyn Fn(usize) -> String>);

/// The latency of one kind of query, in ms.
pub struct QueryFigures {
    pub name: &'static str,
    pub p50: f64,
    pub p99: f64,
}

/// What an ingest measured.
pub struct Ingested {
    pub rate: f64,
    /// NDJSON bytes sent.
    pub raw_bytes: u64,
    pub client_cpu_per_million: f64,
    /// CPU per million records of each watched process, in the order given.
    pub cpu_per_million: Vec<f64>,
}

/// Total size of the files below `dir` (0 for what cannot be read).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The `log-aggregator` binary built beside the running example:
/// target/<profile>/examples/<bench> → target/<profile>/log-aggregator.
pub fn aggregator_bin() -> Result<PathBuf, String> {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("log-aggregator")));
    match bin {
        Some(b) if b.exists() => Ok(b),
        _ => Err("target/<profile>/log-aggregator is missing: run `cargo build --release -p log-aggregator` first".to_owned()),
    }
}

/// Starts `log-aggregator` on `port` with its store in `data`, no retention, and `envs`
/// on top (`STORE` and its settings); its output goes to `logs`.
pub fn start_aggregator(
    name: &str,
    port: u16,
    data: &Path,
    envs: &[(&str, String)],
    logs: &Path,
) -> Result<Process, String> {
    let mut all = vec![
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("DATA_DIR", data.display().to_string()),
        ("RETENTION_MAX_RECORDS", "0".to_owned()),
        ("RETENTION_MAX_AGE", "0".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    all.extend(envs.iter().cloned());
    Process::spawn(name, aggregator_bin()?, &[], &all, logs)
        .map_err(|e| format!("start log-aggregator: {e}"))
}

/// Polls `/health` every 5 ms (fine enough to time a restart) until it answers 2xx, and
/// fails early, with its stderr, if the process exits; the seconds it took.
pub async fn wait_healthy(
    process: &mut Process,
    client: &awc::Client,
    base: &str,
    timeout: Duration,
) -> Result<f64, String> {
    let t = Instant::now();
    loop {
        if let Some(status) = process.try_wait() {
            return Err(format!(
                "the aggregator exited ({status}) before {base}/health answered; stderr:\n{}",
                process.stderr()
            ));
        }
        if let Ok(res) = client.get(format!("{base}/health")).send().await {
            if res.status().is_success() {
                return Ok(t.elapsed().as_secs_f64());
            }
        }
        if t.elapsed() >= timeout {
            return Err(format!(
                "{base}/health did not answer within {timeout:?}; stderr:\n{}",
                process.stderr()
            ));
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `records` records (from `start_us` on) to `POST /logs` of `bases`, the batches
/// alternating between them as sidecars behind a load balancer would, and checks that
/// every one was accepted. `watched` are the processes whose CPU is measured.
pub async fn ingest(
    client: &awc::Client,
    bases: &[String],
    records: usize,
    start_us: i64,
    watched: &[u32],
) -> Result<Ingested, String> {
    let cpu = |pid: &u32| cpu_seconds(*pid).unwrap_or(0.0);
    let cpu0: Vec<f64> = watched.iter().map(cpu).collect();
    let own0 = own_cpu_seconds();
    let t0 = Instant::now();
    let mut offsets = [0u64; 3];
    let mut raw = 0u64;
    let urls: Vec<String> = bases.iter().map(|b| format!("{b}/logs")).collect();
    let batches = (0..records.div_ceil(BATCH_RECORDS)).map(|b| {
        let mut body = String::with_capacity(BATCH_RECORDS * 340);
        for i in b * BATCH_RECORDS..((b + 1) * BATCH_RECORDS).min(records) {
            body.push_str(&record(i, start_us, &mut offsets));
            body.push('\n');
        }
        raw += body.len() as u64;
        (urls[b % urls.len()].clone(), body)
    });
    let accepted: u64 = stream::iter(batches)
        .map(|(url, body)| {
            let client = client.clone();
            async move {
                let mut res = client
                    .post(&url)
                    .insert_header(("Content-Type", "application/x-ndjson"))
                    .send_body(body)
                    .await
                    .map_err(|e| format!("ingest request: {e}"))?;
                if !res.status().is_success() {
                    return Err(format!("ingest answered {}", res.status()));
                }
                let v: serde_json::Value = res
                    .json()
                    .await
                    .map_err(|e| format!("ingest answer: {e}"))?;
                Ok(v["accepted"].as_u64().unwrap_or(0))
            }
        })
        .buffer_unordered(INGEST_CONCURRENCY)
        .try_fold(0, |a, n| async move { Ok(a + n) })
        .await?;
    let wall = t0.elapsed().as_secs_f64();
    if accepted as usize != records {
        return Err(format!("{accepted} of {records} records accepted"));
    }
    let millions = records as f64 / 1e6;
    Ok(Ingested {
        rate: records as f64 / wall,
        raw_bytes: raw,
        client_cpu_per_million: (own_cpu_seconds() - own0) / millions,
        cpu_per_million: watched
            .iter()
            .zip(cpu0)
            .map(|(pid, c0)| (cpu(pid) - c0) / millions)
            .collect(),
    })
}

/// Sequential queries to `base` over a store of `records` records, `samples` of each
/// kind: the newest page, a page for one service, a request-id lookup (which must find
/// the record), a text search (a word in 1% of records, a phrase in 0.5%, a phrase in
/// 12.5%), and `/logs/count`.
pub async fn queries(
    client: &awc::Client,
    base: &str,
    records: usize,
    samples: usize,
) -> Result<Vec<QueryFigures>, String> {
    let n = records;
    let kinds: [QueryKind; 5] = [
        ("newest", Box::new(|_| "/logs?limit=100".to_owned())),
        (
            "service",
            Box::new(|i| format!("/logs?service={}&limit=100", SERVICES[i % 3])),
        ),
        (
            "request",
            Box::new(move |i| {
                format!(
                    "/logs?request_id={}",
                    request_id((mix(i as u64, 9) as usize) % n)
                )
            }),
        ),
        (
            "text",
            Box::new(|i| {
                let q = ["timeout", "connection%20refused", "slow%20upstream"][i % 3];
                format!("/logs?q={q}&limit=100")
            }),
        ),
        ("count", Box::new(|_| "/logs/count".to_owned())),
    ];
    let mut out = Vec::new();
    for (name, path) in &kinds {
        let mut ms = Vec::with_capacity(samples);
        for i in 0..samples {
            let path = path(i);
            let t = Instant::now();
            let mut res = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .map_err(|e| format!("query {path}: {e}"))?;
            let body = res
                .body()
                .limit(64 << 20)
                .await
                .map_err(|e| format!("query {path}: {e}"))?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if !res.status().is_success() {
                return Err(format!(
                    "{path} answered {}: {}",
                    res.status(),
                    String::from_utf8_lossy(&body)
                ));
            }
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("{path}: {e}"))?;
            let total = v["total"].as_u64().or(v["total_logs"].as_u64());
            if *name == "request" && total.unwrap_or(0) < 1 {
                return Err(format!("{path}: the request id is not found"));
            }
        }
        ms.sort_by(f64::total_cmp);
        out.push(QueryFigures {
            name,
            p50: percentile(&ms, 0.50),
            p99: percentile(&ms, 0.99),
        });
    }
    Ok(out)
}
