//! Parse-and-relabel throughput on expositions of 10,000 and 100,000 samples.
//!
//! `cargo bench -p metrics-sidecar --bench relabel`; criterion reports samples/s as
//! elements/s. For the one-line summary with memory, see `examples/relabel_bench.rs`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use metrics_sidecar::exposition::Dialect;
use metrics_sidecar::relabel::Relabeler;

mod synthetic;

fn relabel(c: &mut Criterion) {
    let relabeler = Relabeler::new(
        &[
            ("sidecar", "true"),
            ("environment", "production"),
            ("service", "user-service"),
        ],
        "metrics_sidecar_",
    );
    let mut group = c.benchmark_group("relabel");
    for samples in [10_000usize, 100_000] {
        let body = synthetic::exposition(samples);
        group.throughput(Throughput::Elements(samples as u64));
        group.sample_size(if samples > 50_000 { 20 } else { 50 });
        group.measurement_time(std::time::Duration::from_secs(if samples > 50_000 {
            8
        } else {
            5
        }));
        group.bench_with_input(BenchmarkId::from_parameter(samples), &body, |b, body| {
            let mut out = Vec::with_capacity(body.len() * 2);
            b.iter(|| {
                out.clear();
                let stats = relabeler
                    .relabel(body.as_bytes(), Dialect::Text, &mut out)
                    .expect("the synthetic exposition is valid");
                assert_eq!(stats.samples, samples as u64);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, relabel);
criterion_main!(benches);
