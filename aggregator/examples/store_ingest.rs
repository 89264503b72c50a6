//! The store alone, for profiling the writer: parses `--records N` bench-like records
//! (not measured), then inserts them in transactions of 1,000 and prints the rate and
//! the CPU time of the inserting thread.
//!
//! ```text
//! cargo run --release -p log-aggregator --example store_ingest -- [--records N] [--prefill N] [--quick]
//! ```
//!
//! `--prefill N` stores N records first, unmeasured, so that the measured ones land in
//! a store of realistic size. Under an instruction counter, count only
//! `Db::insert_batches` (it is all that is measured): the count does not depend on
//! the machine's load, so variants compare reliably. The last line of stdout is
//! `BENCH_JSON {...}`.

use std::time::Instant;

use log_aggregator::config::SyncMode;
use log_aggregator::record::{self, Received};
use log_aggregator::sqlite::db::Db;
use shared::measure::thread_cpu_seconds;

const BATCH_RECORDS: usize = 1000;
const SERVICES: [&str; 3] = ["user-service", "product-service", "order-service"];
const WORDS: [&str; 4] = ["cache hit", "db query", "served", "slow upstream"];

fn record(i: usize) -> String {
    let s = i % SERVICES.len();
    let level = if i % 50 == 0 { "ERROR" } else { "INFO" };
    serde_json::json!({
        "timestamp": format!("2024-05-01T10:{:02}:{:02}.{:06}Z", (i / 60_000_000) % 60, (i / 1_000_000) % 60, i % 1_000_000),
        "service": SERVICES[s],
        "level": level,
        "message": format!("GET /x/{} 200 {}ms {}", i % 997, i % 89, WORDS[i % WORDS.len()]),
        "request_id": format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        "environment": "bench",
        "event_id": format!("bench-{i:09}"),
    })
    .to_string()
}

fn batches(from: usize, to: usize) -> Vec<Vec<record::Record>> {
    let received = Received::now();
    (from..to)
        .step_by(BATCH_RECORDS)
        .map(|b| {
            (b..(b + BATCH_RECORDS).min(to))
                .map(|i| record::parse(&record(i), &received).expect("record"))
                .collect()
        })
        .collect()
}

fn options() -> Result<(usize, usize), String> {
    let (mut records, mut prefill) = (100_000, 0);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--quick" {
            records = 20_000;
            continue;
        }
        let v = args.next().ok_or(format!("{a} needs a number"))?;
        let n = v.parse().map_err(|e| format!("{a} {v}: {e}"))?;
        match a.as_str() {
            "--records" => records = n,
            "--prefill" => prefill = n,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((records, prefill))
}

fn main() {
    let (records, prefill) = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("store_ingest: {e}");
            std::process::exit(2);
        }
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut store = Db::open_writer(dir.path(), SyncMode::Normal).expect("store");
    for chunk in (0..prefill).step_by(100_000) {
        for b in batches(chunk, (chunk + 100_000).min(prefill)) {
            store.insert(&b).expect("insert");
        }
    }
    let parsed = batches(prefill, prefill + records);
    let t = Instant::now();
    let cpu0 = thread_cpu_seconds();
    let mut commits_ms = Vec::with_capacity(parsed.len());
    for b in &parsed {
        let c = Instant::now();
        store.insert(b).expect("insert");
        commits_ms.push(c.elapsed().as_secs_f64() * 1e3);
    }
    let wall = t.elapsed().as_secs_f64();
    commits_ms.sort_by(f64::total_cmp);
    let p99 = commits_ms[(commits_ms.len() - 1) * 99 / 100];
    let max = commits_ms.last().copied().unwrap_or(0.0);
    let cpu = thread_cpu_seconds() - cpu0;
    let (rate, cpu_rate) = (records as f64 / wall, records as f64 / cpu);
    println!("store alone: {records} records into a store of {prefill}");
    println!("{:<36} {rate:>10.0} rec/s", "wall");
    println!(
        "{:<36} {cpu_rate:>10.0} rec/s",
        "per CPU-second of the thread"
    );
    println!(
        "BENCH_JSON {}",
        serde_json::json!({
            "records": records,
            "prefill": prefill,
            "store_ingest_records_per_s": rate.round(),
            "store_ingest_records_per_cpu_s": cpu_rate.round(),
            "store_commit_p99_ms": (p99 * 1e3).round() / 1e3,
            "store_commit_max_ms": (max * 1e3).round() / 1e3,
        })
    );
}
