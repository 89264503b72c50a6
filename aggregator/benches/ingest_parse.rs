//! The aggregator's CPU hot path before the store: a 1,000-record NDJSON body (plain and
//! gzip) turned into records, as every `POST /logs` does on an HTTP worker.
//!
//! Also one record checked and parsed alone, with and without the one-pass scan
//! (`record_check`: the check the logging sidecar runs on every line it sends, fast
//! path and full; `record_parse`: the aggregator's `record::parse` and `parse_full`).
//!
//! `cargo bench -p log-aggregator --bench ingest_parse`

use std::io::Write;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use log_aggregator::batch;
use log_aggregator::body::{self, Format};
use log_aggregator::record::{self, Received};
use shared::record_check::{check_record, check_record_full};

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

/// One record alone: its check (as the sidecar runs it) and its parse, each with the
/// one-pass scan and without (the full check by serde, the reference).
fn one_record(c: &mut Criterion) {
    let plain = ndjson();
    let text = std::str::from_utf8(&plain)
        .unwrap()
        .lines()
        .nth(7)
        .unwrap()
        .to_owned();
    let received = Received::now();
    let mut group = c.benchmark_group("record_check");
    group.throughput(Throughput::Elements(1));
    group.bench_function("check_record", |b| {
        b.iter(|| check_record(std::hint::black_box(&text)).unwrap())
    });
    group.bench_function("check_record_full", |b| {
        b.iter(|| check_record_full(std::hint::black_box(&text)).unwrap())
    });
    group.finish();
    let mut group = c.benchmark_group("record_parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse", |b| {
        b.iter(|| record::parse(std::hint::black_box(&text), &received).unwrap())
    });
    group.bench_function("parse_full", |b| {
        b.iter(|| record::parse_full(std::hint::black_box(&text), &received).unwrap())
    });
    group.finish();
}

criterion_group!(benches, parse, one_record);
criterion_main!(benches);
