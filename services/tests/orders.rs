//! order-service across all three services: one request id in three logs, and the
//! answers when a dependency is unknown, down or hanging.

mod common;

use std::net::TcpListener;

use common::{client, get_json, start, Running};
use serde_json::json;

async fn post_order(
    order: &Running,
    body: serde_json::Value,
    rid: &str,
) -> (u16, serde_json::Value) {
    let mut res = client()
        .post(order.url("/orders"))
        .insert_header(("X-Request-Id", rid))
        .send_json(&body)
        .await
        .expect("POST /orders answers");
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON body"))
}

#[actix_rt::test]
async fn an_order_crosses_three_services_under_one_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let users = start("user-service", dir.path(), &[]).await;
    let products = start("product-service", dir.path(), &[]).await;
    let order = start(
        "order-service",
        dir.path(),
        &[
            ("USER_SERVICE_URL", users.base.clone()),
            ("PRODUCT_SERVICE_URL", products.base.clone()),
        ],
    )
    .await;

    let (status, created) = post_order(
        &order,
        json!({"user_id": 1, "product_id": 2, "quantity": 3}),
        "cross-1",
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["total"], 89.97);
    assert_eq!(created["status"], "created");
    let (status, fetched) = get_json(&order.url(&format!("/orders/{}", created["id"]))).await;
    assert_eq!((status, &fetched), (200, &created));
    let (status, listed) = get_json(&order.url("/orders?limit=1")).await;
    assert_eq!(status, 200);
    assert_eq!(listed["orders"], json!([created.clone()]));
    assert_eq!(listed["total"], 4);
    let (status, listed) = get_json(&order.url("/orders")).await;
    assert_eq!((status, listed["count"].clone()), (200, json!(4)));
    let (status, _) = get_json(&order.url("/orders?limit=0")).await;
    assert_eq!(status, 400);
    let (status, _) = get_json(&order.url("/orders?limit=x")).await;
    assert_eq!(status, 400);

    for (svc, path) in [
        (&users, "/users/1"),
        (&products, "/products/2"),
        (&order, "/orders"),
    ] {
        let lines = svc.log_lines();
        assert!(
            lines
                .iter()
                .any(|l| l["request_id"] == "cross-1" && l["path"] == path),
            "no request log for cross-1 at {path}: {lines:?}"
        );
    }

    let (status, body) =
        post_order(&order, json!({"user_id": 99, "product_id": 2}), "cross-2").await;
    assert_eq!(
        (status, body["error"].clone()),
        (404, json!("user 99 not found"))
    );
    let (status, body) =
        post_order(&order, json!({"user_id": 1, "product_id": 98}), "cross-3").await;
    assert_eq!(
        (status, body["error"].clone()),
        (404, json!("product 98 not found"))
    );
    let (status, _) = post_order(
        &order,
        json!({"user_id": 1, "product_id": 1, "quantity": 0}),
        "cross-4",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post_order(
        &order,
        json!({"user_id": "one", "product_id": 1}),
        "cross-5",
    )
    .await;
    assert_eq!(status, 400);

    let mut res = client()
        .post(order.url("/orders"))
        .insert_header(("content-type", "application/json"))
        .send_body("{not json")
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON body"));

    let res = client()
        .post(order.url("/orders"))
        .send_body("x")
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
}

#[actix_rt::test]
async fn a_dependency_down_or_hanging_is_a_503_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let products = start("product-service", dir.path(), &[]).await;
    // Nothing listens on a port we bound and released.
    let dead = format!("http://127.0.0.1:{}", shared::testkit::free_port());
    // A listener that accepts connections and never answers.
    let hanging = TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging_url = format!("http://{}", hanging.local_addr().unwrap());

    let order = start(
        "order-service",
        dir.path(),
        &[
            ("USER_SERVICE_URL", dead),
            ("PRODUCT_SERVICE_URL", products.base.clone()),
            ("DOWNSTREAM_TIMEOUT", "300ms".to_owned()),
        ],
    )
    .await;
    let (status, body) = post_order(&order, json!({"user_id": 1, "product_id": 1}), "down-1").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["dependency"], "user-service");

    let dir2 = tempfile::tempdir().unwrap();
    let users = start("user-service", dir2.path(), &[]).await;
    let order = start(
        "order-service",
        dir2.path(),
        &[
            ("USER_SERVICE_URL", users.base.clone()),
            ("PRODUCT_SERVICE_URL", hanging_url),
            ("DOWNSTREAM_TIMEOUT", "300ms".to_owned()),
        ],
    )
    .await;
    let (status, body) = post_order(&order, json!({"user_id": 1, "product_id": 1}), "hang-1").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["dependency"], "product-service");
    drop(hanging);
}
