//! The components' own benchmark commands: found, built, run several times, and their
//! `BENCH_JSON` lines collected.
//!
//! Each component ships an example that prints a table and, as its last line of stdout,
//! `BENCH_JSON {flat object}`; it accepts `--quick`. A component that has not landed (no
//! such package or example in the workspace) is reported as such, not as a failure of
//! the harness.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::children::{interrupted, run_captured};
use crate::figures::{known, Known, Section};

/// A run taking longer than this is stopped and counted as failed.
pub const BENCH_TIMEOUT: Duration = Duration::from_secs(8 * 60);
pub const QUICK_BENCH_TIMEOUT: Duration = Duration::from_secs(90);

/// One component benchmark the harness knows.
#[derive(Debug, Clone, Copy)]
pub struct Bench {
    pub id: &'static str,
    pub title: &'static str,
    pub package: &'static str,
    pub example: &'static str,
    pub known: &'static [Known],
}

#[rustfmt::skip]
pub const BENCHES: &[Bench] = &[
    Bench {
        id: "sidecar",
        title: "Logging sidecar",
        package: "logging-sidecar",
        example: "sidecar_bench",
        known: &[
            known("e2e_lines_per_s", "throughput into the aggregator", "lines/s", true),
            known("alone_lines_per_s", "throughput alone, into a counting sink", "lines/s", true),
            known("latency_p50_ms", "write-to-queryable latency p50", "ms", false),
            known("latency_p99_ms", "write-to-queryable latency p99", "ms", false),
            known("sink_latency_p50_ms", "write-to-sink latency p50, alone", "ms", false),
            known("sink_latency_p99_ms", "write-to-sink latency p99, alone", "ms", false),
            known("peak_rss_mib", "peak RSS", "MiB", false),
            known("cpu_seconds_per_million", "CPU per million lines, alone", "s", false),
            known("e2e_cpu_seconds_per_million", "CPU per million lines, into the aggregator", "s", false),
        ],
    },
    Bench {
        id: "aggregator",
        title: "Log aggregator",
        package: "log-aggregator",
        example: "aggregator_bench",
        known: &[
            known("embedded_ingest_records_per_s", "ingest over HTTP, durable — embedded store", "records/s", true),
            known("embedded_server_cpu_s_per_million", "aggregator CPU per million records — embedded", "s", false),
            known("embedded_disk_bytes_per_raw_byte", "bytes on disk per raw NDJSON byte — embedded", "ratio", false),
            known("embedded_query_newest_p99_ms", "newest page p99 — embedded", "ms", false),
            known("embedded_query_service_p99_ms", "page by service p99 — embedded", "ms", false),
            known("embedded_query_request_p99_ms", "request_id lookup p99 — embedded", "ms", false),
            known("embedded_query_text_p99_ms", "text search p99 — embedded", "ms", false),
            known("embedded_query_count_p99_ms", "/logs/count p99 — embedded", "ms", false),
            known("embedded_peak_rss_mib", "aggregator peak RSS — embedded", "MiB", false),
            known("embedded_restart_s", "restart until healthy — embedded", "s", false),
            known("records", "records in the store", "records", true),
        ],
    },
    Bench {
        id: "loki",
        title: "Loki push against NDJSON ingest",
        package: "log-aggregator",
        example: "loki_bench",
        known: &[
            known("push_records_per_s", "Loki push (protobuf + snappy), durable", "records/s", true),
            known("ndjson_records_per_s", "POST /logs NDJSON, same records, durable", "records/s", true),
            known("push_rate_pct_of_ndjson", "push rate as a share of NDJSON (target >= 80)", "%", true),
            known("push_cpu_s_per_million", "push CPU per million records", "s", false),
            known("ndjson_cpu_s_per_million", "NDJSON CPU per million records", "s", false),
            known("push_cpu_pct_of_ndjson", "push records per CPU-second as a share of NDJSON", "%", true),
            known("records", "records per run", "records", true),
        ],
    },
    Bench {
        id: "metrics",
        title: "Metrics sidecar",
        package: "metrics-sidecar",
        example: "relabel_bench",
        known: &[
            known("relabel_samples_per_s_10k", "relabel rate, 10k-sample scrape", "samples/s", true),
            known("relabel_samples_per_s_100k", "relabel rate, 100k-sample scrape", "samples/s", true),
            known("rss_mib_holding_100k", "RSS holding a 100k-sample scrape", "MiB", false),
            known("rss_peak_mib_100k", "peak RSS around a 100k-sample scrape", "MiB", false),
        ],
    },
];

/// The workspace's packages, each with its examples.
#[derive(Debug, Default)]
pub struct Workspace {
    pub target_dir: PathBuf,
    packages: BTreeMap<String, Vec<String>>,
}

impl Workspace {
    /// Reads `cargo metadata` for the workspace at `root`.
    pub fn load(root: &Path) -> anyhow::Result<Workspace> {
        let out = Command::new("cargo")
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(root)
            .output()
            .context("cannot run cargo metadata")?;
        anyhow::ensure!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Workspace::parse(&serde_json::from_slice(&out.stdout)?)
    }

    fn parse(meta: &Value) -> anyhow::Result<Workspace> {
        let target_dir = meta["target_directory"]
            .as_str()
            .context("cargo metadata has no target_directory")?
            .into();
        let mut packages = BTreeMap::new();
        for p in meta["packages"].as_array().into_iter().flatten() {
            let examples = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.contains(&"example".into()))
                })
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect();
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            packages.insert(name, examples);
        }
        Ok(Workspace {
            target_dir,
            packages,
        })
    }

    /// `Ok(())` when the example exists, else why it cannot run.
    pub fn find(&self, bench: &Bench) -> Result<(), String> {
        match self.packages.get(bench.package) {
            None => Err(format!(
                "package {} is not in this workspace yet",
                bench.package
            )),
            Some(examples) if !examples.iter().any(|e| e == bench.example) => Err(format!(
                "package {} has no example {} (examples: {})",
                bench.package,
                bench.example,
                if examples.is_empty() {
                    "none".to_owned()
                } else {
                    examples.join(", ")
                }
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Builds in release mode the given packages' examples; `Err` carries the end of
/// cargo's output.
pub fn build(root: &Path, packages: &[&str], examples: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).args(["build", "--release"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    for e in examples {
        cmd.args(["--example", e]);
    }
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(15).collect();
    Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
}

/// The figures of the last `BENCH_JSON` line of `stdout`. Every figure is a count, a
/// rate, a time or a size, so a negative value is how a benchmark says it could not
/// measure one: it is left out, not averaged in.
pub fn parse_bench_json(stdout: &str) -> Result<BTreeMap<String, f64>, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or("printed nothing")?;
    let json = line
        .strip_prefix("BENCH_JSON ")
        .ok_or_else(|| format!("last line is not BENCH_JSON: {line:?}"))?;
    let value: Value =
        serde_json::from_str(json).map_err(|e| format!("BENCH_JSON is not JSON: {e}"))?;
    let object = value.as_object().ok_or("BENCH_JSON is not an object")?;
    Ok(object
        .iter()
        .filter_map(|(k, v)| v.as_f64().filter(|x| *x >= 0.0).map(|x| (k.clone(), x)))
        .collect())
}

/// Runs a built benchmark `runs` times and gathers its figures.
pub fn run(bench: &Bench, program: &Path, runs: usize, quick: bool, scratch: &Path) -> Section {
    let args: &[&str] = if quick { &["--quick"] } else { &[] };
    let timeout = if quick {
        QUICK_BENCH_TIMEOUT
    } else {
        BENCH_TIMEOUT
    };
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut failure = None;
    for i in 0..runs {
        if interrupted() {
            failure = Some("interrupted".to_owned());
            break;
        }
        eprintln!(
            "benchrun: {} run {}/{runs} ({}{})...",
            bench.title,
            i + 1,
            bench.example,
            if quick { " --quick" } else { "" }
        );
        let name = format!("{}-{i}", bench.example);
        let outcome = match run_captured(
            &program.display().to_string(),
            args,
            timeout,
            scratch,
            &name,
        ) {
            Err(e) => Err(e.to_string()),
            Ok(None) => Err(format!("did not finish within {} s", timeout.as_secs())),
            Ok(Some((status, _, stderr))) if !status.success() => Err(format!(
                "exited with {status}: {}",
                stderr.lines().last().unwrap_or_default()
            )),
            Ok(Some((_, stdout, _))) => parse_bench_json(&stdout),
        };
        match outcome {
            Ok(figures) => {
                for (k, v) in figures {
                    values.entry(k).or_default().push(v);
                }
            }
            Err(e) => {
                eprintln!("benchrun: {} run {} failed: {e}", bench.title, i + 1);
                failure = Some(e);
            }
        }
    }
    Section {
        id: bench.id,
        title: bench.title.to_owned(),
        source: format!(
            "cargo run --release -p {} --example {}{}",
            bench.package,
            bench.example,
            if quick { " -- --quick" } else { "" }
        ),
        known: bench.known,
        values: match failure {
            Some(e) if values.is_empty() => Err(e),
            _ => Ok(values),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_last_line_carries_the_figures() {
        let out = "table\nrow 1\nBENCH_JSON {\"a_per_s\": 12.5, \"b_ms\": 3, \"note\": \"x\", \"c_ms\": -1}\n\n";
        let f = parse_bench_json(out).unwrap();
        assert!(
            !f.contains_key("c_ms"),
            "a negative value means not measured"
        );
        assert_eq!(f["a_per_s"], 12.5);
        assert_eq!(f["b_ms"], 3.0);
        assert!(!f.contains_key("note"));
        assert!(parse_bench_json("BENCH_JSON {}\ntrailing\n")
            .unwrap_err()
            .contains("not BENCH_JSON"));
        assert!(parse_bench_json("BENCH_JSON [1]").is_err());
        assert!(parse_bench_json("").is_err());
    }

    #[test]
    fn a_missing_component_is_named() {
        let ws = Workspace::parse(&json!({
            "target_directory": "/t",
            "packages": [
                {"name": "metrics-sidecar", "targets": [
                    {"name": "metrics-sidecar", "kind": ["bin"]},
                    {"name": "other_bench", "kind": ["example"]},
                ]},
                {"name": "log-aggregator", "targets": [
                    {"name": "aggregator_bench", "kind": ["example"]},
                ]},
            ]
        }))
        .unwrap();
        assert!(ws
            .find(&BENCHES[0])
            .unwrap_err()
            .contains("not in this workspace"));
        assert!(ws.find(&BENCHES[1]).is_ok());
        let e = ws.find(&BENCHES[3]).unwrap_err();
        assert!(
            e.contains("no example relabel_bench (examples: other_bench)"),
            "{e}"
        );
        assert_eq!(ws.target_dir, PathBuf::from("/t"));
    }
}
