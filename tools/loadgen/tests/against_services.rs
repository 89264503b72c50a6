//! loadgen against the three real services, on free loopback ports.
//!
//! - `the_summary_counts_what_the_services_saw`: a short run; the summary's counts per
//!   route and status equal the services' own `http_requests_total`.
//! - `an_unreachable_target_stops_the_run_before_it_starts`: exit 69, naming the service.
//! - `bad_flags_are_named_and_exit_64`, `help_exits_0`.
//!
//! The services' binaries must be built (`cargo build --workspace`, or
//! `cargo test --workspace`, which builds them first).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use shared::testkit::{free_port, workspace_bin, Process};

const READY: Duration = Duration::from_secs(20);

struct Stack {
    _processes: Vec<Process>,
    urls: [String; 3],
}

async fn start_stack(dir: &Path) -> Stack {
    let ports = [free_port(), free_port(), free_port()];
    let urls = ports.map(|p| format!("http://127.0.0.1:{p}"));
    let mut processes = Vec::new();
    for (i, name) in ["user-service", "product-service", "order-service"]
        .iter()
        .enumerate()
    {
        let envs = vec![
            ("LISTEN_ADDR", format!("127.0.0.1:{}", ports[i])),
            (
                "LOG_FILE",
                dir.join(format!("{name}.log")).display().to_string(),
            ),
            ("USER_SERVICE_URL", urls[0].clone()),
            ("PRODUCT_SERVICE_URL", urls[1].clone()),
            ("RUST_LOG", "warn".to_owned()),
        ];
        let mut p = Process::spawn(name, workspace_bin(name), &[], &envs, dir).unwrap();
        p.wait_ready(&format!("{}/health", urls[i]), READY)
            .await
            .unwrap();
        processes.push(p);
    }
    Stack {
        _processes: processes,
        urls,
    }
}

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

/// `http_requests_total` of one service, keyed by (method, route, status).
async fn requests_seen(base: &str) -> HashMap<(String, String, String), u64> {
    let client = awc::Client::default();
    let mut res = client.get(format!("{base}/metrics")).send().await.unwrap();
    let body = res.body().await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut seen = HashMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
    {
        let (labels, value) = line.rsplit_once(' ').unwrap();
        let label = |name: &str| {
            let start = labels.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            labels[start..].split('"').next().unwrap().to_owned()
        };
        seen.insert(
            (label("method"), label("route"), label("status")),
            value.parse().unwrap(),
        );
    }
    seen
}

/// The summary's row for `endpoint`.
fn row<'a>(summary: &'a Value, endpoint: &str) -> &'a Value {
    summary["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["endpoint"] == endpoint)
        .unwrap_or_else(|| panic!("no row {endpoint} in {summary}"))
}

fn status(row: &Value, code: &str) -> u64 {
    row["statuses"][code].as_u64().unwrap_or(0)
}

#[actix_rt::test]
async fn the_summary_counts_what_the_services_saw() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let [user, product, order] = &stack.urls;
    let out = loadgen(&[
        "--user-url",
        user,
        "--product-url",
        product,
        "--order-url",
        order,
        "--requests",
        "360",
        "--rate",
        "3000",
        "--duration",
        "20s",
        "--concurrency",
        "8",
        "--json",
        "--quiet",
    ]);
    assert!(out.status.success(), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["requests"], 360, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(summary["unsent"], 0, "{summary}");
    assert!(summary["late"].is_u64(), "{summary}");
    let rows = summary["endpoints"].as_array().unwrap();
    assert_eq!(rows.len(), 10, "every endpoint is driven: {summary}");
    assert!(
        rows.iter().all(|r| r["requests"].as_u64() > Some(0)),
        "{summary}"
    );

    let key = |m: &str, r: &str, s: &str| (m.to_owned(), r.to_owned(), s.to_owned());
    // order-service saw exactly what loadgen sent, plus two GET /health: the test's
    // readiness probe and loadgen's preflight.
    let seen = requests_seen(order).await;
    for (method, route) in [
        ("GET", "/health"),
        ("GET", "/orders"),
        ("GET", "/orders/{id}"),
        ("POST", "/orders"),
    ] {
        let r = row(&summary, &format!("order-service {method} {route}"));
        for (code, n) in r["statuses"].as_object().unwrap() {
            let probes = 2 * u64::from(route == "/health");
            assert_eq!(
                seen.get(&key(method, route, code)).copied().unwrap_or(0),
                n.as_u64().unwrap() + probes,
                "order-service {method} {route} {code}: {seen:?}"
            );
        }
    }

    // Every POST that got past its body also asked user-service and product-service.
    let posts = row(&summary, "order-service POST /orders");
    let checked = status(posts, "201") + status(posts, "404");
    for (base, plural, service) in [
        (user, "users", "user-service"),
        (product, "products", "product-service"),
    ] {
        let seen = requests_seen(base).await;
        let list = row(&summary, &format!("{service} GET /{plural}"));
        assert_eq!(
            seen[&key("GET", &format!("/{plural}"), "200")],
            status(list, "200")
        );
        let health = row(&summary, &format!("{service} GET /health"));
        assert_eq!(
            seen[&key("GET", "/health", "200")],
            status(health, "200") + 2
        );
        let by_id = format!("/{plural}/{{id}}");
        let r = row(&summary, &format!("{service} GET {by_id}"));
        assert_eq!(seen[&key("GET", &by_id, "400")], status(r, "400"));
        let lookups = seen[&key("GET", &by_id, "200")] + seen[&key("GET", &by_id, "404")];
        assert_eq!(
            lookups,
            status(r, "200") + status(r, "404") + checked,
            "{service}: {seen:?}"
        );
    }
}

#[actix_rt::test]
async fn the_table_lists_every_endpoint_and_the_totals() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let [user, product, order] = &stack.urls;
    let out = loadgen(&[
        "--user-url",
        user,
        "--product-url",
        product,
        "--order-url",
        order,
        "--requests",
        "72",
        "--rate",
        "1000",
    ]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("72 requests in "), "{table}");
    for endpoint in [
        "user-service GET /users/{id}",
        "product-service GET /products ",
        "order-service POST /orders",
        "all ",
    ] {
        assert!(table.contains(endpoint), "no {endpoint:?} in\n{table}");
    }
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("loadgen: sending 1000 req/s"), "{stderr}");
}

#[test]
fn an_unreachable_target_stops_the_run_before_it_starts() {
    // A port that was free a moment ago: nothing listens there.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let out = loadgen(&["--services", "product", "--product-url", &nowhere]);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "product-service is not reachable: GET {nowhere}/health"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was sent"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_flags_are_named_and_exit_64() {
    let out = loadgen(&["--rate", "-5", "--duration", "soon", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    for needle in [
        "--rate \"-5\"",
        "--duration \"soon\"",
        "unknown flag \"--frobnicate\"",
        "try --help",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in {stderr}");
    }
}

#[test]
fn help_exits_0() {
    let out = loadgen(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("--concurrency N"), "{text}");
    assert!(text.contains("EXIT STATUS"), "{text}");
}
