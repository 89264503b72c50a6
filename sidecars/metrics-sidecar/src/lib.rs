//! The metrics sidecar: scrapes a service's Prometheus metrics, adds the sidecar's
//! labels, and serves the result from memory.
//!
//! In pipeline order:
//! - [`config`]: the settings, read once from the environment.
//! - [`scraper`]: actor; fetches `<APP_SERVICE_URL>/metrics` on a timer, within a timeout
//!   and a body limit.
//! - [`enricher`]: actor; turns each body into a snapshot with the two modules below.
//! - [`exposition`]: the Prometheus text format (and OpenMetrics), parsed line by line
//!   without copying.
//! - [`relabel`]: adds the labels, keeps each family's HELP and TYPE once, and writes
//!   the output in one buffer.
//! - [`exposer`]: actor; owns the latest snapshot and the scrape's health, and renders
//!   `GET /metrics`.
//! - [`health`]: the scrape's own metrics (`metrics_sidecar_up`, ...).
//! - [`supervision`]: restart counting and the fault hook shared by the three actors.
//! - [`server`]: start-up, wiring, and the HTTP endpoints.

pub mod config;
pub mod enricher;
pub mod exposer;
pub mod exposition;
pub mod health;
pub mod relabel;
pub mod scraper;
pub mod server;
pub mod supervision;
