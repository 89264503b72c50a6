//! Whole-system figures for the aggregator: durable ingest over HTTP, then query latency
//! over the store that ingest built.
//!
//! ```text
//! cargo run --release -p log-aggregator --example aggregator_bench -- [--records N] [--quick]
//! ```
//!
//! The real server runs in this process (its own actix system on its own threads) on a
//! loopback port, with its store in a temporary directory. Ingest: batches of 1,000
//! NDJSON records of about 200 bytes, `INGEST_CONCURRENCY` requests in flight, each
//! acknowledged only after its commit; the rate is records / wall time from the first
//! request to the last acknowledgement. Queries: sequential HTTP requests, latency
//! measured by the client, for a page of 100 for one service, the newest page, and a
//! text search. Then the store alone (no HTTP, no parsing) for comparison. The last line
//! of stdout is `BENCH_JSON {...}`.

use shared::measure::{own_cpu_seconds, percentile, thread_cpu_seconds};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, TimeZone, Utc};
use futures_util::stream::{self, StreamExt};
use log_aggregator::config::{AggregatorConfig, SyncMode};
use log_aggregator::record::{self, Received};
use log_aggregator::sqlite::db::Db;
use serde_json::json;

const BATCH_RECORDS: usize = 1000;
const INGEST_CONCURRENCY: usize = 4;
const SERVICES: [&str; 3] = ["user-service", "product-service", "order-service"];
const PATHS: [&str; 3] = ["/users", "/products", "/orders"];
const WORDS: [&str; 8] = [
    "cache hit",
    "cache miss",
    "db query",
    "served",
    "validated",
    "retry scheduled",
    "slow upstream",
    "ok",
];

struct Options {
    records: usize,
    queries: usize,
    store_records: usize,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        records: 1_000_000,
        queries: 300,
        store_records: 200_000,
    };
    let mut args = std::env::args().skip(1);
    let mut records = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => {
                o.records = 100_000;
                o.queries = 60;
                o.store_records = 50_000;
            }
            "--records" => {
                let v = args.next().ok_or("--records needs a number")?;
                records = Some(
                    v.parse::<usize>()
                        .map_err(|e| format!("--records {v}: {e}"))?,
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(n) = records {
        o.records = n.max(BATCH_RECORDS);
    }
    Ok(o)
}

/// Record `i`: about 200 bytes, like a request log forwarded by a sidecar.
fn record(i: usize, start_us: i64) -> String {
    let s = i % SERVICES.len();
    let status = if i % 50 == 0 { 500 } else { 200 };
    let level = match i % 50 {
        0 => "ERROR",
        1..=4 => "WARN",
        _ => "INFO",
    };
    let extra = if i % 100 == 7 {
        "timeout"
    } else if i % 200 == 9 {
        "connection refused"
    } else {
        WORDS[i % WORDS.len()]
    };
    let ts = Utc
        .timestamp_micros(start_us + i as i64 * 1000)
        .single()
        .unwrap_or_else(Utc::now)
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    json!({
        "timestamp": ts,
        "service": SERVICES[s],
        "level": level,
        "message": format!("GET {}/{} {status} {}ms {extra}", PATHS[s], i % 997, i % 89),
        "request_id": format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        "environment": "bench",
        "event_id": format!("bench-{i:09}"),
    })
    .to_string()
}

fn main() {
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("aggregator_bench: {e}");
            eprintln!("usage: aggregator_bench [--records N] [--quick]");
            std::process::exit(2);
        }
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = shared::testkit::free_port();
    let env: std::collections::HashMap<&str, String> = [
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("DATA_DIR", dir.path().join("store").display().to_string()),
        ("RETENTION_MAX_RECORDS", "0".to_owned()),
        ("RETENTION_MAX_AGE", "0".to_owned()),
    ]
    .into();
    let env: std::collections::HashMap<String, String> =
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let config = AggregatorConfig::from_env(&env).expect("bench configuration");
    std::thread::spawn(move || {
        if let Err(e) = actix_rt::System::new().block_on(log_aggregator::server::serve(config)) {
            eprintln!("aggregator_bench: server failed: {e:#}");
            std::process::exit(1);
        }
    });

    let start_us = Utc::now().timestamp_micros() - opts.records as i64 * 1000;
    let batches: Vec<String> = (0..opts.records.div_ceil(BATCH_RECORDS))
        .map(|b| {
            let first = b * BATCH_RECORDS;
            let last = (first + BATCH_RECORDS).min(opts.records);
            let mut body = String::with_capacity(BATCH_RECORDS * 220);
            for i in first..last {
                body.push_str(&record(i, start_us));
                body.push('\n');
            }
            body
        })
        .collect();
    let bytes: usize = batches.iter().map(String::len).sum();
    let record_bytes = bytes as f64 / opts.records as f64;

    let base = format!("http://127.0.0.1:{port}");
    let figures = actix_rt::System::new().block_on(async move {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(120))
            .finish();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = client.get(format!("{base}/health")).send().await {
                if res.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the server did not start");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }

        let url = format!("{base}/logs");
        let cpu0 = own_cpu_seconds();
        let t0 = Instant::now();
        let results: Vec<u64> = stream::iter(batches)
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
            .collect()
            .await;
        let ingest_s = t0.elapsed().as_secs_f64();
        let ingest_cpu_s = own_cpu_seconds() - cpu0;
        let accepted: u64 = results.iter().sum();
        assert_eq!(accepted as usize, opts.records, "every record is stored");

        let mut lat = Vec::new();
        for (name, make) in [
            (
                "service",
                Box::new(|i: usize| format!("{base}/logs?service={}&limit=100", SERVICES[i % 3]))
                    as Box<dyn Fn(usize) -> String>,
            ),
            ("newest", Box::new(|_| format!("{base}/logs?limit=100"))),
            (
                "text",
                Box::new(|i: usize| {
                    let q = ["timeout", "connection%20refused", "slow%20upstream"][i % 3];
                    format!("{base}/logs?q={q}&limit=100")
                }),
            ),
        ] {
            let mut samples = Vec::with_capacity(opts.queries);
            let mut total = 0;
            for i in 0..opts.queries {
                let t = Instant::now();
                let mut res = client.get(make(i)).send().await.expect("query");
                let body = res.body().limit(64 << 20).await.expect("query answer");
                samples.push(t.elapsed().as_secs_f64() * 1000.0);
                assert!(
                    res.status().is_success(),
                    "{} answered {}",
                    make(i),
                    res.status()
                );
                let v: serde_json::Value = serde_json::from_slice(&body).expect("query JSON");
                total = v["total"].as_u64().unwrap_or(0);
            }
            samples.sort_by(f64::total_cmp);
            lat.push((
                name,
                percentile(&samples, 0.50),
                percentile(&samples, 0.99),
                total,
            ));
        }
        (ingest_s, ingest_cpu_s, lat)
    });
    let (ingest_s, ingest_cpu_s, lat) = figures;
    let ingest_rate = opts.records as f64 / ingest_s;
    let ingest_cpu_rate = opts.records as f64 / ingest_cpu_s;

    // The store alone: parsing excluded, one transaction per batch of 1,000.
    let store_dir = tempfile::tempdir().expect("temporary directory");
    let mut store = Db::open_writer(store_dir.path(), SyncMode::Normal).expect("store");
    let received = Received::now();
    let parsed: Vec<Vec<record::Record>> = (0..opts.store_records.div_ceil(BATCH_RECORDS))
        .map(|b| {
            (b * BATCH_RECORDS..((b + 1) * BATCH_RECORDS).min(opts.store_records))
                .map(|i| record::parse(&record(i, start_us), &received).expect("record"))
                .collect()
        })
        .collect();
    let t = Instant::now();
    let cpu0 = thread_cpu_seconds();
    for batch in &parsed {
        store.insert(batch).expect("insert");
    }
    let store_rate = opts.store_records as f64 / t.elapsed().as_secs_f64();
    let store_cpu_rate = opts.store_records as f64 / (thread_cpu_seconds() - cpu0);

    println!("log-aggregator benchmark");
    println!(
        "records: {}, batches of {BATCH_RECORDS}, {record_bytes:.0} bytes per record, {INGEST_CONCURRENCY} requests in flight",
        opts.records
    );
    println!();
    println!(
        "{:<34} {:>12}",
        "ingest over HTTP (durable acks)",
        format!("{ingest_rate:.0} rec/s")
    );
    println!(
        "{:<34} {:>12}",
        "  per CPU second (all threads)",
        format!("{ingest_cpu_rate:.0} rec/s")
    );
    println!(
        "{:<34} {:>12}",
        "store alone (no HTTP, no parsing)",
        format!("{store_rate:.0} rec/s")
    );
    println!(
        "{:<34} {:>12}",
        "  per CPU second (one thread)",
        format!("{store_cpu_rate:.0} rec/s")
    );
    println!();
    println!(
        "{:<34} {:>9} {:>9} {:>10}",
        "query (limit=100)", "p50 ms", "p99 ms", "total"
    );
    for (name, p50, p99, total) in &lat {
        println!("{name:<34} {p50:>9.2} {p99:>9.2} {total:>10}");
    }
    let mut out = serde_json::Map::new();
    out.insert("records".into(), json!(opts.records));
    out.insert("ingest_records_per_s".into(), json!(ingest_rate.round()));
    out.insert(
        "ingest_records_per_cpu_s".into(),
        json!(ingest_cpu_rate.round()),
    );
    out.insert(
        "store_ingest_records_per_s".into(),
        json!(store_rate.round()),
    );
    out.insert(
        "store_ingest_records_per_cpu_s".into(),
        json!(store_cpu_rate.round()),
    );
    for (name, p50, p99, _) in &lat {
        out.insert(
            format!("query_{name}_p50_ms"),
            json!((p50 * 1000.0).round() / 1000.0),
        );
        out.insert(
            format!("query_{name}_p99_ms"),
            json!((p99 * 1000.0).round() / 1000.0),
        );
    }
    println!("BENCH_JSON {}", serde_json::Value::Object(out));
    drop(store_dir);
    drop(dir);
    std::process::exit(0);
}
