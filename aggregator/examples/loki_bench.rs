//! Loki push ingest against our own NDJSON ingest, side by side.
//!
//! ```text
//! cargo run --release -p log-aggregator --example loki_bench -- [--records N] [--quick]
//! ```
//!
//! The same N records (about 200 bytes, like a service's request log) are stored twice,
//! each time by a fresh aggregator in this process on a loopback port with its own store:
//! once as NDJSON batches of 1,000 to `POST /logs` (each record with its `event_id`, as a
//! sidecar sends them), once as protobuf `PushRequest`s compressed with snappy, 1,000
//! entries each, to `POST /loki/api/v1/push` (streams labelled by service, level and
//! environment, the line being the record without its `event_id`, as Promtail would
//! ship the service's log file). Four requests in flight, every one acknowledged only
//! once committed. The bodies are built before timing. Figures: records per second of
//! wall time, CPU-seconds of the whole process per million records (steadier on a shared
//! machine), and the push's share of the NDJSON figure. The rounds alternate the two
//! (NDJSON, push, NDJSON, push...) so drifting load hits both. The last line of stdout
//! is `BENCH_JSON {...}`.
//!
//! `--only ndjson` or `--only push` runs one of the two, for an instruction counter
//! (`valgrind --tool=callgrind`), whose counts do not depend on the machine's load.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, TimeZone, Utc};
use futures_util::stream::{self, StreamExt};
use log_aggregator::config::AggregatorConfig;
use log_aggregator::loki::proto;
use prost::Message;
use serde_json::json;
use shared::measure::own_cpu_seconds;

const BATCH_RECORDS: usize = 1000;
const IN_FLIGHT: usize = 4;
const SERVICES: [&str; 3] = ["user-service", "product-service", "order-service"];
const PATHS: [&str; 3] = ["/users", "/products", "/orders"];

struct Options {
    records: usize,
    rounds: usize,
    /// Only one of the two (`ndjson` or `push`), to count its instructions alone.
    only: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        records: 500_000,
        rounds: 2,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => {
                o.records = 100_000;
                o.rounds = 1;
            }
            "--records" => {
                let v = args.next().ok_or("--records needs a number")?;
                o.records = v
                    .parse::<usize>()
                    .map_err(|e| format!("--records {v}: {e}"))?
                    .max(BATCH_RECORDS);
            }
            "--only" => match args.next().as_deref() {
                Some(w @ ("ndjson" | "push")) => o.only = Some(w.to_owned()),
                _ => return Err("--only takes ndjson or push".to_owned()),
            },
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// Record `i` as `(service, level, time in ns, line without event_id, event_id)`.
fn record(i: usize, start_ns: i64) -> (&'static str, &'static str, i64, serde_json::Value) {
    let s = i % SERVICES.len();
    let status = if i % 50 == 0 { 500 } else { 200 };
    let level = match i % 50 {
        0 => "ERROR",
        1..=4 => "WARN",
        _ => "INFO",
    };
    let ts_ns = start_ns + i as i64 * 1_000_000;
    let ts = Utc
        .timestamp_nanos(ts_ns)
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    let line = json!({
        "timestamp": ts,
        "service": SERVICES[s],
        "level": level,
        "message": format!("GET {}/{} {status} {}ms", PATHS[s], i % 997, i % 89),
        "request_id": format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        "environment": "bench",
    });
    (SERVICES[s], level, ts_ns, line)
}

fn ndjson_batches(n: usize, start_ns: i64) -> Vec<Vec<u8>> {
    (0..n.div_ceil(BATCH_RECORDS))
        .map(|b| {
            let mut body = String::with_capacity(BATCH_RECORDS * 230);
            for i in b * BATCH_RECORDS..((b + 1) * BATCH_RECORDS).min(n) {
                let (_, _, _, mut line) = record(i, start_ns);
                line["event_id"] = json!(format!("bench-{i:09}"));
                body.push_str(&line.to_string());
                body.push('\n');
            }
            body.into_bytes()
        })
        .collect()
}

fn push_batches(n: usize, start_ns: i64) -> Vec<Vec<u8>> {
    (0..n.div_ceil(BATCH_RECORDS))
        .map(|b| {
            let mut streams: BTreeMap<String, Vec<proto::EntryAdapter>> = BTreeMap::new();
            for i in b * BATCH_RECORDS..((b + 1) * BATCH_RECORDS).min(n) {
                let (service, level, ts_ns, line) = record(i, start_ns);
                let labels =
                    format!(r#"{{environment="bench", level="{level}", service="{service}"}}"#);
                streams
                    .entry(labels)
                    .or_default()
                    .push(proto::EntryAdapter {
                        timestamp: Some(proto::Timestamp {
                            seconds: ts_ns.div_euclid(1_000_000_000),
                            nanos: ts_ns.rem_euclid(1_000_000_000) as i32,
                        }),
                        line: line.to_string().into_bytes(),
                        structured_metadata: Vec::new(),
                        parsed: Vec::new(),
                    });
            }
            let req = proto::PushRequest {
                streams: streams
                    .into_iter()
                    .map(|(labels, entries)| proto::StreamAdapter {
                        labels: labels.into_bytes(),
                        entries,
                        hash: 0,
                    })
                    .collect(),
                format: Vec::new(),
            };
            snap::raw::Encoder::new()
                .compress_vec(&req.encode_to_vec())
                .expect("snappy")
        })
        .collect()
}

/// Starts an aggregator on a free port with its store in a new directory.
fn start_server(dir: &std::path::Path) -> String {
    let port = shared::testkit::free_port();
    let env: std::collections::HashMap<String, String> = [
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("DATA_DIR", dir.join("store").display().to_string()),
        ("RETENTION_MAX_RECORDS", "0".to_owned()),
        ("RETENTION_MAX_AGE", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = AggregatorConfig::from_env(&env).expect("bench configuration");
    std::thread::spawn(move || {
        if let Err(e) = actix_rt::System::new().block_on(log_aggregator::server::serve(config)) {
            eprintln!("loki_bench: server failed: {e:#}");
            std::process::exit(1);
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// Sends the batches with `IN_FLIGHT` requests at a time; wall seconds and CPU seconds.
async fn ingest(
    base: &str,
    path: &str,
    content_type: &str,
    batches: Vec<Vec<u8>>,
    records: usize,
) -> (f64, f64) {
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
    let url = format!("{base}{path}");
    let cpu0 = own_cpu_seconds();
    let t0 = Instant::now();
    let statuses: Vec<u16> = stream::iter(batches)
        .map(|body| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let res = client
                    .post(&url)
                    .insert_header(("Content-Type", content_type))
                    .send_body(body)
                    .await
                    .expect("ingest request");
                res.status().as_u16()
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu0;
    assert!(
        statuses.iter().all(|s| (200..300).contains(s)),
        "a batch was refused: {statuses:?}"
    );
    let mut res = client
        .get(format!("{base}/logs/count"))
        .send()
        .await
        .expect("count");
    let count: serde_json::Value = res.json().await.expect("count JSON");
    assert_eq!(count["total_logs"], records, "every record is stored once");
    (wall, cpu)
}

fn main() {
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loki_bench: {e}");
            eprintln!("usage: loki_bench [--records N] [--quick]");
            std::process::exit(2);
        }
    };
    let n = opts.records;
    let start_ns = Utc::now().timestamp_nanos_opt().unwrap_or(0) - n as i64 * 1_000_000;
    let nd = ndjson_batches(n, start_ns);
    let pb = push_batches(n, start_ns);
    let nd_bytes: usize = nd.iter().map(Vec::len).sum();
    let pb_bytes: usize = pb.iter().map(Vec::len).sum();
    let mut ndjson = Vec::new();
    let mut push = Vec::new();
    let dirs: Vec<tempfile::TempDir> = (0..2 * opts.rounds)
        .map(|_| tempfile::tempdir().expect("temporary directory"))
        .collect();
    actix_rt::System::new().block_on(async {
        for round in 0..opts.rounds {
            if opts.only.as_deref() != Some("push") {
                let base = start_server(dirs[2 * round].path());
                let figures = ingest(&base, "/logs", "application/x-ndjson", nd.clone(), n).await;
                ndjson.push(figures);
            }
            if opts.only.as_deref() != Some("ndjson") {
                let base = start_server(dirs[2 * round + 1].path());
                let path = "/loki/api/v1/push";
                let figures = ingest(&base, path, "application/x-protobuf", pb.clone(), n).await;
                push.push(figures);
            }
        }
    });
    let sum = |v: &[(f64, f64)]| {
        if v.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        v.iter().fold((0.0, 0.0), |(w, c), (a, b)| (w + a, c + b))
    };
    let records = (n * opts.rounds) as f64;
    let (nd_wall, nd_cpu) = sum(&ndjson);
    let (pb_wall, pb_cpu) = sum(&push);
    let nd_rate = records / nd_wall;
    let pb_rate = records / pb_wall;
    let nd_cpu_m = nd_cpu / records * 1e6;
    let pb_cpu_m = pb_cpu / records * 1e6;
    println!("Loki push against NDJSON ingest");
    println!(
        "records: {n} per run, {} round(s); NDJSON {:.0} bytes/record, protobuf+snappy {:.0} bytes/record",
        opts.rounds,
        nd_bytes as f64 / n as f64,
        pb_bytes as f64 / n as f64
    );
    println!();
    println!("{:<34} {:>14} {:>20}", "", "records/s", "CPU s per million");
    println!(
        "{:<34} {:>14.0} {:>20.2}",
        "POST /logs (NDJSON)", nd_rate, nd_cpu_m
    );
    println!(
        "{:<34} {:>14.0} {:>20.2}",
        "POST /loki/api/v1/push (protobuf)", pb_rate, pb_cpu_m
    );
    println!(
        "{:<34} {:>13.1}% {:>19.1}%",
        "push as a share of NDJSON",
        100.0 * pb_rate / nd_rate,
        100.0 * nd_cpu_m / pb_cpu_m
    );
    let out = json!({
        "records": n,
        "ndjson_records_per_s": nd_rate.round(),
        "push_records_per_s": pb_rate.round(),
        "ndjson_cpu_s_per_million": (nd_cpu_m * 1000.0).round() / 1000.0,
        "push_cpu_s_per_million": (pb_cpu_m * 1000.0).round() / 1000.0,
        "push_rate_pct_of_ndjson": (1000.0 * pb_rate / nd_rate).round() / 10.0,
        "push_cpu_pct_of_ndjson": (1000.0 * nd_cpu_m / pb_cpu_m).round() / 10.0,
    });
    println!("BENCH_JSON {out}");
    drop(dirs);
    std::process::exit(0);
}
