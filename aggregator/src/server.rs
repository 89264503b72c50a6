//! Start-up and shutdown: settings, logging, the store's actors, the HTTP server.
//!
//! On SIGTERM or SIGINT (`shared::startup`) the server stops accepting, lets requests in
//! flight finish (their batches are committed and acknowledged) within
//! `SHUTDOWN_GRACE`, then the actors' arbiters are stopped and joined, which closes the
//! database cleanly.

use std::process::ExitCode;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use prometheus::Registry;
use shared::config::ProcessEnv;
use shared::http::{self, HttpMetrics};
use shared::startup::{self, Failure, Program};

use crate::checkpointer::Checkpointer;
use crate::config::{AggregatorConfig, SETTINGS_HELP};
use crate::metrics::Metrics;
use crate::reader::Readers;
use crate::routes::{self, State, SERVICE};
use crate::store::Store;
use crate::writer::Writer;

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
    let dir = &config.data_dir;
    let writer_store = Store::open_writer(dir, config.sync_mode)
        .with_context(|| format!("cannot open the store in DATA_DIR={}", dir.display()))?;
    let stored = writer_store.stored()?;
    let checkpoint_store = Store::open_checkpointer(dir, config.sync_mode)
        .context("cannot open the store's checkpoint connection")?;
    let mut reader_stores = Vec::with_capacity(config.reader_threads);
    for _ in 0..config.reader_threads {
        reader_stores.push(Store::open_reader(dir).context("cannot open a store reader")?);
    }
    log::info!(
        data_dir = dir.display().to_string().as_str(),
        records = stored,
        sqlite = Store::sqlite_version(),
        sync_mode = format!("{:?}", config.sync_mode).to_lowercase().as_str();
        "Store opened."
    );
    if config.token.is_none() {
        log::warn!(
            "AGGREGATOR_TOKEN is not set: anyone who reaches this port can write, query and clear logs."
        );
    }

    let registry = Registry::new();
    let http_metrics =
        web::Data::new(HttpMetrics::register(&registry, SERVICE).context("register metrics")?);
    let metrics = Metrics::register(&registry).context("register metrics")?;
    let writer_arbiter = actix::Arbiter::new();
    let writer = Writer::start(
        &writer_arbiter.handle(),
        writer_store,
        metrics.clone(),
        config.retention,
    );
    let checkpoint_arbiter = actix::Arbiter::new();
    Checkpointer::start(&checkpoint_arbiter.handle(), checkpoint_store);
    let (readers, reader_arbiters) = Readers::start(reader_stores, &metrics);
    let state = web::Data::new(State::new(writer, readers, metrics, &config));
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
    // Every request has finished: stop the actors so the connections close cleanly.
    let arbiters = [writer_arbiter, checkpoint_arbiter];
    for arbiter in arbiters.into_iter().chain(reader_arbiters) {
        arbiter.stop();
        let _ = arbiter.join();
    }
    result.context("HTTP server")
}
