//! Starting the real service binaries on free loopback ports.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use shared::testkit::{free_port, Process};

pub struct Running {
    pub process: Process,
    pub base: String,
    pub log_file: PathBuf,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Every line of the service's JSON log, parsed; a line that is not JSON fails the test.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        text.lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("torn or bad log line {l:?}: {e}"))
            })
            .collect()
    }
}

/// Starts `bin` (e.g. `user-service`) with its log in `dir` and waits for `/health`.
pub async fn start(bin: &str, dir: &std::path::Path, extra: &[(&str, String)]) -> Running {
    let port = free_port();
    let log_file = dir.join(bin).join("app.log");
    let mut envs = vec![
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("LOG_FILE", log_file.display().to_string()),
        ("WORKERS", "2".to_owned()),
    ];
    envs.extend(extra.iter().cloned());
    let mut process = Process::spawn(bin, env_bin(bin), &[], &envs, dir).expect("spawn service");
    let base = format!("http://127.0.0.1:{port}");
    process
        .wait_ready(&format!("{base}/health"), Duration::from_secs(20))
        .await
        .expect("service becomes healthy");
    Running {
        process,
        base,
        log_file,
    }
}

pub fn env_bin(bin: &str) -> PathBuf {
    match bin {
        "user-service" => PathBuf::from(env!("CARGO_BIN_EXE_user-service")),
        "product-service" => PathBuf::from(env!("CARGO_BIN_EXE_product-service")),
        "order-service" => PathBuf::from(env!("CARGO_BIN_EXE_order-service")),
        other => panic!("unknown service {other}"),
    }
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
}

/// GET `url`, returning the status and the JSON body.
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let mut res = client().get(url).send().await.expect("GET answers");
    let status = res.status().as_u16();
    let body = res.json::<serde_json::Value>().await.expect("JSON body");
    (status, body)
}
