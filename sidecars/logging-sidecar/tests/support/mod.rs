//! A test rig: a temporary log and state directory, the counting sink (or the real
//! aggregator) and the sidecar binary, with helpers that poll for conditions.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared::testkit::{free_port, workspace_bin, Process};

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The line with sequence number `seq`, as a service writes it.
pub fn json_line(seq: u64) -> String {
    format!(
        "{{\"timestamp\":\"2026-01-01T00:00:00Z\",\"service\":\"test-service\",\"level\":\"INFO\",\"message\":\"line {seq} {}\",\"seq\":{seq}}}\n",
        "p".repeat((seq % 50) as usize)
    )
}

pub fn append_lines(path: &Path, seqs: Range<u64>) {
    let mut text = String::new();
    for seq in seqs {
        text.push_str(&json_line(seq));
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The aggregator's token in the tests that use one.
pub const TOKEN: &str = "s3cret-token";

fn spawn_receiver(receiver: &Receiver, port: u16, dir: &Path) -> Process {
    match receiver {
        Receiver::Sink => Process::spawn(
            "sink",
            workspace_bin("counting-sink"),
            &[],
            &[("LISTEN_ADDR", format!("127.0.0.1:{port}"))],
            dir,
        ),
        Receiver::Aggregator => Process::spawn(
            "aggregator",
            workspace_bin("log-aggregator"),
            &[],
            &[
                ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
                ("DATA_DIR", dir.join("data").display().to_string()),
                ("AGGREGATOR_TOKEN", TOKEN.to_owned()),
                // The test lines are dated 2026-01-01: kept whatever their age.
                ("RETENTION_MAX_AGE", "0".to_owned()),
            ],
            dir,
        ),
    }
    .unwrap()
}

/// What receives the records.
pub enum Receiver {
    Sink,
    Aggregator,
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub state: PathBuf,
    pub receiver: Receiver,
    receiver_proc: Process,
    pub receiver_url: String,
    sidecar: Option<Process>,
    sidecar_port: u16,
    client: awc::Client,
}

impl Rig {
    /// A rig around the counting sink.
    pub fn new() -> Rig {
        Rig::with(Receiver::Sink)
    }

    pub fn with(receiver: Receiver) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let proc = spawn_receiver(&receiver, port, dir.path());
        let state = dir.path().join("state");
        let log = dir.path().join("app.log");
        Rig {
            log,
            state,
            receiver,
            receiver_proc: proc,
            receiver_url: format!("http://127.0.0.1:{port}"),
            sidecar: None,
            sidecar_port: 0,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(20))
                .finish(),
            dir,
        }
    }

    /// Starts the sidecar and waits until `/health` says it is ready.
    pub async fn start_sidecar(&mut self, extra: &[(&str, &str)]) {
        self.receiver_proc
            .wait_ready(&format!("{}/health", self.receiver_url), DEADLINE)
            .await
            .unwrap();
        self.sidecar_port = free_port();
        let mut env = vec![
            ("LISTEN_ADDR", format!("127.0.0.1:{}", self.sidecar_port)),
            ("SERVICE_NAME", "test-service".to_owned()),
            ("ENVIRONMENT", "test".to_owned()),
            ("LOG_PATH", self.log.display().to_string()),
            ("STATE_DIR", self.state.display().to_string()),
            ("AGGREGATOR_URL", format!("{}/logs", self.receiver_url)),
            ("RUST_LOG", "info".to_owned()),
        ];
        for (k, v) in extra {
            env.push((k, (*v).to_owned()));
        }
        let mut p = Process::spawn(
            "sidecar",
            workspace_bin("logging-sidecar"),
            &[],
            &env,
            self.dir.path(),
        )
        .unwrap();
        p.wait_ready(
            &format!("http://127.0.0.1:{}/health", self.sidecar_port),
            DEADLINE,
        )
        .await
        .unwrap();
        self.sidecar = Some(p);
    }

    /// SIGKILL of the receiver; it stays down until [`Rig::restart_receiver`].
    pub fn kill_receiver(&mut self) {
        self.receiver_proc.kill();
    }

    pub async fn restart_receiver(&mut self) {
        let port: u16 = self
            .receiver_url
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        self.receiver_proc = spawn_receiver(&self.receiver, port, self.dir.path());
        self.receiver_proc
            .wait_ready(&format!("{}/health", self.receiver_url), DEADLINE)
            .await
            .unwrap();
    }

    /// Polls the sidecar's metrics until `line` appears.
    pub async fn wait_metric(&self, line: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let metrics = self.sidecar_metrics().await;
            if metrics.contains(line) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{line} never appeared:\n{metrics}"
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` to the receiver (SIGSTOP / SIGCONT to freeze and thaw it).
    pub fn signal_receiver(&self, signal: i32) {
        self.receiver_proc.signal(signal);
    }

    pub fn kill_sidecar(&mut self) {
        if let Some(mut p) = self.sidecar.take() {
            p.kill();
        }
    }

    /// SIGTERM, and wait for the drain to finish.
    pub fn stop_sidecar(&mut self) {
        if let Some(mut p) = self.sidecar.take() {
            p.signal(libc::SIGTERM);
            let status = p
                .wait_timeout(DEADLINE)
                .expect("the sidecar stops on SIGTERM");
            assert!(status.success(), "{status}: {}", p.stderr());
        }
    }

    pub fn sidecar_stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("sidecar.stderr")).unwrap_or_default()
    }

    async fn get(&self, url: &str) -> (u16, Vec<u8>) {
        // A client per call: a pooled connection broken by an earlier test step must not
        // fail the next one.
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(20))
            .finish();
        let mut res = client
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let body = res.body().limit(1 << 30).await.unwrap();
        (res.status().as_u16(), body.to_vec())
    }

    pub async fn get_sidecar(&self, path: &str) -> Value {
        let (_, body) = self
            .get(&format!("http://127.0.0.1:{}{path}", self.sidecar_port))
            .await;
        serde_json::from_slice(&body).unwrap()
    }

    pub async fn sidecar_metrics(&self) -> String {
        let (_, body) = self
            .get(&format!("http://127.0.0.1:{}/metrics", self.sidecar_port))
            .await;
        String::from_utf8(body).unwrap()
    }

    pub async fn sink_stats(&self) -> Value {
        match self.receiver {
            Receiver::Sink => {
                let (_, body) = self.get(&format!("{}/stats", self.receiver_url)).await;
                serde_json::from_slice(&body).unwrap()
            }
            Receiver::Aggregator => {
                let (_, body) = self.get(&format!("{}/logs/count", self.receiver_url)).await;
                let count: Value = serde_json::from_slice(&body).unwrap();
                json!({"unique": count["total_logs"]})
            }
        }
    }

    pub async fn sink_control(&self, fail_status: Option<u16>) {
        let res = self
            .client
            .post(format!("{}/control", self.receiver_url))
            .send_json(&json!({"fail_status": fail_status, "stall_ms": 0}))
            .await
            .unwrap();
        assert!(res.status().is_success());
    }

    /// Makes the counting sink refuse (400) any body holding `text`, or stop refusing.
    pub async fn sink_refuse(&mut self, text: Option<&str>) {
        self.receiver_proc
            .wait_ready(&format!("{}/health", self.receiver_url), DEADLINE)
            .await
            .unwrap();
        let res = self
            .client
            .post(format!("{}/control", self.receiver_url))
            .send_json(&json!({"fail_status": null, "stall_ms": 0, "refuse_containing": text}))
            .await
            .unwrap();
        assert!(res.status().is_success());
    }

    /// Every record the receiver holds.
    pub async fn sink_records(&self) -> Vec<Value> {
        match self.receiver {
            Receiver::Sink => {
                let (_, body) = self.get(&format!("{}/records", self.receiver_url)).await;
                body.split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice(l).unwrap())
                    .collect()
            }
            Receiver::Aggregator => {
                let mut out = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let mut url = format!(
                        "{}/logs?service=test-service&limit=1000&order=asc",
                        self.receiver_url
                    );
                    if let Some(c) = &cursor {
                        url.push_str(&format!("&cursor={c}"));
                    }
                    let (status, body) = self.get(&url).await;
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    let page: Value = serde_json::from_slice(&body).unwrap();
                    out.extend(page["logs"].as_array().unwrap().iter().cloned());
                    match page["next_cursor"].as_str() {
                        Some(c) => cursor = Some(c.to_owned()),
                        None => break,
                    }
                }
                out
            }
        }
    }

    /// Polls until the receiver's stat `key` reaches `n`.
    pub async fn wait_stat(&self, key: &str, n: u64) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let stats = self.sink_stats().await;
            if stats[key].as_u64().unwrap_or(0) >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{key} stayed below {n}: {stats}\nsidecar stderr:\n{}",
                self.sidecar_stderr()
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_unique(&self, n: u64) {
        self.wait_stat("unique", n).await;
    }

    /// The receiver holds each of `seqs` exactly once, and nothing else.
    pub async fn assert_exactly_once(&self, seqs: Range<u64>) {
        let records = self.sink_records().await;
        let mut counts: HashMap<u64, u32> = HashMap::new();
        for r in &records {
            let seq = r["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("a record that was not written: {r}"));
            *counts.entry(seq).or_default() += 1;
            assert_eq!(
                r["message"].as_str().unwrap(),
                json_line(seq)
                    .split("\"message\":\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap(),
                "content changed: {r}"
            );
        }
        let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
        assert!(twice.is_empty(), "stored more than once: {twice:?}");
        let missing: Vec<_> = seqs
            .clone()
            .filter(|s| !counts.contains_key(s))
            .take(5)
            .collect();
        assert!(missing.is_empty(), "missing (first few): {missing:?}");
        assert_eq!(records.len() as u64, seqs.end - seqs.start);
    }
}

/// How the numbered lines `seqs` came through in `records`: a record counts for the
/// line whose `seq` it carries, or, when it is a message carrying a refused line's
/// text, for the `seq` inside that text.
#[derive(Debug, Default)]
pub struct Tally {
    pub lost: Vec<u64>,
    pub duplicated: Vec<u64>,
    /// Records that are no numbered line.
    pub others: Vec<Value>,
}

pub fn tally_numbered(records: &[Value], seqs: Range<u64>) -> Tally {
    let mut counts: HashMap<u64, u32> = HashMap::new();
    let mut tally = Tally::default();
    for r in records {
        let seq = r["seq"].as_u64().or_else(|| {
            let text = r["message"].as_str()?;
            let inner: Value = serde_json::from_str(text).ok()?;
            inner["seq"].as_u64()
        });
        match seq {
            Some(seq) => *counts.entry(seq).or_default() += 1,
            None => tally.others.push(r.clone()),
        }
    }
    tally.lost = seqs.filter(|s| !counts.contains_key(s)).collect();
    tally.duplicated = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(s, _)| *s)
        .collect();
    tally
}

/// Asserts 0 lost and 0 duplicated, printing both counts.
pub fn assert_none_lost_or_twice(tally: &Tally, what: &str) {
    println!(
        "{what}: {} lost, {} duplicated, {} other records",
        tally.lost.len(),
        tally.duplicated.len(),
        tally.others.len()
    );
    assert!(
        tally.lost.is_empty() && tally.duplicated.is_empty(),
        "{what}: lost (first few) {:?}, duplicated (first few) {:?}",
        &tally.lost[..tally.lost.len().min(5)],
        &tally.duplicated[..tally.duplicated.len().min(5)]
    );
}

/// Appends raw bytes to `path`.
pub fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}
