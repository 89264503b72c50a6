//! Helpers shared by the integration tests: HTTP, polling, and starting real binaries.

#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use shared::testkit::{free_port, workspace_bin, Process};

/// Longest wait for any condition in these tests.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// GET `url`: status and body, or the error as text.
pub async fn get(url: &str) -> Result<(u16, String), String> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let mut res = client.get(url).send().await.map_err(|e| e.to_string())?;
    let body = res
        .body()
        .limit(64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        res.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// Polls `probe` until it gives `Ok`, failing with its last `Err` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}; last seen:\n{last}");
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the first sample whose line starts with `series`.
pub fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls the sidecar's `/metrics` until `check` passes on the body; returns the body.
pub async fn wait_metrics(url: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    wait_for(what, DEADLINE, || async {
        match get(url).await {
            Ok((200, body)) if check(&body) => Ok(body),
            Ok((status, body)) => Err(format!("{status}\n{body}")),
            Err(e) => Err(e),
        }
    })
    .await
}

/// A real user-service on a free loopback port; returns it and its base URL.
pub async fn start_user_service(dir: &Path) -> (Process, String) {
    let port = free_port();
    let mut p = Process::spawn(
        "user-service",
        workspace_bin("user-service"),
        &[],
        &[
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            (
                "LOG_FILE",
                dir.join("user-service.log").display().to_string(),
            ),
        ],
        dir,
    )
    .expect("start user-service");
    let base = format!("http://127.0.0.1:{port}");
    p.wait_ready(&format!("{base}/health"), DEADLINE)
        .await
        .unwrap();
    (p, base)
}

/// The sidecar binary scraping `target`, with `extra` settings; returns it and its base URL.
pub async fn start_sidecar(
    name: &str,
    dir: &Path,
    target: &str,
    extra: &[(&str, &str)],
) -> (Process, String) {
    let port = free_port();
    let mut envs = vec![
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("APP_SERVICE_URL", target.to_owned()),
        ("SERVICE_NAME", "user-service".to_owned()),
        ("ENVIRONMENT", "test".to_owned()),
        ("SCRAPE_INTERVAL", "200ms".to_owned()),
    ];
    envs.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let mut p = Process::spawn(name, env!("CARGO_BIN_EXE_metrics-sidecar"), &[], &envs, dir)
        .expect("start metrics-sidecar");
    let base = format!("http://127.0.0.1:{port}");
    p.wait_ready(&format!("{base}/health"), DEADLINE)
        .await
        .unwrap();
    (p, base)
}

/// Whether the `prometheus` and `promtool` binaries are installed; a test that needs
/// them fails instead where `REQUIRE_TEST_TOOLS=1` (CI).
pub fn prometheus_installed() -> bool {
    shared::testkit::tool_available("prometheus", "prometheus")
        && shared::testkit::tool_available("promtool", "prometheus")
}
