//! Whole-system benchmark of the logging sidecar (release build, real processes).
//!
//! `cargo run --release -p logging-sidecar --example sidecar_bench -- [--lines N] [--quick]`
//!
//! 1. *Alone*: N prewritten lines of about 180 bytes, the sidecar forwarding into
//!    `counting-sink` in count mode, which does next to nothing per record: the
//!    sidecar's own throughput, peak RSS (VmHWM) and CPU time.
//! 2. *End to end*: the same file into the real `log-aggregator`, timed until
//!    `GET /logs/count` reports every line stored.
//! 3. *Latency*: a writer appends 20,000 lines/s, each stamped with its write time;
//!    write-to-queryable latency is measured by polling the aggregator for its newest
//!    record (`GET /logs?order=desc&limit=1`): every line up to that one counts as
//!    queryable at that moment. The same run also reports write-to-arrival latency
//!    measured inside a counting sink, the sidecar's share alone.
//!
//! Prints a table, then `BENCH_JSON {...}` as its last line. Before it runs, it builds
//! the release binaries it needs (when started through cargo).

mod support;

use shared::measure;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shared::testkit::free_port;
use support::spawn;

struct Args {
    lines: u64,
    latency_secs: u64,
    rate: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        lines: 1_000_000,
        latency_secs: 10,
        rate: 20_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => {
                args.lines = 100_000;
                args.latency_secs = 3;
            }
            "--lines" => args.lines = it.next().and_then(|v| v.parse().ok()).expect("--lines N"),
            "--latency-secs" => {
                args.latency_secs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--latency-secs N")
            }
            "--rate" => args.rate = it.next().and_then(|v| v.parse().ok()).expect("--rate N"),
            other => {
                eprintln!(
                    "unknown argument {other}; use --lines N, --latency-secs N, --rate N, --quick"
                );
                std::process::exit(2);
            }
        }
    }
    args
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// A line like a service's request log, about 180 bytes.
fn line(seq: u64, written_us: u64) -> String {
    format!(
        "{{\"timestamp\":\"2026-11-25T12:00:00.000000Z\",\"service\":\"bench\",\"level\":\"INFO\",\"message\":\"GET /users/{} 200\",\"status\":200,\"duration_ms\":1.25,\"request_id\":\"{seq:08x}\",\"seq\":{seq},\"written_us\":{written_us}}}\n",
        seq % 1000
    )
}

struct Http {
    client: awc::Client,
}

impl Http {
    async fn json(&self, url: &str) -> Option<Value> {
        let mut res = self
            .client
            .get(url)
            .bearer_auth("bench-token")
            .send()
            .await
            .ok()?;
        if !res.status().is_success() {
            return None;
        }
        let body = res.body().limit(1 << 24).await.ok()?;
        serde_json::from_slice(&body).ok()
    }

    async fn wait_up(&self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.json(url).await.is_none() {
            assert!(Instant::now() < deadline, "{url} did not come up");
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn sidecar_env(
    port: u16,
    log: &Path,
    state: &Path,
    url: &str,
    service: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("SERVICE_NAME", service.to_owned()),
        ("LOG_PATH", log.display().to_string()),
        ("STATE_DIR", state.display().to_string()),
        ("AGGREGATOR_URL", url.to_owned()),
        ("AGGREGATOR_TOKEN", "bench-token".to_owned()),
    ]
}

struct Run {
    lines_per_s: f64,
    peak_rss_mib: f64,
    cpu_s: f64,
}

/// Where a throughput run sends its lines and how it sees them arrive.
struct Target<'a> {
    name: &'a str,
    url: String,
    count_url: String,
    key: &'a str,
}

/// Starts a sidecar on `log` and times it until the target's count reaches `lines`.
async fn throughput(
    bins: &Path,
    dir: &Path,
    log: &Path,
    target: Target<'_>,
    lines: u64,
    http: &Http,
) -> Run {
    let Target {
        name,
        url,
        count_url,
        key,
    } = target;
    let (url, count_url) = (url.as_str(), count_url.as_str());
    let state = dir.join(format!("state-{name}"));
    let start = Instant::now();
    let sidecar = spawn(
        &bins.join("logging-sidecar"),
        &sidecar_env(free_port(), log, &state, url, "bench"),
        &dir.join(format!("sidecar-{name}.stderr")),
    );
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(v) = http.json(count_url).await {
            last = v[key].as_u64().unwrap_or(0);
            if last >= lines {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name}: stuck at {last} of {lines}"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let pid = sidecar.id();
    let peak_rss_mib = measure::memory_mib(pid).map_or(0.0, |(_, peak)| peak);
    let cpu_s = measure::cpu_seconds(pid).unwrap_or(0.0);
    Run {
        lines_per_s: lines as f64 / elapsed,
        peak_rss_mib,
        cpu_s,
    }
}

/// Writes `rate` lines/s for `secs` into `log`, in 1 ms ticks, returning write times.
fn steady_writer(log: PathBuf, rate: u64, secs: u64) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let total = rate * secs;
        let mut times = Vec::with_capacity(total as usize);
        let start = Instant::now();
        let mut seq = 0;
        while seq < total {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            let mut text = String::new();
            while seq < due.min(total) {
                let t = now_us();
                text.push_str(&line(seq, t));
                times.push(t);
                seq += 1;
            }
            if !text.is_empty() {
                f.write_all(text.as_bytes()).unwrap();
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        times
    })
}

fn main() {
    let args = parse_args();
    let exe = std::env::current_exe().unwrap();
    let bins = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    if let Ok(cargo) = std::env::var("CARGO") {
        let ok = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "logging-sidecar",
                "-p",
                "log-aggregator",
                "--bins",
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "building the release binaries failed");
    }
    for bin in ["logging-sidecar", "counting-sink", "log-aggregator"] {
        assert!(
            bins.join(bin).exists(),
            "{} is missing: run `cargo build --release --workspace` first",
            bins.join(bin).display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    eprintln!("Writing {} lines...", args.lines);
    let log = dir.join("prewritten.log");
    {
        let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(&log).unwrap());
        for seq in 0..args.lines {
            w.write_all(line(seq, 0).as_bytes()).unwrap();
        }
        w.flush().unwrap();
    }
    let bytes = fs::metadata(&log).unwrap().len();

    actix_rt::System::new().block_on(async move {
        let http = Http {
            client: awc::Client::builder().timeout(Duration::from_secs(30)).finish(),
        };

        // 1. The sidecar alone, into a counting sink.
        let sink_port = free_port();
        let _sink = spawn(
            &bins.join("counting-sink"),
            &[
                ("LISTEN_ADDR", format!("127.0.0.1:{sink_port}")),
                ("SINK_MODE", "count".to_owned()),
            ],
            &dir.join("sink.stderr"),
        );
        let sink = format!("http://127.0.0.1:{sink_port}");
        http.wait_up(&format!("{sink}/health")).await;
        eprintln!("Sidecar alone into the counting sink...");
        let alone = throughput(
            &bins,
            dir,
            &log,
            Target {
                name: "alone",
                url: format!("{sink}/logs"),
                count_url: format!("{sink}/stats"),
                key: "unique",
            },
            args.lines,
            &http,
        )
        .await;

        // 2. End to end into the real aggregator.
        let agg_port = free_port();
        let agg_env = |data: &str| {
            vec![
                ("LISTEN_ADDR", format!("127.0.0.1:{agg_port}")),
                ("DATA_DIR", dir.join(data).display().to_string()),
                ("AGGREGATOR_TOKEN", "bench-token".to_owned()),
            ]
        };
        let aggregator = spawn(&bins.join("log-aggregator"), &agg_env("data-e2e"), &dir.join("aggregator.stderr"));
        let agg = format!("http://127.0.0.1:{agg_port}");
        http.wait_up(&format!("{agg}/health")).await;
        eprintln!("Sidecar into the aggregator...");
        let e2e = throughput(
            &bins,
            dir,
            &log,
            Target {
                name: "e2e",
                url: format!("{agg}/logs"),
                count_url: format!("{agg}/logs/count"),
                key: "total_logs",
            },
            args.lines,
            &http,
        )
        .await;
        drop(aggregator);

        // 3. Latency at a steady rate, through a fresh aggregator and into a sink.
        eprintln!("Latency at {} lines/s for {} s...", args.rate, args.latency_secs);
        let _aggregator = spawn(&bins.join("log-aggregator"), &agg_env("data-latency"), &dir.join("aggregator-latency.stderr"));
        http.wait_up(&format!("{agg}/health")).await;
        let lat_sink_port = free_port();
        let _lat_sink = spawn(
            &bins.join("counting-sink"),
            &[
                ("LISTEN_ADDR", format!("127.0.0.1:{lat_sink_port}")),
                ("SINK_MODE", "count".to_owned()),
                ("SINK_LATENCY_FIELD", "written_us".to_owned()),
            ],
            &dir.join("sink-latency.stderr"),
        );
        let lat_sink = format!("http://127.0.0.1:{lat_sink_port}");
        http.wait_up(&format!("{lat_sink}/health")).await;
        let live = dir.join("live.log");
        fs::write(&live, b"").unwrap();
        let _to_agg = spawn(
            &bins.join("logging-sidecar"),
            &sidecar_env(free_port(), &live, &dir.join("state-lat-agg"), &format!("{agg}/logs"), "latency"),
            &dir.join("sidecar-lat-agg.stderr"),
        );
        let _to_sink = spawn(
            &bins.join("logging-sidecar"),
            &sidecar_env(free_port(), &live, &dir.join("state-lat-sink"), &format!("{lat_sink}/logs"), "latency"),
            &dir.join("sidecar-lat-sink.stderr"),
        );
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        let writer = steady_writer(live.clone(), args.rate, args.latency_secs);
        let total = args.rate * args.latency_secs;
        let mut seen_at: Vec<(u64, u64)> = Vec::new(); // (newest seq queryable, when)
        let deadline = Instant::now() + Duration::from_secs(args.latency_secs + 60);
        let newest = format!("{agg}/logs?service=bench&order=desc&limit=1");
        loop {
            if let Some(page) = http.json(&newest).await {
                if let Some(seq) = page["logs"][0]["seq"].as_u64() {
                    let at = now_us();
                    let newer = match seen_at.last() {
                        None => true,
                        Some((s, _)) => *s < seq,
                    };
                    if newer {
                        seen_at.push((seq, at));
                    }
                    if seq + 1 >= total {
                        break;
                    }
                }
            }
            assert!(Instant::now() < deadline, "the latency run did not finish");
            actix_rt::time::sleep(Duration::from_millis(1)).await;
        }
        let times = writer.join().unwrap();
        let mut lat = Vec::with_capacity(times.len());
        let mut from = 0u64;
        for (seq, at) in &seen_at {
            for s in from..=*seq {
                lat.push(at.saturating_sub(times[s as usize]) as f64 / 1000.0);
            }
            from = seq + 1;
        }
        lat.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99) = (measure::percentile(&lat, 0.50), measure::percentile(&lat, 0.99));
        let sink_lat = http.json(&format!("{lat_sink}/latency")).await.unwrap_or_default();

        let peak = alone.peak_rss_mib.max(e2e.peak_rss_mib);
        println!("logging-sidecar benchmark: {} lines of {} bytes on average", args.lines, bytes / args.lines.max(1));
        println!("{:<44} {:>14}", "figure", "value");
        println!("{:<44} {:>14.0}", "end to end into log-aggregator, lines/s", e2e.lines_per_s);
        println!("{:<44} {:>14.0}", "sidecar alone into a counting sink, lines/s", alone.lines_per_s);
        println!("{:<44} {:>14.1}", "sidecar peak RSS (alone), MiB", alone.peak_rss_mib);
        println!("{:<44} {:>14.1}", "sidecar peak RSS (end to end), MiB", e2e.peak_rss_mib);
        println!("{:<44} {:>14.2}", "sidecar CPU s per million lines (alone)", alone.cpu_s / args.lines as f64 * 1e6);
        println!("{:<44} {:>14.2}", "sidecar CPU s per million lines (e2e)", e2e.cpu_s / args.lines as f64 * 1e6);
        println!("{:<44} {:>14.1}", format!("write-to-queryable p50 at {}/s, ms", args.rate), p50);
        println!("{:<44} {:>14.1}", format!("write-to-queryable p99 at {}/s, ms", args.rate), p99);
        println!("{:<44} {:>14.1}", "write-to-sink p50 (sidecar only), ms", sink_lat["p50_ms"].as_f64().unwrap_or(f64::NAN));
        println!("{:<44} {:>14.1}", "write-to-sink p99 (sidecar only), ms", sink_lat["p99_ms"].as_f64().unwrap_or(f64::NAN));
        let json = serde_json::json!({
            "e2e_lines_per_s": e2e.lines_per_s.round(),
            "alone_lines_per_s": alone.lines_per_s.round(),
            "peak_rss_mib": (peak * 10.0).round() / 10.0,
            "cpu_seconds_per_million": (alone.cpu_s / args.lines as f64 * 1e6 * 100.0).round() / 100.0,
            "e2e_cpu_seconds_per_million": (e2e.cpu_s / args.lines as f64 * 1e6 * 100.0).round() / 100.0,
            "latency_p50_ms": (p50 * 10.0).round() / 10.0,
            "latency_p99_ms": (p99 * 10.0).round() / 10.0,
            "sink_latency_p50_ms": sink_lat["p50_ms"].as_f64().unwrap_or(-1.0),
            "sink_latency_p99_ms": sink_lat["p99_ms"].as_f64().unwrap_or(-1.0),
        });
        println!("BENCH_JSON {json}");
    });
}
