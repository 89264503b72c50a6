//! Start-up and shutdown: settings, logging, the store's actors, the HTTP server.
//!
//! On SIGTERM or SIGINT (`shared::startup`) the server stops accepting, lets requests in
//! flight finish (their batches are committed and acknowledged) within
//! `SHUTDOWN_GRACE`, then the store's threads are stopped and joined, which closes the
//! database cleanly.

use std::process::ExitCode;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use prometheus::Registry;
use shared::config::ProcessEnv;
use shared::http::{self, HttpMetrics};
use shared::startup::{self, Failure, Program};

use crate::config::{AggregatorConfig, SETTINGS_HELP};
use crate::metrics::Metrics;
use crate::routes::{self, State, SERVICE};
use crate::sqlite::Sqlite;
use crate::store::Store;

/// The whole life of the binary; `main` only calls this.
pub fn main() -> ExitCode {
    let program = Program {
        name: SERVICE,
        about: "The central log aggregator: durable, queryable, idempotent.",
        settings_help: SETTINGS_HELP,
    };
    startup::main(
        &program,
        std::env::args().skip(1),
        || AggregatorConfig::from_env(&ProcessEnv),
        |config| async move { serve(config).await.map_err(Failure::from) },
    )
}

/// Runs the aggregator until SIGTERM or SIGINT; the benchmark runs it in-process too.
pub async fn serve(config: AggregatorConfig) -> anyhow::Result<()> {
    if config.token.is_none() {
        log::warn!(
            "AGGREGATOR_TOKEN is not set: anyone who reaches this port can write, query and clear logs."
        );
    }

    let registry = Registry::new();
    let http_metrics =
        web::Data::new(HttpMetrics::register(&registry, SERVICE).context("register metrics")?);
    let metrics = Metrics::register(&registry).context("register metrics")?;
    let store = Store::new(Sqlite::start(&config, &metrics)?);
    let state = web::Data::new(State::new(store.clone(), metrics, &config));
    let registry = web::Data::new(registry);
    // actix-web's limit is per worker.
    let connections_per_worker = config.limits.max_connections.div_ceil(config.workers);

    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(http_metrics.clone())
            .app_data(registry.clone())
            .app_data(http::query_config())
            .wrap(from_fn(http::observe))
            .configure(routes::routes)
            .default_service(web::to(http::not_found))
    })
    .workers(config.workers)
    .max_connections(connections_per_worker)
    .shutdown_timeout(config.shutdown_grace.as_secs())
    .disable_signals()
    .bind(config.listen)
    .with_context(|| format!("cannot listen on LISTEN_ADDR={}", config.listen))?;

    for addr in server.addrs() {
        log::info!(
            max_body_bytes = config.max_body_bytes,
            auth = if config.token.is_some() { "bearer" } else { "open" };
            "Listening on http://{addr}."
        );
    }
    let result = startup::until_signal(server.run()).await;
    // Every request has finished: stop the store's threads so its files close cleanly.
    store.stop();
    result.context("HTTP server")
}
