//! The sidecar binary against real targets.
//!
//! - `relabels_a_real_service`: a real user-service, `promtool`, `/health`, the target
//!   going down, and the `healthcheck` subcommand.
//! - `survives_a_misbehaving_target`: a fake target in this process that answers
//!   garbage, a huge body, nothing at all, or 500; every failure is counted, the last
//!   good samples stay until they are stale, and the sidecar stays up.
//! - `supervisors_restart_failed_actors`: the fault hook, in process.
//! - `a_bad_setting_is_named_and_exits_64`.
//! - `metrics_stay_bounded_under_distinct_methods_and_paths`: 20,000 requests with
//!   methods and paths never seen before leave `/metrics` the size it was.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_sidecar::config::SidecarConfig;
use metrics_sidecar::server;
use metrics_sidecar::supervision::Fault;
use shared::testkit::Process;
use support::*;

const ADDED: &str = r#"sidecar="true",environment="test",service="user-service""#;

/// Every sample carries the added labels, and every family has one HELP and one TYPE.
fn assert_well_formed(body: &str) {
    let mut seen = HashSet::new();
    for line in body.lines() {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            let key = (&line[..6], rest.split(' ').next().unwrap());
            assert!(seen.insert(key), "{line} twice in\n{body}");
        } else if !line.is_empty() {
            assert!(line.contains(ADDED), "labels missing: {line}");
        }
    }
}

fn promtool(body: &str) -> std::process::Output {
    shared::testkit::promtool_check_metrics(body).expect("promtool is installed")
}

#[actix_web::test]
async fn relabels_a_real_service() {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, base) = start_user_service(dir.path()).await;
    assert_eq!(get(&format!("{base}/users/1")).await.unwrap().0, 200);
    let (sidecar, url) = start_sidecar("sidecar", dir.path(), &base, &[]).await;
    let metrics = format!("{url}/metrics");

    let wanted = format!(
        r#"http_requests_total{{method="GET",route="/users/{{id}}",status="200",{ADDED}}} 1"#
    );
    let body = wait_metrics(&metrics, "the service's samples", |b| b.contains(&wanted)).await;
    assert_well_formed(&body);
    assert_eq!(value(&body, "metrics_sidecar_up{"), Some(1.0));
    assert!(value(&body, "metrics_sidecar_scrape_samples{").unwrap() > 10.0);
    assert!(value(&body, "metrics_sidecar_last_success_timestamp_seconds{").unwrap() > 1.7e9);
    if prometheus_installed() {
        let out = promtool(&body);
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool: {said}\n{body}"
        );
    }

    let (status, health) = get(&format!("{url}/health")).await.unwrap();
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["service"], "user-service-metrics-sidecar");
    assert_eq!(health["target_up"], true);

    let listen = format!("127.0.0.1:{}", url.rsplit(':').next().unwrap());
    let probe = Command::new(env!("CARGO_BIN_EXE_metrics-sidecar"))
        .arg("healthcheck")
        .env("LISTEN_ADDR", &listen)
        .status()
        .unwrap();
    assert!(probe.success());

    // The target goes away: /metrics still answers, with up 0 and the last samples.
    service.kill();
    let body = wait_metrics(&metrics, "up 0", |b| {
        value(b, "metrics_sidecar_up{") == Some(0.0)
    })
    .await;
    assert!(
        body.contains(&wanted),
        "the last good samples stay:\n{body}"
    );
    assert!(
        value(
            &body,
            r#"metrics_sidecar_scrape_failures_total{error_type="connect""#
        )
        .unwrap()
            >= 1.0
    );
    assert_well_formed(&body);

    // SIGTERM stops it cleanly.
    let mut sidecar = sidecar;
    sidecar.signal(libc::SIGTERM);
    let status = sidecar.wait_timeout(DEADLINE).expect("stops on SIGTERM");
    assert!(status.success(), "{status}: {}", sidecar.stderr());
    let probe = Command::new(env!("CARGO_BIN_EXE_metrics-sidecar"))
        .arg("healthcheck")
        .env("LISTEN_ADDR", &listen)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!probe.success());
}

const GOOD: u8 = 0;
const GARBAGE: u8 = 1;
const HUGE: u8 = 2;
const HANG: u8 = 3;
const ERROR: u8 = 4;
const OPENMETRICS: u8 = 5;

/// A valid body with the hard parts: escapes, a clash, a histogram, NaN.
const TRICKY: &str = "# HELP fake_requests_total Requests.\n# TYPE fake_requests_total counter\n\
fake_requests_total{path=\"/a/{id}\",note=\"x,\\\"y\\\"\",service=\"orders\"} 3\n\
# HELP fake_latency_seconds Latency.\n# TYPE fake_latency_seconds histogram\n\
fake_latency_seconds_bucket{le=\"0.5\"} 1\nfake_latency_seconds_bucket{le=\"+Inf\"} 2\n\
fake_latency_seconds_sum 0.7\nfake_latency_seconds_count 2\n\
# HELP fake_ratio A ratio.\n# TYPE fake_ratio gauge\nfake_ratio NaN\n";

async fn fake_metrics(mode: web::Data<AtomicU8>) -> HttpResponse {
    match mode.load(Ordering::SeqCst) {
        GOOD => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(TRICKY),
        GARBAGE => HttpResponse::Ok().body("<html><body>Not metrics {at all}</body></html>"),
        HUGE => HttpResponse::Ok().body("big_gauge 1\n".repeat(20_000)),
        OPENMETRICS => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(
                "# TYPE om_requests counter\n# HELP om_requests Requests.\n\
                 om_requests_total{code=\"200\"} 5\nom_requests_created{code=\"200\"} 1.7e9\n# EOF\n",
            ),
        HANG => {
            futures_util::future::pending::<()>().await;
            unreachable!("a pending future never completes")
        }
        _ => HttpResponse::InternalServerError().body("boom"),
    }
}

/// The fake target, in this process; returns its base URL and its mode switch.
fn start_fake_target() -> (String, Arc<AtomicU8>, actix_web::dev::ServerHandle) {
    let mode = Arc::new(AtomicU8::new(GOOD));
    let data = web::Data::from(mode.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(fake_metrics))
    })
    .workers(1)
    .shutdown_timeout(0)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (format!("http://{addr}"), mode, handle)
}

fn failures(body: &str, error_type: &str) -> f64 {
    let series = format!(r#"metrics_sidecar_scrape_failures_total{{error_type="{error_type}""#);
    value(body, &series).unwrap_or(-1.0)
}

#[actix_web::test]
async fn survives_a_misbehaving_target() {
    let dir = tempfile::tempdir().unwrap();
    let (target, mode, handle) = start_fake_target();
    let limits = [("SCRAPE_TIMEOUT", "150ms"), ("SCRAPE_BODY_LIMIT", "64KiB")];
    let (mut keeper, keeper_url) = start_sidecar(
        "keeper",
        dir.path(),
        &target,
        &[limits[0], limits[1], ("STALENESS_LIMIT", "1h")],
    )
    .await;
    let (mut dropper, dropper_url) = start_sidecar(
        "dropper",
        dir.path(),
        &target,
        &[limits[0], limits[1], ("STALENESS_LIMIT", "1s")],
    )
    .await;
    let keeper_metrics = format!("{keeper_url}/metrics");
    let clash = format!(
        r#"fake_requests_total{{path="/a/{{id}}",note="x,\"y\"",exported_service="orders",{ADDED}}} 3"#
    );
    for url in [&keeper_metrics, &format!("{dropper_url}/metrics")] {
        let body = wait_metrics(url, "the fake target's samples", |b| b.contains(&clash)).await;
        assert_well_formed(&body);
    }

    for (bad, error_type) in [
        (GARBAGE, "invalid_exposition"),
        (HUGE, "body_too_large"),
        (HANG, "timeout"),
        (ERROR, "http_status"),
    ] {
        mode.store(bad, Ordering::SeqCst);
        let body = wait_metrics(&keeper_metrics, error_type, |b| {
            failures(b, error_type) >= 1.0 && value(b, "metrics_sidecar_up{") == Some(0.0)
        })
        .await;
        assert!(
            body.contains(&clash),
            "{error_type}: last good samples kept:\n{body}"
        );
        assert_well_formed(&body);
        assert!(value(&body, "metrics_sidecar_consecutive_failures{").unwrap() >= 1.0);
        if bad == HANG {
            // A sidecar whose first scrape hangs for half a minute still answers at once:
            // requests never wait for a scrape.
            let (_patient, patient_url) = start_sidecar(
                "patient",
                dir.path(),
                &target,
                &[("SCRAPE_INTERVAL", "30s"), ("SCRAPE_TIMEOUT", "30s")],
            )
            .await;
            let (status, body) = get(&format!("{patient_url}/metrics")).await.unwrap();
            assert_eq!(status, 200);
            assert_eq!(
                value(&body, "metrics_sidecar_scrapes_total{"),
                Some(0.0),
                "{body}"
            );
            assert_eq!(value(&body, "metrics_sidecar_up{"), Some(0.0), "{body}");
        }
    }

    // The dropper's last good samples are older than its limit by now.
    let dropper_metrics = format!("{dropper_url}/metrics");
    let body = wait_metrics(&dropper_metrics, "stale samples dropped", |b| {
        !b.contains("fake_requests_total")
            && value(b, "metrics_sidecar_stale_snapshots_dropped_total{") == Some(1.0)
    })
    .await;
    assert_eq!(value(&body, "metrics_sidecar_snapshot_samples{"), Some(0.0));
    assert_well_formed(&body);
    if prometheus_installed() {
        // Only the sidecar's own families: they must be entirely clean.
        let out = promtool(&body);
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool: {said}\n{body}"
        );
    }

    mode.store(GOOD, Ordering::SeqCst);
    for url in [&keeper_metrics, &dropper_metrics] {
        let body = wait_metrics(url, "recovery", |b| {
            value(b, "metrics_sidecar_up{") == Some(1.0) && b.contains(&clash)
        })
        .await;
        assert_eq!(
            value(&body, "metrics_sidecar_consecutive_failures{"),
            Some(0.0)
        );
    }
    // An OpenMetrics answer is recognised by its content type and converted.
    mode.store(OPENMETRICS, Ordering::SeqCst);
    let om = format!(r#"om_requests_total{{code="200",{ADDED}}} 5"#);
    let body = wait_metrics(&keeper_metrics, "OpenMetrics samples", |b| b.contains(&om)).await;
    assert!(
        body.contains("# TYPE om_requests_total counter\n"),
        "{body}"
    );
    assert!(!body.contains("om_requests_created"), "{body}");
    assert_well_formed(&body);

    for p in [&mut keeper, &mut dropper] {
        assert!(p.try_wait().is_none(), "the sidecar died:\n{}", p.stderr());
    }
    handle.stop(false).await;
}

#[actix_web::test]
async fn supervisors_restart_failed_actors() {
    let (target, _mode, handle) = start_fake_target();
    let env: HashMap<&str, &str> = [
        ("LISTEN_ADDR", "127.0.0.1:0"),
        ("APP_SERVICE_URL", target.as_str()),
        ("SERVICE_NAME", "user-service"),
        ("ENVIRONMENT", "test"),
        ("SCRAPE_INTERVAL", "200ms"),
    ]
    .into();
    let config = SidecarConfig::from_env(&env).unwrap();
    let running = server::start(&config).unwrap();
    let url = format!("http://{}/metrics", running.addrs[0]);
    let server_handle = running.server.handle();
    actix_rt::spawn(running.server);
    let pipeline = running.pipeline;
    wait_metrics(&url, "a first scrape", |b| b.contains("fake_ratio{")).await;

    pipeline.scraper.send(Fault).await.unwrap();
    pipeline.enricher.send(Fault).await.unwrap();
    pipeline.exposer.send(Fault).await.unwrap();
    let body = wait_metrics(&url, "three restarts", |b| {
        ["scraper", "enricher", "exposer"].iter().all(|a| {
            value(
                b,
                &format!(r#"metrics_sidecar_actor_restarts_total{{actor="{a}""#),
            ) == Some(1.0)
        })
    })
    .await;
    // The exposer kept its store, and the restarted scraper goes on scraping.
    assert!(body.contains("fake_ratio{"), "{body}");
    let before = value(&body, "metrics_sidecar_scrapes_total{").unwrap();
    wait_metrics(&url, "scrapes after the restarts", |b| {
        value(b, "metrics_sidecar_scrapes_total{").unwrap_or(0.0) >= before + 2.0
    })
    .await;
    server_handle.stop(false).await;
    handle.stop(false).await;
}

#[actix_web::test]
async fn a_bad_setting_is_named_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Process::spawn(
        "bad-config",
        env!("CARGO_BIN_EXE_metrics-sidecar"),
        &[],
        &[
            ("SCRAPE_INTERVAL", "often".to_owned()),
            ("APP_SERVICE_URL", "user-service".to_owned()),
        ],
        dir.path(),
    )
    .unwrap();
    let status = p.wait_timeout(DEADLINE).expect("exits at once");
    assert_eq!(status.code(), Some(64));
    let stderr = p.stderr();
    assert!(
        stderr.contains("SCRAPE_INTERVAL") && stderr.contains("APP_SERVICE_URL"),
        "{stderr}"
    );
}

#[actix_web::test]
async fn metrics_stay_bounded_under_distinct_methods_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (_service, base) = start_user_service(dir.path()).await;
    let (_sidecar, sidecar) = start_sidecar("sidecar", dir.path(), &base, &[]).await;
    wait_metrics(&format!("{sidecar}/metrics"), "a first scrape", |m| {
        m.contains("metrics_sidecar_up{") && m.contains(" 1\n")
    })
    .await;
    let addr = sidecar.trim_start_matches("http://").parse().unwrap();
    shared::testkit::assert_metrics_stay_bounded(addr).await;
}
