//! The sidecar's own `/metrics` against a hostile client on its port.
//!
//! - `metrics_stay_bounded_under_distinct_methods_and_paths`: 20,000 requests with
//!   methods and paths never seen before add at most a few series.

use std::time::Duration;

use shared::testkit::{assert_metrics_stay_bounded, free_port, Process};

#[actix_rt::test]
async fn metrics_stay_bounded_under_distinct_methods_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let envs = [
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("LOG_PATH", dir.path().join("app.log").display().to_string()),
        ("STATE_DIR", dir.path().join("state").display().to_string()),
        // Nothing listens there: the sidecar only has to serve its own endpoints.
        (
            "AGGREGATOR_URL",
            format!("http://127.0.0.1:{}/logs", free_port()),
        ),
        ("SERVICE_NAME", "flooded-service".to_owned()),
    ];
    let mut sidecar = Process::spawn(
        "logging-sidecar",
        env!("CARGO_BIN_EXE_logging-sidecar"),
        &[],
        &envs,
        dir.path(),
    )
    .expect("start logging-sidecar");
    let base = format!("http://127.0.0.1:{port}");
    sidecar
        .wait_ready(&format!("{base}/metrics"), Duration::from_secs(30))
        .await
        .unwrap();
    assert_metrics_stay_bounded(format!("127.0.0.1:{port}").parse().unwrap()).await;
    assert!(sidecar.try_wait().is_none(), "{}", sidecar.stderr());
}
