//! A private ClickHouse server for a test: its own directory, config and free ports,
//! killed when dropped; and the aggregator settings that point at it.
//!
//! The server is Debian's `clickhouse-server` (scripts/test.sh installs it). When it is
//! missing, a test fails if `REQUIRE_TEST_TOOLS=1` (as in CI), and otherwise says on
//! stdout that it skips.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shared::testkit::{free_port, Process, REQUIRE_TOOLS};

/// The server's program.
pub const SERVER: &str = "clickhouse-server";

/// Where `clickhouse-server` is: on the `PATH`, or in `/usr/sbin` where Debian puts it
/// (not on a normal user's `PATH`). 18.16 has no `--version` to run.
pub fn server_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(SERVER))
        .find(|p| p.is_file())
}

/// Whether `clickhouse-server` is installed; see the module doc for when it is not.
pub fn available() -> bool {
    let found = server_path().is_some();
    if !found {
        assert!(
            std::env::var(REQUIRE_TOOLS).as_deref() != Ok("1"),
            "{SERVER} is required ({REQUIRE_TOOLS}=1) but not installed: install Debian's package clickhouse-server (scripts/test.sh does, as root)"
        );
        println!("skipped: {SERVER} not installed (Debian package clickhouse-server)");
    }
    found
}

pub struct ClickHouse {
    process: Option<Process>,
    dir: PathBuf,
    pub http_port: u16,
}

impl ClickHouse {
    /// Starts a server with its data in `dir` and waits until it answers.
    pub async fn start(dir: &Path) -> ClickHouse {
        let http_port = free_port();
        let tcp_port = free_port();
        let d = dir.display();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("config.xml"),
            format!(
                "<yandex>
    <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog></logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
</yandex>
"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("users.xml"),
            "<yandex>
    <profiles><default></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
",
        )
        .unwrap();
        let mut ch = ClickHouse {
            process: None,
            dir: dir.to_owned(),
            http_port,
        };
        ch.restart().await;
        ch
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The aggregator settings for a table in `database`.
    pub fn env(&self, database: &str) -> Vec<(&'static str, String)> {
        vec![
            ("STORE", "clickhouse".to_owned()),
            ("CLICKHOUSE_URL", self.url()),
            ("CLICKHOUSE_DATABASE", database.to_owned()),
        ]
    }

    /// SIGKILL: the server stops at once, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a server that holds its connections open
    /// and answers nothing, as a hung or swapped-out one does.
    pub fn pause(&self, paused: bool) {
        let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        self.process
            .as_ref()
            .expect("server running")
            .signal(signal);
    }

    /// Starts the server (again) on the same ports and data, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let config = format!("--config-file={}/config.xml", self.dir.display());
        let program = server_path().expect("clickhouse-server is installed");
        let mut process = Process::spawn(SERVER, &program, &[&config], &[], &self.dir.join("logs"))
            .expect("spawn clickhouse-server");
        let url = format!("{}/", self.url());
        let deadline = Instant::now() + Duration::from_secs(60);
        // The port may still be held for a moment after a kill: a server that could not
        // listen exits, and is started again.
        loop {
            match process.wait_ready(&url, Duration::from_secs(30)).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline && process.try_wait().is_some() => {
                    println!("clickhouse-server did not start, again: {e}");
                    actix_rt::time::sleep(Duration::from_millis(500)).await;
                    process =
                        Process::spawn(SERVER, &program, &[&config], &[], &self.dir.join("logs"))
                            .expect("spawn clickhouse-server");
                }
                Err(e) => panic!("{e}"),
            }
        }
        self.process = Some(process);
    }

    /// Runs `sql`; the answer's text.
    pub async fn sql(&self, sql: &str) -> String {
        let mut res = super::client()
            .post(format!("{}/", self.url()))
            .send_body(sql.to_owned())
            .await
            .expect("ClickHouse answered");
        let body = res.body().limit(64 << 20).await.expect("body");
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(res.status().is_success(), "{sql}: {text}");
        text
    }
}

/// `(name, value)` pairs as the aggregator's start takes them.
pub fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// POSTs an NDJSON body; the status and answer, or why there was none (refused
/// connection, timeout). Never panics: the fault tests expect failures.
pub async fn try_post(url: &str, body: &str) -> Result<(u16, serde_json::Value), String> {
    let mut res = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
        .post(url)
        .insert_header(("Content-Type", "application/x-ndjson"))
        .send_body(body.to_owned())
        .await
        .map_err(|e| e.to_string())?;
    let bytes = res.body().limit(1 << 20).await.map_err(|e| e.to_string())?;
    Ok((
        res.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

/// What delivering one batch took.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivery {
    pub attempts: u32,
    pub unavailable: u32,
    pub accepted: u64,
    pub duplicates: u64,
}

/// Sends `body` as a sidecar does, until an aggregator accepts it: first through
/// `bases[first]`, and after any failure through the next one, pausing a little between
/// rounds. Fails the test if `deadline` passes first.
pub async fn deliver(bases: &[String], first: usize, body: &str, deadline: Instant) -> Delivery {
    let mut d = Delivery::default();
    let mut i = first;
    loop {
        d.attempts += 1;
        match try_post(&format!("{}/logs", bases[i % bases.len()]), body).await {
            Ok((200, answer)) => {
                d.accepted = answer["accepted"].as_u64().unwrap();
                d.duplicates = answer["duplicates"].as_u64().unwrap();
                return d;
            }
            Ok((503, _)) => d.unavailable += 1,
            Ok((status, answer)) => assert!(status >= 500, "{status}: {answer}"),
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "a batch was not accepted in time after {} attempts",
            d.attempts
        );
        i += 1;
        if i % bases.len() == first % bases.len() {
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every id of `sent` is stored exactly once, as `base` answers, in pages and counts.
pub async fn assert_exactly_once(base: &str, sent: &std::collections::BTreeSet<String>) {
    let all = super::all_logs(base, &[]).await;
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for r in &all {
        *seen
            .entry(r["event_id"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "{base}: stored more than once: {twice:?}");
    let missing: Vec<_> = sent
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{base}: lost: {missing:?} (of {})",
        sent.len()
    );
    assert_eq!(all.len(), sent.len(), "{base}: records that were not sent");
    let (_, count) = super::get(&format!("{base}/logs/count"), &[]).await;
    assert_eq!(count["total_logs"], sent.len(), "{base}: {count}");
    let (_, page) = super::get(&format!("{base}/logs?limit=1"), &[]).await;
    assert_eq!(page["total"], sent.len(), "{base}");
    // Newest first in small pages (cursors cross copies of a race): the same records.
    let mut desc = Vec::new();
    let mut url = format!("{base}/logs?limit=97");
    loop {
        let (status, page) = super::get(&url, &[]).await;
        assert_eq!(status.as_u16(), 200, "{page}");
        desc.extend(page["logs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{base}/logs?limit=97&cursor={c}"),
            None => break,
        }
    }
    desc.reverse();
    assert!(
        desc == all,
        "{base}: pages newest first differ from oldest first"
    );
}

/// The body of batch `b` (`n` records, ids `<prefix>-b<b>-<i>`) and its ids.
pub fn batch(prefix: &str, b: usize, n: usize) -> (String, Vec<String>) {
    let records = super::records(&format!("{prefix}-b{b}"), "svc", n);
    let ids = records
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    (super::ndjson(&records), ids)
}
