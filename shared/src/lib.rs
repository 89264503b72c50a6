//! Code that more than one binary of the pipeline needs, so that it exists once.
//!
//! In the order a request meets them:
//! - [`startup`]: the life of every binary: panic hook, arguments, settings, logging,
//!   signals and exit statuses.
//! - [`config`]: settings read once from the environment into typed values, every bad
//!   variable named before the process exits with [`config::EXIT_CONFIG`].
//! - [`cli`]: the command line every binary shares (`serve` by default, `healthcheck`).
//! - [`jsonlog`]: the `log` facade wired to a JSON-lines file (what the logging sidecar
//!   tails) and to human-readable stderr.
//! - [`http`]: the request-id, request-logging and metrics middleware, and the JSON
//!   error type every endpoint answers with.
//! - [`wire`]: the JSON bodies that cross the network between the binaries.
//! - [`record_check`]: the rules a record must meet to be stored, checked by the
//!   aggregator on ingest and by the logging sidecar before sending.
//! - [`event_id`]: the logging sidecar's structured `event_id`, which a store may
//!   deduplicate by ranges per stream.
//! - [`healthcheck`]: the `healthcheck` subcommand, so a container needs no curl.
//! - [`measure`]: a process's memory and CPU time, and percentiles, for the benchmarks.
//! - [`testkit`]: starting a real binary on a free loopback port, for integration tests.

pub mod cli;
pub mod config;
pub mod event_id;
pub mod healthcheck;
pub mod http;
pub mod jsonlog;
pub mod measure;
pub mod record_check;
pub mod startup;
pub mod testkit;
pub mod wire;
