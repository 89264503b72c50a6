//! Whole-system figures for the aggregator, for each store side by side: durable ingest
//! over HTTP, the server's CPU per million records, bytes on disk per raw byte, query
//! latency, memory, and restart time.
//!
//! ```text
//! cargo run --release -p log-aggregator --example aggregator_bench -- \
//!     [--records N] [--quick] [--stores embedded,sqlite] [--queries N] [--keep DIR]
//! ```
//!
//! The real `log-aggregator` binary (built beside this example) runs as a child process
//! on a loopback port with its store in a temporary directory, so its CPU and memory
//! are its own (from `/proc`). Ingest: NDJSON batches of 1,000 records like a logging
//! sidecar's (a service's request log plus the sidecar's fields and a structured
//! `event_id`, about 330 bytes), generated as they are sent, `INGEST_CONCURRENCY`
//! requests in flight, each acknowledged only once durable. Then sequential queries
//! over the store that ingest built: the newest page, a page for one service, a
//! request-id lookup, a text search (a word in 1% of records, a phrase in 0.5%, a
//! phrase in 12.5%), and `/logs/count`. Then SIGTERM, the bytes in `DATA_DIR`, a
//! restart timed until `/health` answers, and the memory after it. The last line of
//! stdout is `BENCH_JSON {...}`: each figure as `<store>_<figure>`. `--keep DIR` leaves
//! each store in `DIR/<store>` for a look afterwards (with DuckDB or pyarrow).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use shared::measure::{cpu_seconds, memory_mib, own_cpu_seconds, percentile};
use shared::testkit::{free_port, Process};

#[path = "support/records.rs"]
mod records;
use records::{mix, record, request_id, SERVICES};

/// A kind of query: its name, and its path for the `i`-th sample.
type QueryKind = (&'static str, Box<dyn Fn(usize) -> String>);

const BATCH_RECORDS: usize = 1000;
const INGEST_CONCURRENCY: usize = 4;
struct Options {
    records: usize,
    queries: usize,
    stores: Vec<String>,
    /// Where the stores go (kept afterwards); a temporary directory when absent.
    keep: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        records: 1_000_000,
        queries: 300,
        stores: vec!["embedded".into(), "sqlite".into()],
        keep: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => {
                o.records = 100_000;
                o.queries = 60;
            }
            "--records" | "--queries" | "--stores" | "--keep" => {
                let v = args.next().ok_or(format!("{a} needs a value"))?;
                match a.as_str() {
                    "--records" => {
                        o.records = v.parse().map_err(|e| format!("--records {v}: {e}"))?
                    }
                    "--queries" => {
                        o.queries = v.parse().map_err(|e| format!("--queries {v}: {e}"))?
                    }
                    "--keep" => o.keep = Some(PathBuf::from(v)),
                    _ => o.stores = v.split(',').map(str::to_owned).collect(),
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    o.records = o.records.max(BATCH_RECORDS);
    Ok(o)
}

/// What one store measured.
#[derive(Default)]
struct Figures {
    ingest_rate: f64,
    server_cpu_per_million: f64,
    client_cpu_per_million: f64,
    raw_bytes: u64,
    disk_bytes: u64,
    /// name → (p50, p99, last total)
    queries: Vec<(&'static str, f64, f64, u64)>,
    rss_mib: f64,
    peak_rss_mib: f64,
    restart_s: f64,
    rss_after_restart_mib: f64,
}

fn dir_bytes(dir: &Path) -> u64 {
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

fn server_bin() -> PathBuf {
    // target/<profile>/examples/aggregator_bench → target/<profile>/log-aggregator
    let exe = std::env::current_exe().expect("own path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("log-aggregator"))
        .expect("examples live in target/<profile>/examples");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p log-aggregator` first",
        bin.display()
    );
    bin
}

fn start(store: &str, data: &Path, port: u16, logs: &Path) -> Process {
    let envs = vec![
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("DATA_DIR", data.display().to_string()),
        ("STORE", store.to_owned()),
        ("RETENTION_MAX_RECORDS", "0".to_owned()),
        ("RETENTION_MAX_AGE", "0".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    Process::spawn(store, server_bin(), &[], &envs, logs).expect("start log-aggregator")
}

async fn wait_healthy(client: &awc::Client, base: &str, timeout: Duration) -> f64 {
    let t = Instant::now();
    loop {
        if let Ok(res) = client.get(format!("{base}/health")).send().await {
            if res.status().is_success() {
                return t.elapsed().as_secs_f64();
            }
        }
        assert!(t.elapsed() < timeout, "the server did not start");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn measure(store: &str, opts: &Options, start_us: i64) -> Figures {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = match &opts.keep {
        Some(keep) => keep.join(store),
        None => dir.path().join("data"),
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start(store, &data, port, dir.path());
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(300))
        .finish();
    wait_healthy(&client, &base, Duration::from_secs(60)).await;
    let mut f = Figures::default();

    eprintln!("{store}: ingesting {} records...", opts.records);
    let url = format!("{base}/logs");
    let cpu0 = cpu_seconds(server.id()).unwrap_or(0.0);
    let own0 = own_cpu_seconds();
    let t0 = Instant::now();
    let mut offsets = [0u64; 3];
    let mut raw = 0u64;
    let batches = (0..opts.records.div_ceil(BATCH_RECORDS)).map(|b| {
        let mut body = String::with_capacity(BATCH_RECORDS * 340);
        for i in b * BATCH_RECORDS..((b + 1) * BATCH_RECORDS).min(opts.records) {
            body.push_str(&record(i, start_us, &mut offsets));
            body.push('\n');
        }
        raw += body.len() as u64;
        body
    });
    let accepted: u64 = stream::iter(batches)
        .map(|body| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let mut res = client
                    .post(&url)
                    .insert_header(("Content-Type", "application/x-ndjson"))
                    .send_body(body)
                    .await
                    .expect("ingest request");
                assert!(
                    res.status().is_success(),
                    "ingest answered {}",
                    res.status()
                );
                let v: serde_json::Value = res.json().await.expect("ingest answer");
                v["accepted"].as_u64().unwrap_or(0)
            }
        })
        .buffer_unordered(INGEST_CONCURRENCY)
        .fold(0, |a, n| async move { a + n })
        .await;
    let wall = t0.elapsed().as_secs_f64();
    assert_eq!(accepted as usize, opts.records, "every record is stored");
    let millions = opts.records as f64 / 1e6;
    f.ingest_rate = opts.records as f64 / wall;
    f.server_cpu_per_million = (cpu_seconds(server.id()).unwrap_or(0.0) - cpu0) / millions;
    f.client_cpu_per_million = (own_cpu_seconds() - own0) / millions;
    f.raw_bytes = raw;

    eprintln!("{store}: querying...");
    let n = opts.records;
    let kinds: Vec<QueryKind> = vec![
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
    for (name, path) in &kinds {
        let mut samples = Vec::with_capacity(opts.queries);
        let mut total = 0;
        for i in 0..opts.queries {
            let t = Instant::now();
            let mut res = client
                .get(format!("{base}{}", path(i)))
                .send()
                .await
                .expect("query");
            let body = res.body().limit(64 << 20).await.expect("query answer");
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(
                res.status().is_success(),
                "{} answered {}",
                path(i),
                res.status()
            );
            let v: serde_json::Value = serde_json::from_slice(&body).expect("query JSON");
            total = v["total"]
                .as_u64()
                .or(v["total_logs"].as_u64())
                .unwrap_or(0);
            if *name == "request" {
                assert!(total >= 1, "{}: the request id is stored", path(i));
            }
        }
        samples.sort_by(f64::total_cmp);
        f.queries.push((
            name,
            percentile(&samples, 0.50),
            percentile(&samples, 0.99),
            total,
        ));
    }
    let (rss, peak) = memory_mib(server.id()).unwrap_or((0.0, 0.0));
    f.rss_mib = rss;
    f.peak_rss_mib = peak;

    eprintln!("{store}: restarting...");
    server.signal(libc::SIGTERM);
    assert!(
        server.wait_timeout(Duration::from_secs(120)).is_some(),
        "stops on SIGTERM"
    );
    f.disk_bytes = dir_bytes(&data);
    let t = Instant::now();
    let server = start(store, &data, port, dir.path());
    wait_healthy(&client, &base, Duration::from_secs(300)).await;
    f.restart_s = t.elapsed().as_secs_f64();
    f.rss_after_restart_mib = memory_mib(server.id()).map_or(0.0, |m| m.0);
    drop(server);
    f
}

fn main() {
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("aggregator_bench: {e}");
            eprintln!("usage: aggregator_bench [--records N] [--quick] [--stores embedded,sqlite] [--queries N] [--keep DIR]");
            std::process::exit(2);
        }
    };
    let start_us = Utc::now().timestamp_micros() - opts.records as i64 * 100;
    let mut all = Vec::new();
    for store in &opts.stores {
        let f = actix_rt::System::new().block_on(measure(store, &opts, start_us));
        all.push((store.clone(), f));
    }

    println!("log-aggregator benchmark: {} records per store, batches of {BATCH_RECORDS}, {INGEST_CONCURRENCY} in flight", opts.records);
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at the end: {}", load.trim());
    }
    println!();
    print!("{:<44}", "figure");
    for (s, _) in &all {
        print!(" {s:>12}");
    }
    println!();
    let row = |name: &str, get: &dyn Fn(&Figures) -> f64, prec: usize| {
        print!("{name:<44}");
        for (_, f) in &all {
            print!(" {:>12.prec$}", get(f));
        }
        println!();
    };
    row(
        "ingest over HTTP, durable (records/s)",
        &|f| f.ingest_rate,
        0,
    );
    row(
        "server CPU per million records (s)",
        &|f| f.server_cpu_per_million,
        2,
    );
    row(
        "client CPU per million records (s)",
        &|f| f.client_cpu_per_million,
        2,
    );
    row(
        "bytes on disk per raw NDJSON byte",
        &|f| f.disk_bytes as f64 / f.raw_bytes.max(1) as f64,
        3,
    );
    for (i, (name, ..)) in all[0].1.queries.iter().enumerate() {
        row(&format!("query {name} p50 (ms)"), &|f| f.queries[i].1, 2);
        row(&format!("query {name} p99 (ms)"), &|f| f.queries[i].2, 2);
    }
    row("RSS after the queries (MiB)", &|f| f.rss_mib, 1);
    row("peak RSS (MiB)", &|f| f.peak_rss_mib, 1);
    row("restart until healthy (s)", &|f| f.restart_s, 2);
    row(
        "RSS after the restart (MiB)",
        &|f| f.rss_after_restart_mib,
        1,
    );

    let mut out = serde_json::Map::new();
    out.insert("records".into(), json!(opts.records));
    for (store, f) in &all {
        let mut put = |key: &str, v: f64| {
            let v = (v * 1000.0).round() / 1000.0;
            out.insert(format!("{store}_{key}"), json!(v));
        };
        put("ingest_records_per_s", f.ingest_rate.round());
        put("server_cpu_s_per_million", f.server_cpu_per_million);
        put(
            "disk_bytes_per_raw_byte",
            f.disk_bytes as f64 / f.raw_bytes.max(1) as f64,
        );
        for (name, p50, p99, _) in &f.queries {
            put(&format!("query_{name}_p50_ms"), *p50);
            put(&format!("query_{name}_p99_ms"), *p99);
        }
        put("rss_mib", f.rss_mib);
        put("peak_rss_mib", f.peak_rss_mib);
        put("restart_s", f.restart_s);
    }
    println!("BENCH_JSON {}", serde_json::Value::Object(out));
}
