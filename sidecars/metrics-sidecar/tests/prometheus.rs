//! A real Prometheus server scrapes the sidecar, and its query API returns the enriched
//! series with the added labels.
//!
//! Needs the `prometheus` binary (Debian package `prometheus`); where it is not
//! installed the test says so and returns, or fails when `REQUIRE_TEST_TOOLS=1` (CI).

mod support;

use std::time::Duration;

use shared::testkit::{free_port, Process};
use support::*;

/// Percent-encodes a PromQL query for a URL.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The series a query returns, once it returns any.
async fn wait_series(prometheus: &str, query: &str) -> Vec<serde_json::Value> {
    let url = format!("{prometheus}/api/v1/query?query={}", encode(query));
    wait_for(query, Duration::from_secs(30), || async {
        let (status, body) = get(&url).await?;
        let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        match json["data"]["result"].as_array() {
            Some(result) if status == 200 && !result.is_empty() => Ok(result.clone()),
            _ => Err(body),
        }
    })
    .await
}

#[actix_web::test]
async fn prometheus_scrapes_the_enriched_series() {
    if !prometheus_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_service, base) = start_user_service(dir.path()).await;
    assert_eq!(get(&format!("{base}/users/1")).await.unwrap().0, 200);
    let (_sidecar, sidecar) = start_sidecar("sidecar", dir.path(), &base, &[]).await;

    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: user-service-metrics\n    static_configs:\n      \
             - targets: ['{}']\n",
            sidecar.trim_start_matches("http://")
        ),
    )
    .unwrap();
    let mut prometheus = Process::spawn(
        "prometheus",
        "prometheus",
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn",
        ],
        &[],
        dir.path(),
    )
    .expect("start prometheus");
    let prometheus_url = format!("http://127.0.0.1:{port}");
    prometheus
        .wait_ready(
            &format!("{prometheus_url}/-/ready"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();

    let series = wait_series(
        &prometheus_url,
        r#"http_requests_total{route="/users/{id}",status="200"}"#,
    )
    .await;
    let labels = &series[0]["metric"];
    assert_eq!(labels["sidecar"], "true", "{labels}");
    assert_eq!(labels["environment"], "test", "{labels}");
    assert_eq!(labels["service"], "user-service", "{labels}");
    assert_eq!(labels["job"], "user-service-metrics", "{labels}");
    assert!(labels.get("exported_service").is_none(), "{labels}");
    assert_eq!(series[0]["value"][1], "1", "{series:?}");

    let up = wait_series(
        &prometheus_url,
        r#"metrics_sidecar_up{service="user-service"}"#,
    )
    .await;
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
    // Prometheus itself saw a clean scrape of the sidecar.
    let scrape = wait_series(&prometheus_url, r#"up{job="user-service-metrics"}"#).await;
    assert_eq!(scrape[0]["value"][1], "1", "{scrape:?}");
    assert!(
        prometheus.try_wait().is_none(),
        "prometheus exited:\n{}",
        prometheus.stderr()
    );
}
