//! `GET /ready` and `GET /loki/api/v1/status/buildinfo`.

use actix_web::HttpResponse;
use serde_json::json;

/// Ready once the server answers: the store was opened before it started listening.
pub async fn ready() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ready")
}

/// The build, in the fields Loki's answer has; the version is the aggregator's own.
pub async fn buildinfo() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "log-aggregator",
    }))
}
