//! The hot path on one core, without I/O: splitting a chunk into lines, then splicing
//! the sidecar's fields into each line. `cargo bench -p logging-sidecar --bench pipeline`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use logging_sidecar::enrich::Splicer;
use logging_sidecar::lines;

/// About 128 KiB of request-log lines of about 180 bytes, as a service writes them.
fn chunk() -> Vec<u8> {
    let mut data = Vec::new();
    let mut seq = 0u64;
    while data.len() < 128 << 10 {
        data.extend_from_slice(
            format!(
                "{{\"timestamp\":\"2026-11-25T12:00:00.000000Z\",\"service\":\"user-service\",\"level\":\"INFO\",\"message\":\"GET /users/{} 200\",\"status\":200,\"duration_ms\":1.25,\"request_id\":\"{seq:016x}\"}}\n",
                seq % 1000
            )
            .as_bytes(),
        );
        seq += 1;
    }
    data
}

fn pipeline(c: &mut Criterion) {
    let data = chunk();
    let split = lines::split(&data, 0, 64 << 10, false, false);
    let n = split.lines.len() as u64;
    let stream = 0x1234_5678_9abc_def0_u64;
    let splicer = Splicer::new("user-service", "user-service-logging-sidecar", "production");
    let mut group = c.benchmark_group("chunk_of_180_byte_lines");
    group.throughput(Throughput::Elements(n));
    group.bench_function("split", |b| {
        b.iter(|| lines::split(black_box(&data), 0, 64 << 10, false, false))
    });
    group.bench_function("enrich", |b| {
        let mut out = Vec::with_capacity(data.len() * 2);
        b.iter(|| {
            out.clear();
            splicer.enrich(
                stream,
                black_box(&data),
                &split.lines,
                "2026-11-25T12:00:00.000Z",
                &mut out,
            )
        })
    });
    group.bench_function("split_and_enrich", |b| {
        let mut out = Vec::with_capacity(data.len() * 2);
        b.iter(|| {
            out.clear();
            let s = lines::split(black_box(&data), 0, 64 << 10, false, false);
            splicer.enrich(
                stream,
                &data,
                &s.lines,
                "2026-11-25T12:00:00.000Z",
                &mut out,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
