//! Whole-system figures for the aggregator on its default store: durable ingest over
//! HTTP, the server's CPU per million records, bytes on disk per raw byte, query
//! latency, memory, and restart time.
//!
//! ```text
//! cargo run --release -p log-aggregator --example aggregator_bench -- \
//!     [--records N] [--quick] [--queries N] [--keep DIR]
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
//! stdout is `BENCH_JSON {...}`: each figure as `embedded_<figure>`, the keys it had
//! when the SQLite store was measured beside it, so that saved results still compare
//! (BENCHMARKS.md keeps that store's last figures). `--keep DIR` leaves the store in `DIR/embedded` for a look afterwards (with
//! DuckDB or pyarrow). The ClickHouse store has its own benchmark, `clickhouse_bench`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use shared::measure::memory_mib;
use shared::testkit::{free_port, Process};

#[path = "support/records.rs"]
mod records;

#[path = "support/harness.rs"]
mod harness;
#[path = "support/table.rs"]
mod table;
use harness::{
    dir_bytes, ingest, queries, start_aggregator, wait_healthy, QueryFigures, BATCH_RECORDS,
    INGEST_CONCURRENCY,
};
use table::{print_bench_json, query_json, Table};

/// The store measured, and the prefix of its figures' keys.
const STORE: &str = "embedded";

struct Options {
    records: usize,
    queries: usize,
    /// Where the store goes (kept afterwards); a temporary directory when absent.
    keep: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        records: 1_000_000,
        queries: 300,
        keep: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => {
                o.records = 100_000;
                o.queries = 60;
            }
            "--records" | "--queries" | "--keep" => {
                let v = args.next().ok_or(format!("{a} needs a value"))?;
                match a.as_str() {
                    "--records" => {
                        o.records = v.parse().map_err(|e| format!("--records {v}: {e}"))?
                    }
                    "--queries" => {
                        o.queries = v.parse().map_err(|e| format!("--queries {v}: {e}"))?
                    }
                    _ => o.keep = Some(PathBuf::from(v)),
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
    queries: Vec<QueryFigures>,
    rss_mib: f64,
    peak_rss_mib: f64,
    restart_s: f64,
    rss_after_restart_mib: f64,
}

fn fail(message: &str) -> ! {
    eprintln!("aggregator_bench: {message}");
    std::process::exit(1)
}

fn start(store: &str, data: &Path, port: u16, logs: &Path) -> Process {
    let envs = [("STORE", store.to_owned())];
    start_aggregator(store, port, data, &envs, logs).unwrap_or_else(|e| fail(&e))
}

async fn measure(store: &str, opts: &Options, start_us: i64) -> Figures {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temporary directory: {e}")));
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
    wait_healthy(&mut server, &client, &base, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| fail(&e));
    let mut f = Figures::default();

    eprintln!("{store}: ingesting {} records...", opts.records);
    let bases = [base.clone()];
    let ingested = ingest(&client, &bases, opts.records, start_us, &[server.id()])
        .await
        .unwrap_or_else(|e| fail(&format!("{store}: {e}")));
    f.ingest_rate = ingested.rate;
    f.server_cpu_per_million = ingested.cpu_per_million[0];
    f.client_cpu_per_million = ingested.client_cpu_per_million;
    f.raw_bytes = ingested.raw_bytes;

    eprintln!("{store}: querying...");
    f.queries = queries(&client, &base, opts.records, opts.queries)
        .await
        .unwrap_or_else(|e| fail(&e));
    let (rss, peak) = memory_mib(server.id()).unwrap_or((0.0, 0.0));
    f.rss_mib = rss;
    f.peak_rss_mib = peak;

    eprintln!("{store}: restarting...");
    server.signal(libc::SIGTERM);
    if server.wait_timeout(Duration::from_secs(120)).is_none() {
        fail("the aggregator did not stop on SIGTERM");
    }
    f.disk_bytes = dir_bytes(&data);
    let t = Instant::now();
    let mut server = start(store, &data, port, dir.path());
    wait_healthy(&mut server, &client, &base, Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| fail(&e));
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
            eprintln!("usage: aggregator_bench [--records N] [--quick] [--queries N] [--keep DIR]");
            std::process::exit(2);
        }
    };
    let start_us = Utc::now().timestamp_micros() - opts.records as i64 * 100;
    let f = actix_rt::System::new().block_on(measure(STORE, &opts, start_us));
    let all = vec![(STORE.to_owned(), f)];

    println!("log-aggregator benchmark: {} records, batches of {BATCH_RECORDS}, {INGEST_CONCURRENCY} in flight", opts.records);
    let table = Table::start(&all, 44, 12);
    table.row(
        "ingest over HTTP, durable (records/s)",
        &|f| f.ingest_rate,
        0,
    );
    table.row(
        "server CPU per million records (s)",
        &|f| f.server_cpu_per_million,
        2,
    );
    table.row(
        "client CPU per million records (s)",
        &|f| f.client_cpu_per_million,
        2,
    );
    table.row(
        "bytes on disk per raw NDJSON byte",
        &|f| f.disk_bytes as f64 / f.raw_bytes.max(1) as f64,
        3,
    );
    table.query_rows(|f| &f.queries);
    table.row("RSS after the queries (MiB)", &|f| f.rss_mib, 1);
    table.row("peak RSS (MiB)", &|f| f.peak_rss_mib, 1);
    table.row("restart until healthy (s)", &|f| f.restart_s, 2);
    table.row(
        "RSS after the restart (MiB)",
        &|f| f.rss_after_restart_mib,
        1,
    );

    print_bench_json(opts.records, &all, |f| {
        let mut v = vec![
            ("ingest_records_per_s".to_owned(), f.ingest_rate.round()),
            (
                "server_cpu_s_per_million".to_owned(),
                f.server_cpu_per_million,
            ),
            (
                "disk_bytes_per_raw_byte".to_owned(),
                f.disk_bytes as f64 / f.raw_bytes.max(1) as f64,
            ),
        ];
        v.extend(query_json(&f.queries));
        v.extend([
            ("rss_mib".to_owned(), f.rss_mib),
            ("peak_rss_mib".to_owned(), f.peak_rss_mib),
            ("restart_s".to_owned(), f.restart_s),
        ]);
        v
    });
}
