//! The aggregator's own Prometheus metrics, beside the HTTP ones of `shared::http`.
//!
//! Ingestion is counted where its outcome is known (the handler, after the writer's
//! answer); the stored gauge is kept by the writer, the only one that changes the store,
//! so it is exact without asking the database.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Reasons a request is refused, for `aggregator_requests_rejected_total{reason}`; the
/// body reasons come from [`crate::body::BodyError::reason`].
pub const REASON_UNAUTHORIZED: &str = "unauthorized";
pub const REASON_BAD_QUERY: &str = "bad_query";
pub const REASON_UNAVAILABLE: &str = "unavailable";
pub const REASON_STORE: &str = "store_error";
/// A method the path does not answer (405).
pub const REASON_METHOD: &str = "method_not_allowed";
/// `INGEST_MAX_REQUESTS` ingest requests were under way (503).
pub const REASON_BUSY: &str = "too_many_requests";
/// The client had `INGEST_MAX_REQUESTS_PER_CLIENT` ingest requests under way (429).
pub const REASON_CLIENT_BUSY: &str = "client_too_many_requests";
/// A query ran past `QUERY_TIMEOUT` (503).
pub const REASON_QUERY_TIMEOUT: &str = "query_timeout";

#[derive(Clone)]
pub struct Metrics {
    pub records_ingested: IntCounter,
    pub records_duplicate: IntCounter,
    pub requests_rejected: IntCounterVec,
    pub batch_records: Histogram,
    pub batch_commit: Histogram,
    pub records_stored: IntGauge,
    pub records_pruned: IntCounter,
    pub query_duration: HistogramVec,
    pub ingest_memory: IntGauge,
    pub ingest_requests: IntGauge,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            records_ingested: IntCounter::new(
                "aggregator_records_ingested_total",
                "Records stored by POST /logs (duplicates not included).",
            )?,
            records_duplicate: IntCounter::new(
                "aggregator_records_duplicate_total",
                "Records acknowledged but not stored again because their event_id was stored.",
            )?,
            requests_rejected: IntCounterVec::new(
                Opts::new(
                    "aggregator_requests_rejected_total",
                    "Requests refused, by reason; a refused batch stores nothing.",
                ),
                &["reason"],
            )?,
            batch_records: Histogram::with_opts(
                HistogramOpts::new(
                    "aggregator_batch_records",
                    "Records per accepted POST /logs batch.",
                )
                .buckets(vec![
                    1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0,
                ]),
            )?,
            batch_commit: Histogram::with_opts(
                HistogramOpts::new(
                    "aggregator_batch_commit_duration_seconds",
                    "Time the writer took to store and commit one transaction (the batches queued since the last one).",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )?,
            records_stored: IntGauge::new(
                "aggregator_records_stored",
                "Records in the store now.",
            )?,
            records_pruned: IntCounter::new(
                "aggregator_records_pruned_total",
                "Records deleted by retention (age or count).",
            )?,
            query_duration: HistogramVec::new(
                HistogramOpts::new(
                    "aggregator_query_duration_seconds",
                    "Time the store took to answer a query, by kind.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
                &["kind"],
            )?,
            ingest_memory: IntGauge::new(
                "aggregator_ingest_memory_bytes",
                "Bytes of the ingest memory budget held by requests under way (bodies and parsed records).",
            )?,
            ingest_requests: IntGauge::new(
                "aggregator_ingest_requests",
                "POST /logs requests under way, bodies being read included.",
            )?,
        };
        registry.register(Box::new(m.records_ingested.clone()))?;
        registry.register(Box::new(m.records_duplicate.clone()))?;
        registry.register(Box::new(m.requests_rejected.clone()))?;
        registry.register(Box::new(m.batch_records.clone()))?;
        registry.register(Box::new(m.batch_commit.clone()))?;
        registry.register(Box::new(m.records_stored.clone()))?;
        registry.register(Box::new(m.records_pruned.clone()))?;
        registry.register(Box::new(m.query_duration.clone()))?;
        registry.register(Box::new(m.ingest_memory.clone()))?;
        registry.register(Box::new(m.ingest_requests.clone()))?;
        Ok(m)
    }

    pub fn reject(&self, reason: &str) {
        self.requests_rejected.with_label_values(&[reason]).inc();
    }
}
