//! The aggregator's CPU hot path before the store: a 1,000-record NDJSON body (plain and
//! gzip) turned into records, as every `POST /logs` does on an HTTP worker.
//!
//! `cargo bench -p log-aggregator --bench ingest_parse`

use std::io::Write;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use log_aggregator::batch;
use log_aggregator::body::{self, Format};
use log_aggregator::record::Received;

const RECORDS: usize = 1000;

fn ndjson() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..RECORDS {
        writeln!(
            out,
            r#"{{"timestamp":"2026-01-01T00:00:{:02}.{:06}Z","service":"user-service","level":"INFO","message":"GET /users/{} 200 {}ms cache hit","request_id":"{:016x}","environment":"bench","event_id":"user-service-1f2e-{:x}"}}"#,
            i % 60,
            i,
            i % 997,
            i % 89,
            (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            i * 217
        )
        .unwrap();
    }
    out
}

fn parse(c: &mut Criterion) {
    let plain = ndjson();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&plain).unwrap();
    let gz = enc.finish().unwrap();
    let received = Received::now();
    let mut group = c.benchmark_group("ingest_parse");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("ndjson_1000", |b| {
        b.iter(|| batch::parse_batch(&plain, Format::Ndjson, &received).unwrap())
    });
    // What `POST /logs` runs: the same, with the record limit and the memory budget.
    let gauge = prometheus::IntGauge::new("bench_budget", "unused").unwrap();
    let budget = log_aggregator::admission::MemoryBudget::new(256 << 20, gauge);
    group.bench_function("ndjson_1000_within_limits", |b| {
        b.iter(|| {
            let mut memory = budget.reservation();
            let within = batch::Within {
                max_records: 100_000,
                allowance: &mut memory,
            };
            batch::parse_batch_within(&plain, Format::Ndjson, &received, within).unwrap()
        })
    });
    group.bench_function("gzip_ndjson_1000", |b| {
        b.iter_batched(
            || gz.clone(),
            |gz| {
                let raw = body::gunzip(&gz, 16 << 20).unwrap();
                batch::parse_batch(&raw, Format::Ndjson, &received).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
