//! Whole figures for the relabeling hot path and the sidecar's memory.
//!
//! `cargo run --release -p metrics-sidecar --example relabel_bench -- [--quick]`
//!
//! 1. Parse-and-relabel throughput, one core, on expositions of 10,000 and 100,000
//!    samples (the same generator as the criterion bench).
//! 2. The resident memory of a real sidecar process holding a 100,000-sample snapshot:
//!    this program starts itself twice more, once as a target serving that exposition and
//!    once as the sidecar (the binary's own code path), waits until the sidecar serves
//!    every sample, and reads the sidecar's `VmRSS` and `VmHWM`.
//!
//! Prints a table, then `BENCH_JSON {...}` as the last line.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_sidecar::exposition::Dialect;
use metrics_sidecar::relabel::Relabeler;

#[path = "../benches/synthetic.rs"]
mod synthetic;

const LARGE: usize = 100_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--as-target") => return serve_target(&args[1]),
        Some("--as-sidecar") => return metrics_sidecar::server::main_with_args(Vec::new()),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let window = if quick {
        Duration::from_millis(700)
    } else {
        Duration::from_secs(4)
    };

    let (small, _, _) = throughput(10_000, window);
    let (large, body_mib, out_mib) = throughput(LARGE, window);
    let (rss, peak) = match sidecar_memory() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("relabel_bench: memory measurement failed: {e}");
            return ExitCode::FAILURE;
        }
    };

    println!("{:<44} {:>16}", "figure", "value");
    println!(
        "{:<44} {:>16.0}",
        "parse+relabel samples/s, 10k exposition", small
    );
    println!(
        "{:<44} {:>16.0}",
        "parse+relabel samples/s, 100k exposition", large
    );
    println!(
        "{:<44} {:>16.1}",
        "sidecar RSS MiB holding 100k samples", rss
    );
    println!("{:<44} {:>16.1}", "sidecar peak RSS MiB (100k)", peak);
    println!("{:<44} {:>16.1}", "100k exposition MiB, scraped", body_mib);
    println!("{:<44} {:>16.1}", "100k exposition MiB, relabeled", out_mib);
    println!(
        "BENCH_JSON {{\"relabel_samples_per_s_10k\": {small:.0}, \"relabel_samples_per_s_100k\": {large:.0}, \"rss_mib_holding_100k\": {rss:.1}, \"rss_peak_mib_100k\": {peak:.1}}}"
    );
    ExitCode::SUCCESS
}

fn relabeler() -> Relabeler {
    Relabeler::new(
        &[
            ("sidecar", "true"),
            ("environment", "production"),
            ("service", "user-service"),
        ],
        "metrics_sidecar_",
    )
}

/// Samples per second over repeated runs filling `window`, after one warm-up run, and
/// the sizes in MiB of the exposition before and after relabeling.
fn throughput(samples: usize, window: Duration) -> (f64, f64, f64) {
    let body = synthetic::exposition(samples);
    let relabeler = relabeler();
    let mut out = Vec::with_capacity(body.len() * 2);
    let run = |out: &mut Vec<u8>| {
        out.clear();
        let stats = relabeler
            .relabel(body.as_bytes(), Dialect::Text, out)
            .expect("the synthetic exposition is valid");
        assert_eq!(stats.samples, samples as u64);
    };
    run(&mut out);
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < window || runs < 3 {
        run(&mut out);
        runs += 1;
    }
    let rate = (runs * samples as u64) as f64 / start.elapsed().as_secs_f64();
    let mib = |n: usize| n as f64 / (1024.0 * 1024.0);
    (rate, mib(body.len()), mib(out.len()))
}

/// Child mode: serve a `LARGE`-sample exposition on the given port.
fn serve_target(port: &str) -> ExitCode {
    let body = Bytes::from(synthetic::exposition(LARGE));
    let addr = format!("127.0.0.1:{port}");
    let served = actix_rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let body = body.clone();
            App::new().route(
                "/metrics",
                web::get().to(move || {
                    let body = body.clone();
                    async move {
                        HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4")
                            .body(body)
                    }
                }),
            )
        })
        .workers(1)
        .bind(addr)?
        .run()
        .await
    });
    if served.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Kills a child process when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `VmRSS` and `VmHWM` of the sidecar, in MiB, once it serves all `LARGE` samples.
fn sidecar_memory() -> Result<(f64, f64), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let (target_port, sidecar_port) = (free_port(), free_port());
    let _target = Guard(
        Command::new(&me)
            .args(["--as-target", &target_port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    let health = format!("http://127.0.0.1:{sidecar_port}/health");
    let metrics = format!("http://127.0.0.1:{sidecar_port}/metrics");
    let target = format!("http://127.0.0.1:{target_port}/metrics");
    let client = || {
        awc::Client::builder()
            .timeout(Duration::from_secs(5))
            .finish()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // The target first, so that the sidecar's first scrape finds it.
    actix_rt::System::new().block_on(async {
        let client = client();
        while client.get(&target).send().await.is_err() {
            if Instant::now() >= deadline {
                return Err("the target never answered".to_owned());
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    })?;
    let sidecar = Guard(
        Command::new(&me)
            .arg("--as-sidecar")
            .env("LISTEN_ADDR", format!("127.0.0.1:{sidecar_port}"))
            .env("APP_SERVICE_URL", format!("http://127.0.0.1:{target_port}"))
            .env("SERVICE_NAME", "user-service")
            .env("SCRAPE_INTERVAL", "1s")
            .env("SCRAPE_BODY_LIMIT", "64MiB")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    actix_rt::System::new().block_on(async move {
        let client = client();
        loop {
            if let Ok(mut res) = client.get(&health).send().await {
                let body = res.body().await.unwrap_or_default();
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if json["snapshot_samples"] == LARGE as u64 {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err("the sidecar never served the 100k snapshot".to_owned());
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        // Serve it once, as a Prometheus scrape would, before reading the memory.
        let mut res = client
            .get(&metrics)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let served = res
            .body()
            .limit(256 << 20)
            .await
            .map_err(|e| e.to_string())?;
        if served.is_empty() {
            return Err("empty /metrics".to_owned());
        }
        Ok(())
    })?;
    shared::measure::memory_mib(sidecar.0.id())
        .ok_or_else(|| "no VmRSS/VmHWM in /proc status".to_owned())
}
