//! The cost of the sidecars to the services: the same load with and without them.
//!
//! Each run starts a fresh stack on free loopback ports (fresh, so order-service's
//! book, which grows with every order, is the same size in both cases), drives it with
//! `loadgen` at a fixed rate, and reads the latency the clients saw. "With" adds the log
//! aggregator, a logging sidecar tailing each service's log and a metrics sidecar
//! scraping each service every second (ten times the default interval, to make its
//! cost visible). Runs alternate without/with so a change in the machine's other load
//! hits both sides alike. The with-run also measures how long after the load the
//! aggregator holds every line the services wrote.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::children::{interrupted, run_captured, Child};
use crate::figures::{known, Known, Section};
use shared::measure::cpu_seconds;

pub const KNOWN: &[Known] = &[
    known(
        "rate_per_s",
        "load applied (scripts/load.sh mix)",
        "req/s",
        true,
    ),
    known(
        "without_p50_ms",
        "service latency p50, no sidecars",
        "ms",
        false,
    ),
    known(
        "without_p99_ms",
        "service latency p99, no sidecars",
        "ms",
        false,
    ),
    known(
        "with_p50_ms",
        "service latency p50, with sidecars",
        "ms",
        false,
    ),
    known(
        "with_p99_ms",
        "service latency p99, with sidecars",
        "ms",
        false,
    ),
    known(
        "added_p50_ms",
        "latency added by the sidecars, p50",
        "ms",
        false,
    ),
    known(
        "added_p99_ms",
        "latency added by the sidecars, p99",
        "ms",
        false,
    ),
    known(
        "services_cpu_percent_without",
        "services' CPU, no sidecars",
        "% of a core",
        false,
    ),
    known(
        "services_cpu_percent_with",
        "services' CPU, with sidecars",
        "% of a core",
        false,
    ),
    known(
        "sidecars_cpu_percent",
        "sidecars' and aggregator's CPU under the load",
        "% of a core",
        false,
    ),
    known(
        "delivery_catch_up_s",
        "time after the load until every line is stored",
        "s",
        false,
    ),
];

/// How long a stack has to come up, and to stop.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long the aggregator has, after the load, to hold every line.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
const SCRAPE_INTERVAL: &str = "1s";
const SERVICES: [&str; 3] = ["user-service", "product-service", "order-service"];

/// What the load is and what is there to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rate: u64,
    pub duration: Duration,
    pub runs: usize,
    pub release_dir: PathBuf,
    pub aggregator: bool,
    pub logging_sidecar: bool,
    pub metrics_sidecar: bool,
}

impl Plan {
    /// The aggregator alone is no sidecar: it runs only to receive the logging sidecars'.
    fn any_sidecar(&self) -> bool {
        self.logging_sidecar || self.metrics_sidecar
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.release_dir.join(name)
    }
}

/// One run's figures.
#[derive(Debug, Default)]
struct Measured {
    p50_ms: f64,
    p99_ms: f64,
    rate: f64,
    services_cpu_percent: f64,
    sidecars_cpu_percent: Option<f64>,
    catch_up_s: Option<f64>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A blocking `GET` on loopback: the status and the body, or `None`.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The processes of one stack; all stopped when dropped.
struct Stack {
    services: Vec<Child>,
    sidecars: Vec<Child>,
    ports: [u16; 3],
    aggregator_port: Option<u16>,
    logs: Vec<PathBuf>,
}

impl Stack {
    fn start(plan: &Plan, with_sidecars: bool, dir: &Path) -> anyhow::Result<Stack> {
        let ports = [free_port()?, free_port()?, free_port()?];
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let mut stack = Stack {
            services: Vec::new(),
            sidecars: Vec::new(),
            ports,
            aggregator_port: None,
            logs: Vec::new(),
        };
        let mut waits = Vec::new();
        for (i, svc) in SERVICES.iter().enumerate() {
            let log = dir.join(svc).join("app.log");
            let envs = [
                ("LISTEN_ADDR", format!("127.0.0.1:{}", ports[i])),
                ("LOG_FILE", log.display().to_string()),
                ("ENVIRONMENT", "bench".to_owned()),
                ("USER_SERVICE_URL", url(ports[0])),
                ("PRODUCT_SERVICE_URL", url(ports[1])),
                ("RUST_LOG", "info".to_owned()),
            ];
            stack
                .services
                .push(Child::spawn(svc, &plan.bin(svc), &[], &envs, dir, None)?);
            stack.logs.push(log);
            waits.push((svc.to_string(), ports[i]));
        }
        if with_sidecars {
            if plan.aggregator && plan.logging_sidecar {
                let port = free_port()?;
                let envs = [
                    ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
                    ("DATA_DIR", dir.join("data").display().to_string()),
                    ("RUST_LOG", "warn".to_owned()),
                ];
                let bin = plan.bin("log-aggregator");
                stack
                    .sidecars
                    .push(Child::spawn("log-aggregator", &bin, &[], &envs, dir, None)?);
                stack.aggregator_port = Some(port);
                waits.push(("log-aggregator".to_owned(), port));
            }
            for (i, svc) in SERVICES.iter().enumerate() {
                if let (true, Some(agg)) = (plan.logging_sidecar, stack.aggregator_port) {
                    let port = free_port()?;
                    let name = format!("{svc}-logging-sidecar");
                    let envs = [
                        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
                        ("SERVICE_NAME", svc.to_string()),
                        ("LOG_PATH", stack.logs[i].display().to_string()),
                        ("STATE_DIR", dir.join(&name).display().to_string()),
                        ("AGGREGATOR_URL", format!("{}/logs", url(agg))),
                        ("ENVIRONMENT", "bench".to_owned()),
                        ("RUST_LOG", "warn".to_owned()),
                    ];
                    let bin = plan.bin("logging-sidecar");
                    stack
                        .sidecars
                        .push(Child::spawn(&name, &bin, &[], &envs, dir, None)?);
                    waits.push((name, port));
                }
                if plan.metrics_sidecar {
                    let port = free_port()?;
                    let name = format!("{svc}-metrics-sidecar");
                    let envs = [
                        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
                        ("SERVICE_NAME", svc.to_string()),
                        ("APP_SERVICE_URL", url(ports[i])),
                        ("ENVIRONMENT", "bench".to_owned()),
                        ("SCRAPE_INTERVAL", SCRAPE_INTERVAL.to_owned()),
                        ("RUST_LOG", "warn".to_owned()),
                    ];
                    let bin = plan.bin("metrics-sidecar");
                    stack
                        .sidecars
                        .push(Child::spawn(&name, &bin, &[], &envs, dir, None)?);
                    waits.push((name, port));
                }
            }
        }
        stack.wait_ready(&waits, dir)?;
        Ok(stack)
    }

    fn wait_ready(&mut self, waits: &[(String, u16)], dir: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for (name, port) in waits {
            loop {
                if interrupted() {
                    bail!("interrupted");
                }
                let ok = matches!(
                    http_get(*port, "/health", Duration::from_secs(1)),
                    Some((200, _))
                );
                if ok {
                    break;
                }
                let dead = self
                    .services
                    .iter_mut()
                    .chain(self.sidecars.iter_mut())
                    .find_map(|c| c.exited().map(|s| (c.name.clone(), s)));
                if let Some((who, status)) = dead {
                    let log = std::fs::read_to_string(dir.join(format!("{who}.stderr")))
                        .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    bail!(
                        "{who} exited ({status}) during start-up: {}",
                        tail.join(" | ")
                    );
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{name} did not answer GET /health on port {port} within {READY_TIMEOUT:?}"
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn cpu(children: &[Child]) -> f64 {
        children.iter().filter_map(|c| cpu_seconds(c.pid())).sum()
    }

    /// Lines in the services' log files now.
    fn lines_written(&self) -> u64 {
        self.logs
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| bytecount(&b))
            .sum()
    }

    fn stored(&self) -> Option<u64> {
        let (status, body) = http_get(self.aggregator_port?, "/health", Duration::from_secs(2))?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200).then(|| v["logs_stored"].as_u64()).flatten()
    }

    fn stop(mut self) {
        // Sidecars first, so none of them sees its service vanish.
        for c in self.sidecars.iter_mut().chain(self.services.iter_mut()) {
            c.stop(STOP_GRACE);
        }
    }
}

fn bytecount(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// One load run against a fresh stack.
fn measure(
    plan: &Plan,
    with_sidecars: bool,
    scratch: &Path,
    run: usize,
) -> anyhow::Result<Measured> {
    let dir = tempfile::Builder::new()
        .prefix(if with_sidecars { "with-" } else { "without-" })
        .tempdir_in(scratch)?;
    let stack = Stack::start(plan, with_sidecars, dir.path())?;
    let (svc0, side0) = (Stack::cpu(&stack.services), Stack::cpu(&stack.sidecars));
    let started = Instant::now();
    let urls: Vec<String> = stack
        .ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let duration = format!("{}ms", plan.duration.as_millis());
    let rate = plan.rate.to_string();
    let args = [
        "--user-url",
        &urls[0],
        "--product-url",
        &urls[1],
        "--order-url",
        &urls[2],
        "--rate",
        &rate,
        "--duration",
        &duration,
        "--concurrency",
        "64",
        "--json",
        "--quiet",
    ];
    let loadgen = plan.bin("loadgen").display().to_string();
    let name = format!(
        "loadgen-{}-{run}",
        if with_sidecars { "with" } else { "without" }
    );
    let result = run_captured(
        &loadgen,
        &args,
        plan.duration + READY_TIMEOUT,
        dir.path(),
        &name,
    )?;
    let elapsed = started.elapsed().as_secs_f64();
    let (svc1, side1) = (Stack::cpu(&stack.services), Stack::cpu(&stack.sidecars));
    let (status, stdout, stderr) = result.context("loadgen did not finish")?;
    if !status.success() {
        bail!("loadgen failed ({status}): {}", stderr.trim());
    }
    let summary: Value = serde_json::from_str(stdout.trim()).context("loadgen's JSON")?;
    let errors = summary["errors"].as_u64().unwrap_or(0);
    if errors > 0 {
        eprintln!(
            "benchrun: warning: {errors} errors during the load ({}); see {}",
            summary["errors_by_kind"],
            dir.path().display()
        );
    }
    let mut m = Measured {
        p50_ms: summary["p50_ms"].as_f64().context("no p50_ms")?,
        p99_ms: summary["p99_ms"].as_f64().context("no p99_ms")?,
        rate: summary["achieved_rate"].as_f64().unwrap_or(0.0),
        services_cpu_percent: (svc1 - svc0) / elapsed * 100.0,
        ..Measured::default()
    };
    if with_sidecars {
        m.sidecars_cpu_percent = Some((side1 - side0) / elapsed * 100.0);
        if stack.aggregator_port.is_some() && plan.logging_sidecar {
            let load_end = Instant::now();
            let written = stack.lines_written();
            let deadline = load_end + CATCH_UP_TIMEOUT;
            loop {
                let stored = stack.stored().unwrap_or(0);
                if stored >= written {
                    m.catch_up_s = Some(load_end.elapsed().as_secs_f64());
                    break;
                }
                if Instant::now() >= deadline || interrupted() {
                    eprintln!(
                        "benchrun: warning: the aggregator holds {stored} of {written} lines {} s after the load.",
                        CATCH_UP_TIMEOUT.as_secs()
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    stack.stop();
    Ok(m)
}

/// Runs the with/without pairs and gathers the section.
pub fn run(plan: &Plan, scratch: &Path) -> Section {
    let source = format!(
        "loadgen at {} req/s for {:.0} s against fresh services, {} pair(s)",
        plan.rate,
        plan.duration.as_secs_f64(),
        plan.runs
    );
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut push = |k: &str, v: f64| values.entry(k.to_owned()).or_default().push(v);
    let mut failure = SERVICES
        .iter()
        .chain(&["loadgen"])
        .find(|b| !plan.bin(b).is_file())
        .map(|b| {
            format!(
                "{} is not built: run scripts/bench.sh, which builds the workspace first",
                plan.bin(b).display()
            )
        });
    let runs = if failure.is_some() { 0 } else { plan.runs };
    for i in 0..runs {
        eprintln!(
            "benchrun: Cost of the sidecars, pair {}/{}...",
            i + 1,
            plan.runs
        );
        let without = match measure(plan, false, scratch, i) {
            Ok(m) => m,
            Err(e) => {
                failure = Some(format!("{e:#}"));
                break;
            }
        };
        push("rate_per_s", without.rate);
        push("without_p50_ms", without.p50_ms);
        push("without_p99_ms", without.p99_ms);
        push("services_cpu_percent_without", without.services_cpu_percent);
        if !plan.any_sidecar() {
            continue;
        }
        let with = match measure(plan, true, scratch, i) {
            Ok(m) => m,
            Err(e) => {
                failure = Some(format!("with sidecars: {e:#}"));
                break;
            }
        };
        push("with_p50_ms", with.p50_ms);
        push("with_p99_ms", with.p99_ms);
        push("added_p50_ms", with.p50_ms - without.p50_ms);
        push("added_p99_ms", with.p99_ms - without.p99_ms);
        push("services_cpu_percent_with", with.services_cpu_percent);
        if let Some(c) = with.sidecars_cpu_percent {
            push("sidecars_cpu_percent", c);
        }
        if let Some(c) = with.catch_up_s {
            push("delivery_catch_up_s", c);
        }
    }
    let mut missing = Vec::new();
    for (present, name) in [
        (plan.aggregator, "log-aggregator"),
        (plan.logging_sidecar, "logging-sidecar"),
        (plan.metrics_sidecar, "metrics-sidecar"),
    ] {
        if !present {
            missing.push(name);
        }
    }
    let title = if missing.is_empty() {
        "Cost of the sidecars to the services".to_owned()
    } else {
        format!(
            "Cost of the sidecars to the services (without {}: not in this workspace yet)",
            missing.join(", ")
        )
    };
    if let Some(e) = &failure {
        eprintln!("benchrun: Cost of the sidecars failed: {e}");
    }
    Section {
        id: "cost",
        title,
        source,
        known: KNOWN,
        values: match failure {
            Some(e) if values.is_empty() => Err(e),
            _ => Ok(values),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted() {
        assert_eq!(bytecount(b"a\nb\n\nc"), 3);
    }

    /// The baseline half against the real services and loadgen (the debug builds that
    /// `cargo test --workspace` makes before running tests).
    #[test]
    fn the_baseline_is_measured_against_real_services() {
        let bin_dir = shared::testkit::workspace_bin("user-service")
            .parent()
            .unwrap()
            .to_path_buf();
        shared::testkit::workspace_bin("loadgen");
        let plan = Plan {
            rate: 300,
            duration: Duration::from_secs(1),
            runs: 1,
            release_dir: bin_dir,
            aggregator: false,
            logging_sidecar: false,
            metrics_sidecar: false,
        };
        let scratch = tempfile::tempdir().unwrap();
        let section = run(&plan, scratch.path());
        let values = section.values.unwrap();
        assert!(values["without_p50_ms"][0] > 0.0, "{values:?}");
        assert!(values["without_p99_ms"][0] >= values["without_p50_ms"][0]);
        assert!(values["rate_per_s"][0] > 0.0, "{values:?}");
        assert!(!values.contains_key("with_p50_ms"), "no sidecars to run");
        assert!(section.title.contains("not in this workspace yet"));
        // Every stack was stopped and its directory removed.
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_closed_port_answers_nothing() {
        let port = free_port().unwrap();
        assert_eq!(http_get(port, "/health", Duration::from_millis(200)), None);
    }
}
