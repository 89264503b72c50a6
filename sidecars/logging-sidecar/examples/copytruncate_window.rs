//! The copytruncate window, measured: what an application writes between logrotate's
//! copy and its truncate is in neither file, and is lost unless the sidecar read it from
//! the original in that moment.
//!
//! `cargo run --release -p logging-sidecar --example copytruncate_window -- [--sizes 1,10,100] [--rates 1000,10000,50000] [--runs 3] [--rotator builtin|logrotate|both] [--sidecar live|stalled|both]`
//!
//! Each run: `app.log` is prefilled with `size` MB of filler lines (64 KiB each, cut by
//! the sidecar at `MAX_LINE_BYTES=1024` so that the sink holds little), a release sidecar
//! follows it into `counting-sink` (record mode) until it caught up; then a writer
//! appends numbered lines (`O_APPEND`, as copytruncate requires) at a steady rate in 1 ms
//! ticks, and after 500ms the file is rotated by copytruncate:
//!
//! - `builtin`: what logrotate 3.21 does, timed from inside: copy with 64 KiB reads into
//!   `app.log.1` until end of file, fsync the copy, then truncate `app.log` to 0. The
//!   window (`gap_ms`) is from the read that met the end of file to the truncate's return:
//!   mostly the fsync of the copy.
//! - `logrotate`: `logrotate -f` with a `copytruncate` configuration (Debian's
//!   logrotate must be installed), timed as a whole process.
//!
//! The sidecar either keeps up (`live`: it reads the original as it grows, so it may
//! read the lines of the window before the truncate) or is `stalled`: the sink answers
//! 503 from before the writer starts until 1s after the rotation, so the sidecar stops
//! reading and every line of the window is beyond its reach (the backlog written before
//! the copy is in the copy, and is followed from there).
//!
//! The writer runs on for 1.5s (the sink recovers after 1s of it), then stops; the run ends once the sink has held the same
//! count for 3s. From the files, the lines *at risk* are those in neither the copy nor the
//! truncated file (the window, in lines, and in ms from the writer's clock); *lost* are
//! numbered lines that never reached the sink. A line lost outside the window would be a
//! bug and is reported as such. `resent` counts lines the sink got twice under the same
//! `event_id` (read from the original, then again from the copy: the aggregator stores
//! them once). Prints a table, one row per size, rate and rotator: the
//! medians over the runs, and the largest loss.

mod support;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::testkit::free_port;
use support::spawn;

const MB: u64 = 1_000_000;
const FILLER_LINE: usize = 64 << 10;

#[derive(Clone, Copy, PartialEq)]
enum Rotator {
    Builtin,
    Logrotate,
}

impl Rotator {
    fn name(self) -> &'static str {
        match self {
            Rotator::Builtin => "builtin",
            Rotator::Logrotate => "logrotate",
        }
    }
}

struct Args {
    sizes_mb: Vec<u64>,
    rates: Vec<u64>,
    runs: usize,
    rotators: Vec<Rotator>,
    /// Whether the sink stalls the sidecar around the rotation.
    stalls: Vec<bool>,
}

fn list(v: Option<String>, what: &str) -> Vec<u64> {
    v.unwrap_or_default()
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{what}: a list like 1,10,100"))
        })
        .collect()
}

fn parse_args() -> Args {
    let mut args = Args {
        sizes_mb: vec![1, 10, 100],
        rates: vec![1_000, 10_000, 50_000],
        runs: 3,
        rotators: vec![Rotator::Builtin, Rotator::Logrotate],
        stalls: vec![false, true],
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sizes" => args.sizes_mb = list(it.next(), "--sizes"),
            "--rates" => args.rates = list(it.next(), "--rates"),
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--rotator" => {
                args.rotators = match it.next().as_deref() {
                    Some("builtin") => vec![Rotator::Builtin],
                    Some("logrotate") => vec![Rotator::Logrotate],
                    Some("both") => vec![Rotator::Builtin, Rotator::Logrotate],
                    _ => panic!("--rotator builtin|logrotate|both"),
                }
            }
            "--sidecar" => {
                args.stalls = match it.next().as_deref() {
                    Some("live") => vec![false],
                    Some("stalled") => vec![true],
                    Some("both") => vec![false, true],
                    _ => panic!("--sidecar live|stalled|both"),
                }
            }
            other => {
                eprintln!(
                    "unknown argument {other}; use --sizes, --rates, --runs, --rotator, --sidecar"
                );
                std::process::exit(2);
            }
        }
    }
    args
}

/// A plain HTTP/1.0 GET: the body, or `None` while the server is not up.
fn get(port: u16, path: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let at = memchr::memmem::find(&buf, b"\r\n\r\n")?;
    buf.starts_with(b"HTTP/1.1 200")
        .then(|| buf[at + 4..].to_vec())
        .or_else(|| {
            buf.starts_with(b"HTTP/1.0 200")
                .then(|| buf[at + 4..].to_vec())
        })
}

/// Makes the sink answer 503 (`Some`) or 200 (`None`) from now on.
fn sink_fail(port: u16, status: Option<u16>) {
    let body = serde_json::json!({ "fail_status": status }).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the sink");
    write!(
        s,
        "POST /control HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200"));
}

fn sink_unique(port: u16) -> Option<u64> {
    let stats: Value = serde_json::from_slice(&get(port, "/stats")?).ok()?;
    stats["unique"].as_u64()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The `"seq":N` of a line, if it has one.
fn seq_of(line: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(line, b"\"seq\":")? + 6;
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// The numbered lines a file holds, in order.
fn seqs_in(path: &Path) -> Vec<u64> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    BufReader::new(f)
        .split(b'\n')
        .map_while(Result::ok)
        .filter_map(|l| seq_of(&l))
        .collect()
}

/// Appends numbered lines at `rate` per second in 1 ms ticks until `stop`; returns the
/// write time of each line (ms since `epoch`).
fn writer(
    log: PathBuf,
    rate: u64,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<f64>> {
    thread::spawn(move || {
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        let start = Instant::now();
        let mut times = Vec::new();
        let mut seq = 0u64;
        let mut text = String::new();
        while !stop.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            text.clear();
            while seq < due {
                text.push_str(&format!(
                    "{{\"level\":\"INFO\",\"message\":\"numbered line\",\"seq\":{seq}}}\n"
                ));
                seq += 1;
            }
            if !text.is_empty() {
                let at = epoch.elapsed().as_secs_f64() * 1000.0;
                f.write_all(text.as_bytes()).unwrap();
                times.resize(seq as usize, at);
            }
            thread::sleep(Duration::from_millis(1));
        }
        times
    })
}

/// logrotate's copytruncate (copy, fsync the copy, truncate), done here so that its
/// window can be timed from inside:
/// returns (start of the copy, end of file met, truncate returned), ms since `epoch`.
fn builtin_copytruncate(log: &Path, copy: &Path, epoch: Instant) -> (f64, f64, f64) {
    let ms = || epoch.elapsed().as_secs_f64() * 1000.0;
    let began = ms();
    let mut src = File::open(log).unwrap();
    let mut dst = File::create(copy).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = src.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n]).unwrap();
    }
    let eof = ms();
    dst.sync_all().unwrap();
    OpenOptions::new()
        .write(true)
        .open(log)
        .unwrap()
        .set_len(0)
        .unwrap();
    (began, eof, ms())
}

/// `logrotate -f` with a copytruncate configuration: (start, end) of the process, ms.
fn logrotate_copytruncate(dir: &Path, log: &Path, epoch: Instant) -> (f64, f64) {
    let conf = dir.join("logrotate.conf");
    fs::write(
        &conf,
        format!(
            "\"{}\" {{\n    copytruncate\n    rotate 3\n    nocompress\n    missingok\n}}\n",
            log.display()
        ),
    )
    .unwrap();
    let began = epoch.elapsed().as_secs_f64() * 1000.0;
    let status = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(dir.join("logrotate.state"))
        .arg(&conf)
        .status()
        .expect("logrotate is not installed (apt-get install logrotate)");
    assert!(status.success(), "logrotate failed: {status}");
    (began, epoch.elapsed().as_secs_f64() * 1000.0)
}

struct Outcome {
    /// Time the rotation took: the copy and the truncate (builtin), the process (logrotate).
    rotate_ms: f64,
    /// From the end of file met to the truncate (builtin only).
    gap_ms: Option<f64>,
    at_risk: u64,
    /// From the write of the first line at risk to the write of the first line after.
    at_risk_ms: f64,
    written: u64,
    lost: u64,
    lost_outside: u64,
    duplicates: u64,
}

fn run_once(bins: &Path, size_mb: u64, rate: u64, rotator: Rotator, stall: bool) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let log = dir.join("app.log");
    let copy = dir.join("app.log.1");
    let filler_lines = (size_mb * MB).div_ceil(FILLER_LINE as u64);
    {
        let mut f = File::create(&log).unwrap();
        let mut line = format!("{{\"filler\":\"{}\"}}", "f".repeat(FILLER_LINE - 15)).into_bytes();
        line.push(b'\n');
        for _ in 0..filler_lines {
            f.write_all(&line).unwrap();
        }
    }
    let sink_port = free_port();
    let _sink = spawn(
        &bins.join("counting-sink"),
        &[("LISTEN_ADDR", format!("127.0.0.1:{sink_port}"))],
        &dir.join("sink.stderr"),
    );
    wait_until("the sink answering", Duration::from_secs(30), || {
        get(sink_port, "/health").is_some()
    });
    let _sidecar = spawn(
        &bins.join("logging-sidecar"),
        &[
            ("LISTEN_ADDR", format!("127.0.0.1:{}", free_port())),
            ("LOG_PATH", log.display().to_string()),
            ("STATE_DIR", dir.join("state").display().to_string()),
            (
                "AGGREGATOR_URL",
                format!("http://127.0.0.1:{sink_port}/logs"),
            ),
            ("MAX_LINE_BYTES", "1024".to_owned()),
        ],
        &dir.join("sidecar.stderr"),
    );
    wait_until(
        "the sidecar reading the prefilled file",
        Duration::from_secs(120),
        || sink_unique(sink_port) == Some(filler_lines),
    );

    if stall {
        sink_fail(sink_port, Some(503));
    }
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(log.clone(), rate, epoch, stop.clone());
    thread::sleep(Duration::from_millis(500));
    let (rotate_ms, gap_ms) = match rotator {
        Rotator::Builtin => {
            let (began, eof, done) = builtin_copytruncate(&log, &copy, epoch);
            (done - began, Some(done - eof))
        }
        Rotator::Logrotate => {
            let (began, done) = logrotate_copytruncate(dir, &log, epoch);
            (done - began, None)
        }
    };
    thread::sleep(Duration::from_millis(1000));
    if stall {
        sink_fail(sink_port, None);
    }
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let times = w.join().unwrap();
    let written = times.len() as u64;

    // Settled: the same count for 3s (longer than ROTATE_WAIT and an acknowledgement).
    let mut last = (0, Instant::now());
    wait_until("the sink settling", Duration::from_secs(120), || {
        let now = sink_unique(sink_port).unwrap_or(0);
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() >= Duration::from_secs(3)
    });
    let body = get(sink_port, "/records").expect("the sink's records");
    let stats: Value = serde_json::from_slice(&get(sink_port, "/stats").unwrap()).unwrap();
    let mut seen = vec![false; written as usize];
    for line in body.split(|b| *b == b'\n') {
        if let Some(s) = seq_of(line) {
            if let Some(slot) = seen.get_mut(s as usize) {
                *slot = true;
            }
        }
    }
    // The window in lines: after the copy's last line, before the truncated file's first.
    let in_copy = seqs_in(&copy).last().copied();
    let first_after = seqs_in(&log).first().copied().unwrap_or(written);
    let risk_from = in_copy.map_or(0, |s| s + 1);
    let at_risk = first_after.saturating_sub(risk_from);
    let at_risk_ms = if at_risk > 0 {
        let end = times.get(first_after as usize).copied().unwrap_or(f64::NAN);
        end - times[risk_from as usize]
    } else {
        0.0
    };
    let mut lost = 0;
    let mut lost_outside = 0;
    for (s, got) in seen.iter().enumerate() {
        if !got {
            lost += 1;
            if !(risk_from..first_after).contains(&(s as u64)) {
                lost_outside += 1;
            }
        }
    }
    Outcome {
        rotate_ms,
        gap_ms,
        at_risk,
        at_risk_ms,
        written,
        lost,
        lost_outside,
        duplicates: stats["duplicates"].as_u64().unwrap_or(0),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    let args = parse_args();
    let exe = std::env::current_exe().unwrap();
    let bins = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    if let Ok(cargo) = std::env::var("CARGO") {
        let ok = Command::new(cargo)
            .args(["build", "--release", "-p", "logging-sidecar", "--bins"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "building the release binaries failed");
    }
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "copytruncate window: {} run(s) each, load {}",
        args.runs,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<10} {:<8} {:>7} {:>9} {:>11} {:>9} {:>8} {:>11} {:>8} {:>9} {:>9} {:>6}",
        "rotator",
        "sidecar",
        "size_MB",
        "lines/s",
        "rotate_ms",
        "gap_ms",
        "at_risk",
        "at_risk_ms",
        "lost",
        "lost_max",
        "outside",
        "resent"
    );
    for &rotator in &args.rotators {
        for &stall in &args.stalls {
            for &size in &args.sizes_mb {
                for &rate in &args.rates {
                    row(&bins, &args, rotator, stall, size, rate);
                }
            }
        }
    }
}

fn row(bins: &Path, args: &Args, rotator: Rotator, stall: bool, size: u64, rate: u64) {
    let outs: Vec<Outcome> = (0..args.runs)
        .map(|_| run_once(bins, size, rate, rotator, stall))
        .collect();
    let med = |f: &dyn Fn(&Outcome) -> f64| median(outs.iter().map(f).collect());
    let gap = if rotator == Rotator::Builtin {
        format!("{:.2}", med(&|o| o.gap_ms.unwrap_or(f64::NAN)))
    } else {
        "-".to_owned()
    };
    println!(
        "{:<10} {:<8} {:>7} {:>9} {:>11.1} {:>9} {:>8.0} {:>11.2} {:>8.0} {:>9} {:>9} {:>6}",
        rotator.name(),
        if stall { "stalled" } else { "live" },
        size,
        rate,
        med(&|o| o.rotate_ms),
        gap,
        med(&|o| o.at_risk as f64),
        med(&|o| o.at_risk_ms),
        med(&|o| o.lost as f64),
        outs.iter().map(|o| o.lost).max().unwrap_or(0),
        outs.iter().map(|o| o.lost_outside).sum::<u64>(),
        outs.iter().map(|o| o.duplicates).sum::<u64>(),
    );
    let written: u64 = outs.iter().map(|o| o.written).sum();
    eprintln!("  ({written} numbered lines written over the runs)");
}
