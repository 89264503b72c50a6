//! Loki's HTTP API on the aggregator's port: shippers push to it (Promtail, Alloy,
//! Fluent Bit, Vector), Grafana and `logcli` query it. Same store, same token, same
//! ingest path as `POST /logs`. docs/loki.md says what is supported and how it maps.
//!
//! In the order a request meets them:
//! - [`request`]: the token, the parameters, a place among the running queries.
//! - [`push`]: a push body (protobuf + snappy, or JSON, gzip or not) into entries;
//!   [`proto`] holds the protobuf messages, [`labels`] the stream labels.
//! - [`entry`]: an entry into a record and its idempotency key.
//! - [`ingest`]: the push endpoint: store, verify duplicates, answer 204.
//! - [`logql`]: the query language: parser, pipeline, metric evaluation.
//! - [`params`]: times, durations, directions and limits as Loki reads them.
//! - [`stored`]: a stored record seen as a Loki entry.
//! - [`exec`]: a query run over pages of the store, within its limits.
//! - [`query`], [`index`], [`status`]: the query, stream and status endpoints.
//! - [`tail`]: the WebSocket tail over the store's live feed.
//! - [`response`] and [`error`]: Loki's JSON shapes and its plain-text errors.

pub mod entry;
pub mod error;
pub mod exec;
pub mod index;
pub mod ingest;
pub mod labels;
pub mod logql;
pub mod params;
pub mod proto;
pub mod push;
pub mod query;
pub mod request;
pub mod response;
pub mod status;
pub mod stored;
pub mod tail;

use std::time::Duration;

use actix_web::http::Method;
use actix_web::{web, Route};
use prometheus::{IntCounter, Registry};
use tokio::sync::Semaphore;

use crate::routes::{endpoint, register, Endpoint};
use exec::Limits;

/// Queries (of any Loki kind) evaluated at once; more wait for a place, up to the
/// query timeout, then get `429`. Each holds at most [`LIMITS`]' worth of memory.
pub const MAX_CONCURRENT_QUERIES: usize = 4;

/// WebSocket tails open at once; more get `429`.
pub const MAX_TAILS: usize = 32;

/// The limits of one query, with Loki's defaults where Loki has one.
pub const LIMITS: Limits = Limits {
    max_entries: 5000,
    max_series: 500,
    // 16 bytes per point: at most 32 MiB per query.
    max_points: 2_000_000,
    max_streams: 10_000,
    max_steps: 11_000,
    timeout: Duration::from_secs(60),
};

/// What the Loki endpoints share besides the aggregator's [`crate::routes::State`].
pub struct Loki {
    pub limits: Limits,
    pub queries: Semaphore,
    pub tails: std::sync::Arc<Semaphore>,
    /// Pushed entries stored under a further id because their first one was taken by a
    /// different entry (a hash collision).
    pub collisions: IntCounter,
}

impl Loki {
    pub fn register(registry: &Registry) -> prometheus::Result<Loki> {
        let collisions = IntCounter::new(
            "aggregator_loki_id_collisions_total",
            "Pushed Loki entries whose derived event_id was held by a different entry, stored under the next id.",
        )?;
        registry.register(Box::new(collisions.clone()))?;
        Ok(Loki {
            limits: LIMITS,
            queries: Semaphore::new(MAX_CONCURRENT_QUERIES),
            tails: std::sync::Arc::new(Semaphore::new(MAX_TAILS)),
            collisions,
        })
    }
}

/// Every Loki endpoint, in the order of the OpenAPI description; a query endpoint takes
/// its parameters from the query string or, as Loki does, from a POST's form body.
pub fn endpoints() -> Vec<Endpoint> {
    let both = |path: &'static str, to: fn() -> Route| {
        [
            endpoint(path, Method::GET, to().method(Method::GET)),
            endpoint(path, Method::POST, to().method(Method::POST)),
        ]
    };
    let mut all = vec![
        endpoint("/ready", Method::GET, web::get().to(status::ready)),
        endpoint(
            "/loki/api/v1/push",
            Method::POST,
            web::post().to(ingest::push),
        ),
    ];
    all.extend(both("/loki/api/v1/query_range", || {
        web::route().to(query::query_range)
    }));
    all.extend(both("/loki/api/v1/query", || web::route().to(query::query)));
    all.extend(both("/loki/api/v1/labels", || {
        web::route().to(index::labels)
    }));
    all.extend(both("/loki/api/v1/label/{name}/values", || {
        web::route().to(index::label_values)
    }));
    all.extend(both("/loki/api/v1/series", || {
        web::route().to(index::series)
    }));
    all.extend(both("/loki/api/v1/index/stats", || {
        web::route().to(index::stats)
    }));
    all.extend(both("/loki/api/v1/index/volume", || {
        web::route().to(index::volume)
    }));
    all.extend(both("/loki/api/v1/index/volume_range", || {
        web::route().to(index::volume_range)
    }));
    all.push(endpoint(
        "/loki/api/v1/tail",
        Method::GET,
        web::get().to(tail::tail),
    ));
    all.push(endpoint(
        "/loki/api/v1/status/buildinfo",
        Method::GET,
        web::get().to(status::buildinfo),
    ));
    all
}

/// Registers the Loki routes; `loki` is shared by every worker.
pub fn routes(loki: web::Data<Loki>) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(loki.clone());
        register(cfg, endpoints());
    }
}
