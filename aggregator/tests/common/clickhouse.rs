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

/// Whether `clickhouse-server` is on the `PATH` (18.16 has no `--version` to run).
pub fn available() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(SERVER).is_file()));
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

    /// Starts the server (again) on the same ports and data, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let config = format!("--config-file={}/config.xml", self.dir.display());
        let mut process = Process::spawn(SERVER, SERVER, &[&config], &[], &self.dir.join("logs"))
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
                        Process::spawn(SERVER, SERVER, &[&config], &[], &self.dir.join("logs"))
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
