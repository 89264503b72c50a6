//! Integration-test support: run a real binary on a free loopback port and wait for it.
//!
//! Tests talk to real servers over HTTP. A [`Process`] is killed when dropped, so a
//! failing test leaves nothing behind; its stderr goes to a file that
//! [`Process::stderr`] returns for assertion messages.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// A child process that is killed when dropped.
pub struct Process {
    name: String,
    child: Child,
    stderr_path: PathBuf,
}

impl Process {
    /// Starts `program` with `envs` added to the environment, stderr to `<log_dir>/<name>.stderr`.
    pub fn spawn(
        name: &str,
        program: impl AsRef<Path>,
        args: &[&str],
        envs: &[(&str, String)],
        log_dir: &Path,
    ) -> std::io::Result<Process> {
        std::fs::create_dir_all(log_dir)?;
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&stderr_path)?;
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        Ok(Process {
            name: name.to_owned(),
            child,
            stderr_path,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What the process has written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends a signal (such as `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we own; a failure only means it already exited.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Polls `url` until it answers 2xx; fails early if the process exits.
    pub async fn wait_ready(&mut self, url: &str, timeout: Duration) -> Result<(), String> {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(2))
            .finish();
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(status) = self.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before {url} answered; stderr:\n{}",
                    self.name,
                    self.stderr()
                ));
            }
            if let Ok(res) = client.get(url).send().await {
                if res.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not answer {url} within {timeout:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                ));
            }
            actix_rt::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The path of a binary of this workspace, built next to the running test.
///
/// `cargo test --workspace` builds every member's binaries before any test runs; a test
/// of one package that needs another package's binary names it here and gets a clear
/// message when it was not built.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

/// When this variable is `1` (CI sets it, through `.ci/run`), a test that needs an
/// external tool fails when the tool is missing, instead of saying that it skips.
pub const REQUIRE_TOOLS: &str = "REQUIRE_TEST_TOOLS";

/// Whether `program --version` runs. When it does not, the test fails if
/// [`REQUIRE_TOOLS`] is `1`, and otherwise says on stdout that it skips what needs it.
pub fn tool_available(program: &str, debian_package: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var(REQUIRE_TOOLS).as_deref() != Ok("1"),
            "{program} is required ({REQUIRE_TOOLS}=1) but not installed: install Debian's package {debian_package} (scripts/test.sh does, as root)"
        );
        println!("skipped: {program} not installed (Debian package {debian_package})");
    }
    found
}

/// Runs `promtool check metrics` on an exposition; `None` when promtool is not installed.
///
/// promtool exits 0 when it is happy, 3 when it only has style complaints (a missing
/// HELP, a counter without `_total`) and 1 on a parse error.
pub fn promtool_check_metrics(exposition: &str) -> Option<std::process::Output> {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(exposition.as_bytes())
        .expect("write the exposition to promtool");
    drop(stdin);
    Some(child.wait_with_output().expect("promtool runs to its end"))
}

/// Fails the test unless promtool accepts the exposition without a complaint; where
/// promtool is not installed, see [`tool_available`].
pub fn assert_promtool_accepts(exposition: &str) {
    if !tool_available("promtool", "prometheus") {
        return;
    }
    let out = promtool_check_metrics(exposition).expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool rejected the metrics:\n{}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `n` requests that each carry a method or a path never seen before (`M17 /flood/17`,
/// `GET /flood/18?n=18`, ...) over keep-alive connections, and returns how many were
/// answered. Blocking: call it from a thread, not from the runtime's.
pub fn flood_distinct_requests(addr: SocketAddr, n: usize) -> std::io::Result<usize> {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    let connect = || -> std::io::Result<BufReader<TcpStream>> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(BufReader::new(stream))
    };
    let mut conn = connect()?;
    let mut answered = 0;
    let mut line = String::new();
    for i in 0..n {
        let request = if i % 2 == 0 {
            format!("M{i} /flood/{i} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
        } else {
            format!("GET /flood/{i}?n={i} HTTP/1.1\r\nHost: test\r\n\r\n")
        };
        if conn.get_mut().write_all(request.as_bytes()).is_err() {
            conn = connect()?;
            conn.get_mut().write_all(request.as_bytes())?;
        }
        // Status line, headers, then a body of Content-Length bytes.
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            conn = connect()?;
            continue;
        }
        let (mut length, mut close) = (0usize, false);
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("connection") && value.trim() == "close" {
                close = true;
            }
        }
        std::io::copy(&mut conn.by_ref().take(length as u64), &mut std::io::sink())?;
        answered += 1;
        if close {
            conn = connect()?;
        }
    }
    Ok(answered)
}

/// Floods a server with 20,000 distinct methods and paths and checks that its
/// `/metrics` grows by at most a few series: labels must come from bounded sets.
pub async fn assert_metrics_stay_bounded(addr: SocketAddr) {
    const REQUESTS: usize = 20_000;
    /// Room for the few new series (`other`/`unmatched` per status, with a histogram).
    const GROWTH_BYTES: usize = 8 * 1024;
    let url = format!("http://{addr}/metrics");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let fetch = || async {
        let mut res = client.get(&url).send().await.expect("GET /metrics");
        assert_eq!(res.status().as_u16(), 200);
        let body = res.body().limit(64 << 20).await.expect("read /metrics");
        String::from_utf8(body.to_vec()).expect("UTF-8 metrics")
    };
    // One flood first, so that every series this kind of traffic can make exists.
    let warm = actix_rt::task::spawn_blocking(move || flood_distinct_requests(addr, 20))
        .await
        .unwrap()
        .expect("warm-up requests");
    assert_eq!(warm, 20);
    let before = fetch().await;
    let answered = actix_rt::task::spawn_blocking(move || flood_distinct_requests(addr, REQUESTS))
        .await
        .unwrap()
        .expect("flood requests");
    assert_eq!(answered, REQUESTS, "every request gets an answer");
    let after = fetch().await;
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(
        after.len() <= before.len() + GROWTH_BYTES,
        "/metrics grew from {} to {} bytes after {REQUESTS} distinct requests:\n{after}",
        before.len(),
        after.len()
    );
    assert!(
        series(&after) <= series(&before) + 40,
        "/metrics went from {} to {} samples:\n{after}",
        series(&before),
        series(&after)
    );
    assert!(
        !after.contains("M19999") && !after.contains("/flood/"),
        "a label was taken from the request:\n{after}"
    );
}

/// xorshift64*: a replayable random sequence for the fault schedules of the tests, from
/// a seed they print so that a failure replays.
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator from `seed` (0 would repeat 0 forever, so it is made odd).
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(seed | 1)
    }

    /// The seed in the variable `var` when it is set (a replay), else one from the clock.
    pub fn seed_from_env(var: &str) -> u64 {
        std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A duration from `lo` to `hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> std::time::Duration {
        std::time::Duration::from_millis(lo + self.below(hi.saturating_sub(lo)))
    }
}
