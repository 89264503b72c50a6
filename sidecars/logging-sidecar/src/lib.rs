//! The logging sidecar: tails a service's log file and forwards every line, enriched, to
//! the log aggregator, never losing one and never storing one twice.
//!
//! Three actors in one single-threaded actix system, each under a supervisor, joined by
//! bounded mailboxes; in pipeline order:
//! - [`tailer`] (the actor) over [`files`] (discovery, rotation, truncation, reading),
//!   [`lines`] (splitting chunks into lines) and [`fingerprint`] (a file's identity);
//! - [`enricher`] (the actor) over [`enrich`] (splicing the contract's fields into each
//!   JSON line, wrapping the rest);
//! - [`forwarder`] (the actor) over [`outbox`] (admission within the batch limits,
//!   retries, isolating refused records, the order of acknowledgements) and [`batch`]
//!   (batch building, in-order acknowledgements, backoff); its acknowledgements flow
//!   back to the tailer, which records them in [`checkpoint`].
//!
//! Around them: [`config`] (settings from the environment), [`metrics`] (Prometheus
//! metrics and readiness), [`server`] (`/health`, `/metrics`, start-up and the drain on
//! SIGTERM) and [`fault`] (the test hook that makes an actor fail on purpose).

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod enrich;
pub mod enricher;
pub mod fault;
pub mod files;
pub mod fingerprint;
pub mod forwarder;
pub mod lines;
pub mod metrics;
pub mod outbox;
pub mod server;
pub mod tailer;
pub mod watch;
