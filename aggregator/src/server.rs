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

use crate::clickhouse::ClickHouse;
use crate::config::{AggregatorConfig, StoreKind, SETTINGS_HELP};
use crate::embedded::Embedded;
use crate::metrics::Metrics;
use crate::routes::{self, State, SERVICE};
use crate::store::Store;

/// How often the store's threads are checked.
pub const STORE_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// The exit status when a thread of the store died (EX_SOFTWARE).
pub const EXIT_STORE_FAILED: i32 = 70;

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
    let store = match config.store {
        StoreKind::Embedded => Store::new(Embedded::start(&config, &metrics)?),
        StoreKind::ClickHouse => Store::new(ClickHouse::start(&config, &metrics)?),
    };
    let state = web::Data::new(State::new(store.clone(), metrics, &config));
    let tails = state.hub.clone();
    let loki = web::Data::new(crate::loki::Loki::register(&registry).context("register metrics")?);
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
            .configure(crate::loki::routes(loki.clone()))
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
    // The store's supervisor: a thread of it that died cannot be repaired from here, so
    // the process ends non-zero and its own supervisor (Docker's restart policy) starts
    // it again; the store recovers from its files, losing nothing acknowledged.
    let watched = store.clone();
    let watchdog = actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(STORE_WATCH_INTERVAL);
        loop {
            tick.tick().await;
            if !watched.health().running {
                log::error!("A thread of the store died; exiting so that the supervisor restarts the aggregator.");
                std::process::exit(EXIT_STORE_FAILED);
            }
        }
    });
    // An open live tail is a request that never finishes by itself: on the signal its
    // stream ends, so that the graceful stop does not wait SHUTDOWN_GRACE for it.
    let hub = tails.clone();
    let closer = actix_rt::spawn(async move {
        if startup::signal().await.is_ok() {
            hub.close();
        }
    });
    let result = startup::until_signal(server.run()).await;
    // Every request has finished: stop the store's threads so its files close cleanly.
    closer.abort();
    watchdog.abort();
    store.stop();
    result.context("HTTP server")
}
