//! Start-up failures and a clean stop.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{env_bin, start};

#[test]
fn an_unwritable_log_file_stops_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let out = Command::new(env_bin("user-service"))
        .env("LOG_FILE", blocker.join("app.log"))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LOG_FILE="), "{stderr}");
}

#[test]
fn bad_settings_are_all_named_at_start() {
    let out = Command::new(env_bin("order-service"))
        .env("LISTEN_ADDR", "somewhere")
        .env("DOWNSTREAM_TIMEOUT", "soon")
        .env("USER_SERVICE_URL", "user-service")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in ["LISTEN_ADDR", "DOWNSTREAM_TIMEOUT", "USER_SERVICE_URL"] {
        assert!(stderr.contains(var), "{var} not named in {stderr}");
    }
}

#[test]
fn unknown_arguments_are_refused() {
    let out = Command::new(env_bin("user-service"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[actix_rt::test]
async fn healthcheck_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = start("product-service", dir.path(), &[]).await;
    let addr = svc.base.trim_start_matches("http://").to_owned();
    let ok = Command::new(env_bin("product-service"))
        .arg("healthcheck")
        .env("LISTEN_ADDR", &addr)
        .status()
        .unwrap();
    assert!(ok.success());

    svc.process.signal(libc::SIGTERM);
    let status = svc
        .process
        .wait_timeout(Duration::from_secs(15))
        .expect("stops on SIGTERM");
    assert!(status.success(), "{status:?}");

    let down = Command::new(env_bin("product-service"))
        .arg("healthcheck")
        .env("LISTEN_ADDR", &addr)
        .status()
        .unwrap();
    assert_eq!(down.code(), Some(1));
    let lines = svc.log_lines();
    assert!(
        lines.iter().any(|l| l["message"] == "Stopped."),
        "{lines:?}"
    );
}
