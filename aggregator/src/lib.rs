//! The central log aggregator: stores what the logging sidecars send, durably and once,
//! and answers queries over HTTP.
//!
//! In the order a batch meets them:
//! - [`config`]: settings read once from the environment, with documented defaults.
//! - [`auth`]: the optional bearer token for writes, clears and queries.
//! - [`admission`]: how many ingest requests are under way, overall and per client, and
//!   the memory they hold.
//! - [`ingest`]: `POST /logs` from headers to acknowledgement, within every limit.
//! - [`body`]: a `POST /logs` body's framing and encoding (object, array or NDJSON, gzip
//!   or not), read and decompressed within the memory budget.
//! - [`batch`]: the decompressed body into records, within the record limit and the
//!   budget.
//! - [`record`]: one JSON object checked, its indexed fields read, stamped on arrival.
//! - [`routes`]: the endpoint list and the other handlers; they ask the store and shape
//!   the answers.
//! - [`query`]: `GET /logs` parameters checked into a query, and its cursor.
//! - [`store`]: the one store interface the handlers use, whatever the backend.
//! - [`embedded`]: the log store (the default backend): a write-ahead log, a memory
//!   buffer and compressed Parquet segments.
//! - [`clickhouse`]: the ClickHouse backend (`STORE=clickhouse`): the records in a
//!   ClickHouse server shared by any number of aggregators, exactly once across them.
//! - [`metrics`]: the aggregator's Prometheus metrics.
//! - [`loki`]: Loki's HTTP API (push, LogQL queries, labels, series) over the same store.
//! - [`page`]: the small web page served at `/` to browsers.
//! - [`server`]: start-up and graceful shutdown.

pub mod admission;
pub mod auth;
pub mod batch;
pub mod body;
pub mod clickhouse;
pub mod config;
pub mod console;
pub mod embedded;
pub mod ingest;
pub mod loki;
pub mod metrics;
pub mod page;
pub mod query;
pub mod record;
pub mod routes;
pub mod server;
pub mod store;
