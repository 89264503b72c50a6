//! What the three services share: their state, routes and middleware; the start-up
//! itself (settings, logging, signals, exit statuses) is `shared::startup`.
//!
//! On SIGINT or SIGTERM the server stops accepting and finishes requests in flight
//! within `SHUTDOWN_GRACE`.

use std::io;
use std::process::ExitCode;
use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus::Registry;
use shared::config::ProcessEnv;
use shared::http::{self, HttpMetrics};
use shared::startup::{self, Failure, Program};
use shared::wire::Health;

use crate::catalog::{sample_products, sample_users, Catalog, Product, User};
use crate::config::{ServiceConfig, SETTINGS_HELP};
use crate::downstream::Downstream;
use crate::orders::{self, Orders};
use crate::Service;

/// Largest JSON request body a service reads.
pub const MAX_JSON_BODY_BYTES: usize = 64 * 1024;

type Configure = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// The whole life of a service binary; `main` only calls this.
pub fn main(service: Service) -> ExitCode {
    let program = Program {
        name: service.name(),
        about: "A demo microservice.",
        settings_help: SETTINGS_HELP,
    };
    startup::main(
        &program,
        std::env::args().skip(1),
        || ServiceConfig::from_env(service, &ProcessEnv),
        |config| async move { serve(service, config).await.map_err(Failure::from) },
    )
}

/// The service's own state and routes, built once and installed on every worker.
fn configure(
    service: Service,
    config: &ServiceConfig,
    registry: &Registry,
) -> prometheus::Result<Configure> {
    Ok(match service {
        Service::User => {
            let users = web::Data::new(Catalog::new(sample_users(), registry)?);
            Arc::new(move |cfg| {
                cfg.app_data(users.clone());
                Catalog::<User>::routes(cfg);
            })
        }
        Service::Product => {
            let products = web::Data::new(Catalog::new(sample_products(), registry)?);
            Arc::new(move |cfg| {
                cfg.app_data(products.clone());
                Catalog::<Product>::routes(cfg);
            })
        }
        Service::Order => {
            let orders = web::Data::new(Orders::new(registry)?);
            let (users, products, timeout) = (
                config.user_service_url.clone(),
                config.product_service_url.clone(),
                config.downstream_timeout,
            );
            Arc::new(move |cfg| {
                cfg.app_data(orders.clone())
                    .app_data(web::Data::new(Downstream::new(&users, &products, timeout)));
                orders::routes(cfg);
            })
        }
    })
}

async fn serve(service: Service, config: ServiceConfig) -> io::Result<()> {
    let name = service.name();
    let registry = Registry::new();
    let metrics = web::Data::new(HttpMetrics::register(&registry, name).map_err(io::Error::other)?);
    let routes = configure(service, &config, &registry).map_err(io::Error::other)?;
    let registry = web::Data::new(registry);
    let health = Health::healthy(name);

    let server = HttpServer::new(move || {
        let health = health.clone();
        let routes = routes.clone();
        App::new()
            .app_data(metrics.clone())
            .app_data(registry.clone())
            .app_data(http::json_config(MAX_JSON_BODY_BYTES))
            .app_data(http::path_config())
            .app_data(http::query_config())
            .wrap(from_fn(http::observe))
            .route(
                "/health",
                web::get().to(move || {
                    let health = health.clone();
                    async move { HttpResponse::Ok().json(health) }
                }),
            )
            .route("/metrics", web::get().to(http::metrics_endpoint))
            .configure(move |cfg| routes(cfg))
            .default_service(web::to(http::not_found))
    })
    .workers(config.workers)
    .shutdown_timeout(config.shutdown_grace.as_secs())
    .disable_signals()
    .bind(config.listen)?;

    for addr in server.addrs() {
        log::info!(
            environment = config.environment.as_str(),
            log_file = config.log_file.display().to_string().as_str();
            "Listening on http://{addr}."
        );
    }
    startup::until_signal(server.run()).await
}
