//! A ClickHouse server of this machine's package (Debian's `clickhouse-server`), started
//! by a benchmark in a directory of its own on free loopback ports, killed when dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shared::testkit::{free_port, Process};

/// Where the server binary is looked for, in order: `$CLICKHOUSE_SERVER`, then `PATH`,
/// then Debian's place for it (outside a normal user's `PATH`).
pub fn server_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CLICKHOUSE_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("clickhouse-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "clickhouse-server is not installed: apt-get install clickhouse-server \
             (scripts/test.sh installs it), or set CLICKHOUSE_SERVER"
                .to_owned()
        })
}

pub struct ClickHouse {
    pub process: Process,
    pub http_port: u16,
    pub data: PathBuf,
    client: awc::Client,
}

impl ClickHouse {
    /// Starts a server with its data under `dir/data` and waits until it answers.
    pub async fn start(dir: &Path) -> Result<ClickHouse, String> {
        let bin = server_binary()?;
        let data = dir.join("data");
        let (http_port, tcp_port) = (free_port(), free_port());
        let d = dir.display();
        // The package's own config.xml also opens the interserver port and logs under
        // /var/log; this one holds only what a single server needs.
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog><size>100M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/data/tmp/</tmp_path>
  <user_files_path>{d}/data/user_files/</user_files_path>
  <format_schema_path>{d}/data/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>536870912</mark_cache_size>
  <timezone>UTC</timezone>
</yandex>
"#
        );
        let users = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"#;
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let config_path = dir.join("config.xml");
        std::fs::write(&config_path, config).map_err(|e| format!("config.xml: {e}"))?;
        std::fs::write(dir.join("users.xml"), users).map_err(|e| format!("users.xml: {e}"))?;
        let arg = format!("--config-file={}", config_path.display());
        let mut process = Process::spawn("clickhouse", &bin, &[arg.as_str()], &[], dir)
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let url = format!("http://127.0.0.1:{http_port}/ping");
        process.wait_ready(&url, Duration::from_secs(60)).await?;
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(600))
            .finish();
        Ok(ClickHouse {
            process,
            http_port,
            data,
            client,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Runs one statement; its answer as text (TabSeparated).
    pub async fn query(&self, sql: &str) -> Result<String, String> {
        let mut res = self
            .client
            .post(format!("{}/", self.url()))
            .send_body(sql.to_owned())
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
        let body = res
            .body()
            .limit(16 << 20)
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if res.status().is_success() {
            Ok(text)
        } else {
            Err(format!("{sql}: {} {text}", res.status()))
        }
    }

    /// Numbers of one row of an answer.
    pub async fn numbers(&self, sql: &str) -> Result<Vec<f64>, String> {
        let text = self.query(sql).await?;
        text.trim()
            .split('\t')
            .map(|v| v.parse::<f64>().map_err(|e| format!("{sql}: {v:?}: {e}")))
            .collect()
    }
}
