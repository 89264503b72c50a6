//! The web console in a real headless Chromium, driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`; scripts/test.sh installs them), against the real
//! aggregator holding known records. One browser session checks, in order:
//!
//! - a search narrows the rows (`service:` shorthand), and the URL holds the query;
//! - the histogram's bars are the buckets, with the counts, of `GET /logs/volume`;
//! - clicking a facet filters the rows;
//! - a record containing `<script>` and `<b>` shows as text, and runs nothing;
//! - the service overview's 5xx and 4xx rates are those of the records' statuses;
//! - the request view lists one order's records across the three services in time order;
//! - live tail shows a record POSTed after it started within a second of the
//!   acknowledgement (printed), and a burst of 5,000 records is sampled with a notice;
//! - with `AGGREGATOR_TOKEN` set, the page asks for the token once per tab.
//!
//! A screenshot of each view is saved under `target/tmp/console-screenshots/`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{get, post_ndjson, Aggregator};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use shared::testkit::{free_port, tool_available};

const WAIT: Duration = Duration::from_secs(15);

/// chromedriver on a free port, stopped when dropped.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child, port);
    let deadline = Instant::now() + WAIT;
    loop {
        let ok = awc::Client::default()
            .get(format!("http://127.0.0.1:{port}/status"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        if ok {
            return driver;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,800"]}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a WebDriver session")
}

/// Evaluates `script` (a function body) in the page.
async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("script ran")
}

/// Waits until `script` returns true in the page.
async fn until(c: &Client, what: &str, script: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if js(c, script).await == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits for the search after the `n`th to have finished.
async fn searched(c: &Client, n: u64) -> u64 {
    until(
        c,
        "a search",
        &format!("return +(document.body.dataset.searched || 0) > {n} && !document.body.dataset.loading;"),
    )
    .await;
    js(c, "return +document.body.dataset.searched;")
        .await
        .as_u64()
        .unwrap()
}

async fn shot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn texts(c: &Client, css: &str) -> Vec<String> {
    let v = js(
        c,
        &format!("return [...document.querySelectorAll({css:?})].map(e => e.textContent);"),
    )
    .await;
    serde_json::from_value(v).unwrap()
}

const SERVICES: [&str; 3] = ["user-service", "order-service", "payment-service"];
const HOSTILE: &str = "<script>window.pwned = 1</script><b>bold</b> hostile payload";

/// Records of the last 30 minutes, an order across the three services, and a hostile one.
fn known_records(now_ms: i64) -> Vec<Value> {
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let mut out = Vec::new();
    for i in 0..300i64 {
        let service = SERVICES[(i % 3) as usize];
        let status = match i % 20 {
            0 | 7 => 500,
            3 => 404,
            _ => 200,
        };
        let level = match status {
            500 => "ERROR",
            404 => "WARN",
            _ => "INFO",
        };
        out.push(json!({
            "timestamp": at(now_ms - 30 * 60_000 + i * 5_000),
            "service": service, "level": level,
            "message": format!("GET /items/{i} {status}"),
            "status": status, "duration_ms": 5 + i % 50,
            "request_id": format!("bg-{i}"),
        }));
    }
    // One order, out of order on arrival; the times say user → order → payment → order.
    let t0 = now_ms - 60_000;
    for (service, dt, msg, d) in [
        (
            "payment-service",
            40,
            "payment authorised for order-1001",
            30,
        ),
        ("user-service", 0, "user 42 looked up for order-1001", 8),
        ("order-service", 80, "order-1001 created", 95),
        ("order-service", 10, "creating order-1001", 2),
    ] {
        out.push(json!({
            "timestamp": at(t0 + dt), "service": service, "level": "INFO", "message": msg,
            "request_id": "order-1001", "duration_ms": d,
        }));
    }
    out.push(
        json!({"timestamp": at(now_ms - 30_000), "service": "user-service",
                    "level": "WARN", "message": HOSTILE}),
    );
    out
}

#[actix_rt::test]
async fn the_console_in_a_real_browser() {
    if !(tool_available("chromedriver", "chromium-driver")
        && tool_available("chromium", "chromium"))
    {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[]).await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let records = known_records(now_ms);
    let (s, body) = post_ndjson(&agg.url("/logs"), &records).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let driver = start_driver().await;
    let c = browser(&driver).await;

    // Search narrows the rows.
    c.goto(&agg.url("/?range=1h")).await.unwrap();
    let mut n = searched(&c, 0).await;
    let all = texts(&c, "#rows .row .svc").await;
    assert_eq!(all.len(), 200, "the first page");
    shot(&c, "1-search").await;
    let q = c.find(Locator::Id("q")).await.unwrap();
    q.send_keys("service:payment-service").await.unwrap();
    c.find(Locator::Id("go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    n = searched(&c, n).await;
    let narrowed = texts(&c, "#rows .row .svc").await;
    assert_eq!(narrowed.len(), 100 + 1, "{narrowed:?}");
    assert!(narrowed.iter().all(|s| s == "payment-service"));
    let url = c.current_url().await.unwrap();
    assert!(url.as_str().contains("service%3Apayment-service"), "{url}");

    // The histogram's bars are /logs/volume's buckets.
    let used = js(&c, "return document.body.dataset.volume;").await;
    let (s, vol) = get(
        &agg.url(&format!("/logs/volume?{}", used.as_str().unwrap())),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{vol}");
    let bars = js(
        &c,
        "return [...document.querySelectorAll('#hist g.bar')].map(g => [g.dataset.time, +g.dataset.total]);",
    )
    .await;
    let expect: Vec<Value> = vol["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| json!([b["time"], b["total"]]))
        .collect();
    assert_eq!(bars, Value::from(expect));
    assert_eq!(vol["total"], 101);

    // A facet click filters.
    c.find(Locator::Css(
        "button.facet[data-facet=level][data-value=ERROR]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    searched(&c, n).await;
    let levels = texts(&c, "#rows .row .lv").await;
    let errors = records
        .iter()
        .filter(|r| r["service"] == "payment-service" && r["level"] == "ERROR")
        .count();
    assert_eq!(levels.len(), errors, "{levels:?}");
    assert!(levels.iter().all(|l| l == "ERROR"));
    shot(&c, "2-facet").await;

    // A hostile record shows as text.
    c.goto(&agg.url("/?range=1h&q=hostile")).await.unwrap();
    searched(&c, 0).await;
    let msgs = texts(&c, "#rows .row .msg").await;
    assert_eq!(msgs, [HOSTILE]);
    let executed = js(
        &c,
        "return window.pwned === undefined && !document.querySelector('#rows b, #rows script');",
    )
    .await;
    assert_eq!(
        executed,
        Value::Bool(true),
        "markup from a record was interpreted"
    );
    c.find(Locator::Css("#rows .row"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "the expanded row",
        "return !!document.querySelector('#rows .detail');",
    )
    .await;
    shot(&c, "3-expanded").await;

    // The service overview: rates of the records' statuses.
    c.goto(&agg.url("/?range=1h&view=services")).await.unwrap();
    searched(&c, 0).await;
    for service in SERVICES {
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["service"] == service && r["status"].is_u64())
            .collect();
        let rate = |lo: u64| {
            let n = mine
                .iter()
                .filter(|r| (lo..lo + 100).contains(&r["status"].as_u64().unwrap()))
                .count();
            format!("{:.2}", 100.0 * n as f64 / mine.len() as f64)
        };
        let shown = js(
            &c,
            &format!("return [...document.querySelectorAll('#svc tr[data-service={service:?}] td[data-rate]')].map(td => td.dataset.rate);"),
        )
        .await;
        assert_eq!(shown, json!([rate(400), rate(500)]), "{service}");
    }
    shot(&c, "4-services").await;

    // The request view: one order across three services, in time order.
    c.goto(&agg.url("/?view=request&rid=order-1001"))
        .await
        .unwrap();
    until(
        &c,
        "the request view",
        "return document.querySelectorAll('#rrows .row').length === 4;",
    )
    .await;
    let msgs = texts(&c, "#rrows .row .msg").await;
    let order: Vec<&str> = msgs
        .iter()
        .map(|m| m.split("  (").next().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "user 42 looked up for order-1001",
            "creating order-1001",
            "payment authorised for order-1001",
            "order-1001 created"
        ]
    );
    let lanes = js(
        &c,
        "return document.querySelectorAll('#lanes g.span').length;",
    )
    .await;
    assert_eq!(lanes, 4);
    shot(&c, "5-request").await;

    // Live tail: a record POSTed after the tail opened appears within a second.
    c.goto(&agg.url("/?range=5m")).await.unwrap();
    searched(&c, 0).await;
    c.find(Locator::Id("live"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "the tail to open",
        "return document.body.dataset.tail === 'open';",
    )
    .await;
    let fresh = json!({"service": "order-service", "level": "INFO", "message": "tailed record 77"});
    let (s, _) = post_ndjson(&agg.url("/logs"), &[fresh]).await;
    assert_eq!(s, StatusCode::OK);
    let acked = Instant::now();
    until(
        &c,
        "the tailed record",
        "return [...document.querySelectorAll('#rows .row .msg')].some(e => e.textContent === 'tailed record 77');",
    )
    .await;
    let latency = acked.elapsed();
    println!("live tail: acknowledged to shown in the browser: {latency:?}");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    shot(&c, "6-live").await;

    // A burst far above what can be shown one by one: the page samples, says so, and
    // still answers.
    let burst: Vec<Value> = (0..5000)
        .map(|i| json!({"service": "order-service", "level": "DEBUG", "message": format!("burst {i}")}))
        .collect();
    let (s, _) = post_ndjson(&agg.url("/logs"), &burst).await;
    assert_eq!(s, StatusCode::OK);
    until(
        &c,
        "the sampling notice",
        "return document.getElementById('notice').textContent.startsWith('Sampling');",
    )
    .await;
    let shown = js(&c, "return document.querySelectorAll('#rows .row').length;").await;
    assert!(shown.as_u64().unwrap() < 5000, "{shown}");
    shot(&c, "7-sampling").await;

    // With AGGREGATOR_TOKEN set, the page asks for the token once and keeps it for the tab.
    let dir2 = tempfile::tempdir().unwrap();
    let locked = Aggregator::start(dir2.path(), &[("AGGREGATOR_TOKEN", "s3cret-token")]).await;
    let (s, _) = common::post(
        &locked.url("/logs"),
        "application/x-ndjson",
        &[("Authorization", "Bearer s3cret-token")],
        common::ndjson(&records[..20]),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    c.goto(&locked.url("/?range=1h")).await.unwrap();
    until(
        &c,
        "the token prompt",
        "return document.getElementById('tokdlg').open;",
    )
    .await;
    c.find(Locator::Id("tok"))
        .await
        .unwrap()
        .send_keys("s3cret-token")
        .await
        .unwrap();
    c.find(Locator::Css("#tokform button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    searched(&c, 0).await;
    assert_eq!(texts(&c, "#rows .row").await.len(), 20);
    c.refresh().await.unwrap();
    searched(&c, 0).await;
    let asked = js(&c, "return document.getElementById('tokdlg').open;").await;
    assert_eq!(asked, Value::Bool(false), "the token is kept for the tab");
    assert_eq!(texts(&c, "#rows .row").await.len(), 20);

    // A phone's width.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&agg.url("/?range=1h")).await.unwrap();
    searched(&c, 0).await;
    shot(&c, "8-phone").await;

    c.close().await.unwrap();
    println!("browser test took {:?}", started.elapsed());
}
