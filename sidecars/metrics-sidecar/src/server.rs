//! Start-up: settings, the three supervised actors, and the HTTP server in front.
//!
//! The scraper and the exposer live on the main arbiter; the enricher gets an arbiter of
//! its own so that relabeling a large body never delays `GET /metrics`. On SIGINT or
//! SIGTERM (`shared::startup`) the server finishes requests in flight within
//! `SHUTDOWN_GRACE`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::body::SizedStream;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Serialize;
use shared::config::ProcessEnv;
use shared::http::{self, ApiError};
use shared::startup::{self, Failure, Program};

use crate::config::{SidecarConfig, SETTINGS_HELP};
use crate::enricher::Enricher;
use crate::exposer::{Exposer, GetStatus, Render, Status, Store};
use crate::health::OWN_PREFIX;
use crate::relabel::Relabeler;
use crate::scraper::Scraper;
use crate::supervision::Restarts;

pub const PROGRAM: &str = "metrics-sidecar";

/// The content type of format 0.0.4.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The labels added to every sample, in the order they are written.
pub fn added_labels(config: &SidecarConfig) -> [(&str, &str); 3] {
    [
        ("sidecar", "true"),
        ("environment", config.environment.as_str()),
        ("service", config.service_name.as_str()),
    ]
}

/// The three actors, started and supervised.
pub struct Pipeline {
    pub scraper: Addr<Scraper>,
    pub enricher: Addr<Enricher>,
    pub exposer: Addr<Exposer>,
    pub restarts: Arc<Restarts>,
    enricher_arbiter: Arbiter,
}

impl Pipeline {
    /// Starts the actors; must run inside an actix `System`.
    pub fn start(config: &SidecarConfig) -> Pipeline {
        let restarts = Arc::new(Restarts::default());
        let relabeler = Relabeler::new(&added_labels(config), OWN_PREFIX);
        let store = Store::new(config.staleness_limit, relabeler.added_text().to_vec());
        let r = restarts.clone();
        let exposer = Supervisor::start(move |_| Exposer::new(store, r));
        let enricher_arbiter = Arbiter::new();
        let (r, e) = (restarts.clone(), exposer.clone());
        let enricher = Supervisor::start_in_arbiter(&enricher_arbiter.handle(), move |_| {
            Enricher::new(relabeler, e, r)
        });
        let scraper = {
            let (c, e, r) = (config.clone(), enricher.clone(), restarts.clone());
            Supervisor::start(move |_| {
                Scraper::new(
                    c.scrape_url,
                    c.scrape_interval,
                    c.scrape_timeout,
                    c.body_limit_bytes,
                    e,
                    r,
                )
            })
        };
        Pipeline {
            scraper,
            enricher,
            exposer,
            restarts,
            enricher_arbiter,
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.enricher_arbiter.stop();
    }
}

/// A started sidecar: its pipeline and its bound HTTP server.
pub struct Running {
    pub pipeline: Pipeline,
    pub server: actix_web::dev::Server,
    pub addrs: Vec<SocketAddr>,
}

/// The body of `GET /health`.
#[derive(Debug, Serialize)]
struct SidecarHealth {
    status: &'static str,
    service: String,
    #[serde(flatten)]
    scrape: Status,
}

/// `GET /metrics`: the held snapshot and the sidecar's own families, never a scrape.
async fn metrics(exposer: web::Data<Addr<Exposer>>) -> Result<HttpResponse, ApiError> {
    let rendered = exposer
        .send(Render)
        .await
        .map_err(|e| ApiError::unavailable(format!("the exposer is not answering: {e}")))?;
    let length = (rendered.target.len() + rendered.own.len()) as u64;
    let chunks = [Ok::<_, Infallible>(rendered.target), Ok(rendered.own)];
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, TEXT_FORMAT))
        .body(SizedStream::new(length, futures_util::stream::iter(chunks))))
}

/// `GET /health`: healthy while the pipeline answers, whatever the target's state.
async fn health(
    exposer: web::Data<Addr<Exposer>>,
    name: web::Data<String>,
) -> Result<HttpResponse, ApiError> {
    let scrape = exposer
        .send(GetStatus)
        .await
        .map_err(|e| ApiError::unavailable(format!("the exposer is not answering: {e}")))?;
    Ok(HttpResponse::Ok().json(SidecarHealth {
        status: "healthy",
        service: name.get_ref().clone(),
        scrape,
    }))
}

/// Starts the pipeline and binds the server; must run inside an actix `System`.
pub fn start(config: &SidecarConfig) -> io::Result<Running> {
    let pipeline = Pipeline::start(config);
    let exposer = web::Data::new(pipeline.exposer.clone());
    let name = web::Data::new(format!("{}-{PROGRAM}", config.service_name));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(exposer.clone())
            .app_data(name.clone())
            .wrap(from_fn(http::observe))
            .route("/metrics", web::get().to(metrics))
            .route("/health", web::get().to(health))
            .default_service(web::to(http::not_found))
    })
    .workers(config.workers)
    .shutdown_timeout(config.shutdown_grace.as_secs())
    .disable_signals()
    .bind(config.listen)?;
    let addrs = server.addrs();
    for addr in &addrs {
        log::info!(
            scrape_url = config.scrape_url.as_str(),
            scrape_interval_s = config.scrape_interval.as_secs_f64(),
            service = config.service_name.as_str(),
            environment = config.environment.as_str();
            "Listening on http://{addr}."
        );
    }
    Ok(Running {
        pipeline,
        server: server.run(),
        addrs,
    })
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(config: SidecarConfig) -> io::Result<()> {
    let running = start(&config)?;
    let result = startup::until_signal(running.server).await;
    drop(running.pipeline);
    result
}

/// The whole life of the binary, from its arguments (without the program name).
pub fn main_with_args<I: IntoIterator<Item = String>>(args: I) -> ExitCode {
    let program = Program {
        name: PROGRAM,
        about: "Scrapes a service's Prometheus metrics, adds the sidecar's labels and serves them.",
        settings_help: SETTINGS_HELP,
    };
    startup::main(
        &program,
        args,
        || SidecarConfig::from_env(&ProcessEnv),
        |config| async move { serve(config).await.map_err(Failure::from) },
    )
}
