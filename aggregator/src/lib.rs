//! The central log aggregator: stores what the logging sidecars send, durably and once,
//! and answers queries over HTTP.
//!
//! In the order a batch meets them:
//! - [`config`]: settings read once from the environment, with documented defaults.
//! - [`auth`]: the optional bearer token for writes, clears and queries.
//! - [`body`]: a `POST /logs` body (object, array or NDJSON, gzip or not) into records.
//! - [`record`]: one JSON object checked, its indexed fields read, stamped on arrival.
//! - [`routes`]: the HTTP handlers; they ask the store and shape the answers.
//! - [`query`]: `GET /logs` parameters checked into a query, and its cursor.
//! - [`store`]: the one store interface the handlers use, whatever the backend.
//! - [`embedded`]: the log store (the default backend): a write-ahead log, a memory
//!   buffer and compressed Parquet segments.
//! - [`sqlite`]: the SQLite backend of earlier versions (`STORE=sqlite`), also the
//!   source the embedded store imports from.
//! - [`metrics`]: the aggregator's Prometheus metrics.
//! - [`loki`]: Loki's HTTP API (push, LogQL queries, labels, series) over the same store.
//! - [`page`]: the small web page served at `/` to browsers.
//! - [`server`]: start-up and graceful shutdown.

pub mod auth;
pub mod body;
pub mod config;
pub mod embedded;
pub mod loki;
pub mod metrics;
pub mod page;
pub mod query;
pub mod record;
pub mod routes;
pub mod server;
pub mod sqlite;
pub mod store;
