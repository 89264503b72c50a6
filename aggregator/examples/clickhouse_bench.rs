//! Ingest through one and through two aggregators into a ClickHouse server on this
//! machine (`STORE=clickhouse`), beside one aggregator on the embedded store: records/s,
//! CPU per million records (the aggregators', ClickHouse's, the client's), bytes on disk
//! per raw byte, and query latency through an aggregator.
//!
//! ```text
//! cargo run --release -p log-aggregator --example clickhouse_bench -- \
//!     [--records N] [--quick] [--setups embedded,clickhouse_x1,clickhouse_x2] [--queries N]
//! ```
//! (`scripts/bench.sh --clickhouse` builds and runs it.)
//!
//! The records, batches and queries are `aggregator_bench`'s (examples/support/harness.rs): NDJSON
//! batches of 1,000 sidecar records, `INGEST_CONCURRENCY` requests in flight in all,
//! each acknowledged only once stored. With two aggregators the batches alternate
//! between them, as sidecars spread over a load balancer would. Each ClickHouse setup
//! gets a new server (Debian's `clickhouse-server`, found as `support/clickhouse_server`
//! says) in a temporary directory. ClickHouse's bytes on disk are its table's active
//! parts (`system.parts`) after `OPTIMIZE TABLE ... FINAL`, which is what the background
//! merges converge to; `du` of the whole server directory is shown beside. The last line
//! of stdout is `BENCH_JSON {...}`: each figure as `<setup>_<figure>`.

use std::time::Duration;

use chrono::Utc;
use shared::measure::memory_mib;
use shared::testkit::free_port;

#[path = "support/records.rs"]
mod records;

#[path = "support/clickhouse_server.rs"]
mod clickhouse_server;
use clickhouse_server::ClickHouse;

#[path = "support/harness.rs"]
mod harness;
#[path = "support/table.rs"]
mod table;
use harness::{
    dir_bytes, ingest, queries, start_aggregator, wait_healthy, QueryFigures, BATCH_RECORDS,
    INGEST_CONCURRENCY,
};
use table::{print_bench_json, query_json, Table};

const SETUPS: [&str; 3] = ["embedded", "clickhouse_x1", "clickhouse_x2"];
const TABLE: &str = "logs";

struct Options {
    records: usize,
    queries: usize,
    setups: Vec<String>,
}

fn options() -> Result<Options, String> {
    // Fewer records than aggregator_bench's million: every read on 18.16 goes through
    // FINAL and takes about half a second at 200,000 records, growing with the table.
    let mut o = Options {
        records: 200_000,
        queries: 20,
        setups: SETUPS.iter().map(|s| s.to_string()).collect(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => {
                o.records = 50_000;
                o.queries = 10;
            }
            "--records" | "--queries" | "--setups" => {
                let v = args.next().ok_or(format!("{a} needs a value"))?;
                match a.as_str() {
                    "--records" => o.records = v.parse().map_err(|e| format!("{a} {v}: {e}"))?,
                    "--queries" => o.queries = v.parse().map_err(|e| format!("{a} {v}: {e}"))?,
                    _ => o.setups = v.split(',').map(str::to_owned).collect(),
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(bad) = o.setups.iter().find(|s| !SETUPS.contains(&s.as_str())) {
        return Err(format!(
            "unknown setup {bad:?} (known: {})",
            SETUPS.join(", ")
        ));
    }
    o.records = o.records.max(BATCH_RECORDS);
    Ok(o)
}

/// What one setup measured.
#[derive(Default)]
struct Figures {
    ingest_rate: f64,
    aggregator_cpu_per_million: f64,
    clickhouse_cpu_per_million: f64,
    client_cpu_per_million: f64,
    raw_bytes: u64,
    disk_bytes: u64,
    /// `du` of the whole ClickHouse directory (system tables, metadata, logs included).
    du_bytes: u64,
    /// Parts of the table right after the ingest, before any `OPTIMIZE`.
    parts_after_ingest: u64,
    queries: Vec<QueryFigures>,
    aggregator_peak_rss_mib: f64,
    clickhouse_rss_mib: f64,
}

fn fail(message: &str) -> ! {
    eprintln!("clickhouse_bench: {message}");
    std::process::exit(1)
}

async fn measure(setup: &str, opts: &Options, start_us: i64) -> Figures {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temporary directory: {e}")));
    let clickhouse = match setup {
        "embedded" => None,
        _ => Some(
            ClickHouse::start(&dir.path().join("clickhouse"))
                .await
                .unwrap_or_else(|e| fail(&e)),
        ),
    };
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(300))
        .finish();
    let count = if setup == "clickhouse_x2" { 2 } else { 1 };
    let mut aggregators = Vec::new();
    for n in 0..count {
        let envs = match &clickhouse {
            None => vec![("STORE", "embedded".to_owned())],
            Some(ch) => vec![
                ("STORE", "clickhouse".to_owned()),
                ("CLICKHOUSE_URL", ch.url()),
                ("CLICKHOUSE_TABLE", TABLE.to_owned()),
            ],
        };
        let name = format!("aggregator-{n}");
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut p = start_aggregator(&name, port, &dir.path().join(&name), &envs, dir.path())
            .unwrap_or_else(|e| fail(&e));
        wait_healthy(&mut p, &client, &base, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| fail(&e));
        aggregators.push((p, base));
    }
    let mut f = Figures::default();

    eprintln!(
        "{setup}: ingesting {} records through {count} aggregator(s)...",
        opts.records
    );
    // The aggregators' CPU, then ClickHouse's.
    let mut watched: Vec<u32> = aggregators.iter().map(|(p, _)| p.id()).collect();
    watched.extend(clickhouse.as_ref().map(|c| c.process.id()));
    let bases: Vec<String> = aggregators.iter().map(|(_, b)| b.clone()).collect();
    let ingested = ingest(&client, &bases, opts.records, start_us, &watched)
        .await
        .unwrap_or_else(|e| fail(&format!("{setup}: {e}")));
    f.ingest_rate = ingested.rate;
    f.aggregator_cpu_per_million = ingested.cpu_per_million[..count].iter().sum();
    f.clickhouse_cpu_per_million = ingested.cpu_per_million.get(count).copied().unwrap_or(0.0);
    f.client_cpu_per_million = ingested.client_cpu_per_million;
    f.raw_bytes = ingested.raw_bytes;

    eprintln!("{setup}: querying through the first aggregator...");
    f.queries = queries(&client, &aggregators[0].1, opts.records, opts.queries)
        .await
        .unwrap_or_else(|e| fail(&e));
    f.aggregator_peak_rss_mib = aggregators
        .iter()
        .map(|(p, _)| memory_mib(p.id()).map_or(0.0, |m| m.1))
        .fold(0.0, f64::max);

    match &clickhouse {
        None => {
            let (p, _) = &mut aggregators[0];
            p.signal(libc::SIGTERM);
            if p.wait_timeout(Duration::from_secs(120)).is_none() {
                fail("the aggregator did not stop on SIGTERM");
            }
            f.disk_bytes = dir_bytes(&dir.path().join("aggregator-0"));
        }
        Some(ch) => {
            f.clickhouse_rss_mib = memory_mib(ch.process.id()).map_or(0.0, |m| m.0);
            let parts = format!(
                "SELECT count(), sum(bytes_on_disk), sum(rows) FROM system.parts \
                 WHERE active AND database = currentDatabase() AND table = '{TABLE}'"
            );
            let n = ch.numbers(&parts).await.unwrap_or_else(|e| fail(&e));
            f.parts_after_ingest = n[0] as u64;
            ch.query(&format!("OPTIMIZE TABLE {TABLE} FINAL"))
                .await
                .unwrap_or_else(|e| fail(&e));
            let n = ch.numbers(&parts).await.unwrap_or_else(|e| fail(&e));
            if n[2] as usize != opts.records {
                fail(&format!(
                    "{setup}: the table holds {} rows, not {}",
                    n[2], opts.records
                ));
            }
            f.disk_bytes = n[1] as u64;
            f.du_bytes = dir_bytes(&ch.data);
        }
    }
    f
}

fn main() {
    let opts = options().unwrap_or_else(|e| {
        eprintln!("clickhouse_bench: {e}");
        eprintln!(
            "usage: clickhouse_bench [--records N] [--quick] [--setups {}] [--queries N]",
            SETUPS.join(",")
        );
        std::process::exit(2)
    });
    let start_us = Utc::now().timestamp_micros() - opts.records as i64 * 100;
    let mut all = Vec::new();
    for setup in &opts.setups {
        let f = actix_rt::System::new().block_on(measure(setup, &opts, start_us));
        all.push((setup.clone(), f));
    }
    print_table(&opts, &all);
}

fn print_table(opts: &Options, all: &[(String, Figures)]) {
    println!(
        "ClickHouse store benchmark: {} records per setup, batches of {BATCH_RECORDS}, {INGEST_CONCURRENCY} in flight in all",
        opts.records
    );
    let table = Table::start(all, 48, 14);
    table.row(
        "ingest over HTTP, acknowledged (records/s)",
        &|f| f.ingest_rate,
        0,
    );
    table.row(
        "aggregator CPU per million records (s)",
        &|f| f.aggregator_cpu_per_million,
        2,
    );
    table.row(
        "ClickHouse CPU per million records (s)",
        &|f| f.clickhouse_cpu_per_million,
        2,
    );
    table.row(
        "client CPU per million records (s)",
        &|f| f.client_cpu_per_million,
        2,
    );
    let ratio = |b: u64, f: &Figures| b as f64 / f.raw_bytes.max(1) as f64;
    table.row(
        "bytes on disk per raw NDJSON byte",
        &|f| ratio(f.disk_bytes, f),
        3,
    );
    table.row(
        "  ClickHouse directory (du) per raw byte",
        &|f| ratio(f.du_bytes, f),
        3,
    );
    table.row(
        "table parts right after the ingest",
        &|f| f.parts_after_ingest as f64,
        0,
    );
    table.query_rows(|f| &f.queries);
    table.row(
        "aggregator peak RSS (MiB)",
        &|f| f.aggregator_peak_rss_mib,
        1,
    );
    table.row(
        "ClickHouse RSS after the queries (MiB)",
        &|f| f.clickhouse_rss_mib,
        1,
    );

    print_bench_json(opts.records, all, |f| {
        let mut v = vec![
            ("ingest_records_per_s".to_owned(), f.ingest_rate.round()),
            (
                "aggregator_cpu_s_per_million".to_owned(),
                f.aggregator_cpu_per_million,
            ),
            (
                "clickhouse_cpu_s_per_million".to_owned(),
                f.clickhouse_cpu_per_million,
            ),
            ("disk_bytes_per_raw_byte".to_owned(), ratio(f.disk_bytes, f)),
        ];
        v.extend(query_json(&f.queries));
        v
    });
}
