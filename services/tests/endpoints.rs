//! Each service's endpoints over HTTP, including every error case of the contract.

mod common;

use common::{client, get_json, start};
use serde_json::json;
use shared::testkit::assert_promtool_accepts;

#[actix_rt::test]
async fn user_service_answers_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start("user-service", dir.path(), &[]).await;

    let (status, body) = get_json(&svc.url("/health")).await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "healthy", "service": "user-service"}))
    );

    let (status, body) = get_json(&svc.url("/users")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["users"].as_array().unwrap().len(),
        body["count"].as_u64().unwrap() as usize
    );

    let (status, body) = get_json(&svc.url("/users/1")).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], 1);

    let (status, body) = get_json(&svc.url("/users/999")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "user 999 not found");

    let (status, body) = get_json(&svc.url("/users/abc")).await;
    assert_eq!(status, 400);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("invalid path parameter"));

    let (status, body) = get_json(&svc.url("/no/such/route")).await;
    assert_eq!(status, 404);
    assert_eq!(body["status"], 404);
}

#[actix_rt::test]
async fn product_service_answers_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start("product-service", dir.path(), &[]).await;
    let (status, body) = get_json(&svc.url("/products")).await;
    assert_eq!(status, 200);
    assert!(body["products"].as_array().unwrap().len() >= 5);
    let (status, body) = get_json(&svc.url("/products/2")).await;
    assert_eq!((status, body["name"].clone()), (200, json!("Mouse")));
    let (status, _) = get_json(&svc.url("/products/0")).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&svc.url("/products/-1")).await;
    assert_eq!(status, 400);
}

#[actix_rt::test]
async fn request_ids_are_honoured_generated_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start("user-service", dir.path(), &[]).await;

    let res = client()
        .get(svc.url("/users/2"))
        .insert_header(("X-Request-Id", "test-rid-42"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers().get("x-request-id").unwrap(), "test-rid-42");

    let res = client().get(svc.url("/users/2")).send().await.unwrap();
    let generated = res
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 32);

    let lines = svc.log_lines();
    for rid in ["test-rid-42", generated.as_str()] {
        let line = lines
            .iter()
            .find(|l| l["request_id"] == rid)
            .unwrap_or_else(|| panic!("no log line for {rid} in {lines:?}"));
        assert_eq!(line["method"], "GET");
        assert_eq!(line["path"], "/users/2");
        assert_eq!(line["status"], 200);
        assert_eq!(line["service"], "user-service");
        assert_eq!(line["level"], "INFO");
        assert!(line["duration_ms"].is_number());
        let ts = line["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'));
        assert!(line["message"].is_string());
    }
}

#[actix_rt::test]
async fn concurrent_requests_never_tear_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(
        "product-service",
        dir.path(),
        &[("WORKERS", "4".to_owned())],
    )
    .await;
    let c = client();
    let requests = (0..400).map(|i| {
        let url = svc.url(&format!("/products/{}", i % 7));
        let c = c.clone();
        async move {
            c.get(url)
                .insert_header(("X-Request-Id", format!("burst-{i}")))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    for status in futures_util::future::join_all(requests).await {
        assert!(status.unwrap().as_u16() < 500);
    }
    let burst: Vec<_> = svc
        .log_lines()
        .into_iter()
        .filter(|l| {
            l["request_id"]
                .as_str()
                .is_some_and(|r| r.starts_with("burst-"))
        })
        .collect();
    assert_eq!(burst.len(), 400);
}

#[actix_rt::test]
async fn metrics_count_routes_and_business_events() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start("user-service", dir.path(), &[]).await;
    get_json(&svc.url("/users/1")).await;
    get_json(&svc.url("/users/77")).await;
    let mut res = client().get(svc.url("/metrics")).send().await.unwrap();
    assert!(res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    for expected in [
        r#"http_requests_total{method="GET",route="/users/{id}",status="200"} 1"#,
        r#"http_requests_total{method="GET",route="/users/{id}",status="404"} 1"#,
        r#"user_lookups_total{outcome="found"} 1"#,
        r#"user_lookups_total{outcome="not_found"} 1"#,
        "# TYPE http_request_duration_seconds histogram",
        r#"user_service_info{version=""#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert_promtool_accepts(&text);
}

#[actix_rt::test]
async fn every_service_exposition_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    for bin in ["user-service", "product-service", "order-service"] {
        let svc = start(bin, dir.path(), &[]).await;
        get_json(&svc.url("/health")).await;
        let mut res = client().get(svc.url("/metrics")).send().await.unwrap();
        let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
        assert_promtool_accepts(&text);
    }
}

/// 20,000 requests with distinct methods and paths add at most a few series: the
/// middleware labels by method class and route pattern, never by what was sent.
#[actix_rt::test]
async fn metrics_stay_bounded_under_distinct_methods_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start("user-service", dir.path(), &[]).await;
    let addr = svc.base.trim_start_matches("http://").parse().unwrap();
    shared::testkit::assert_metrics_stay_bounded(addr).await;
}
