//! The sidecar's own Prometheus metrics and readiness, shared by the actors and `/metrics`.
//!
//! Counters are bumped once per chunk or batch, never per line, so they cost nothing on
//! the hot path. Readiness is two flags the actors set and `/health` reads.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric of the pipeline.
#[derive(Clone)]
pub struct Metrics {
    pub lines_read: IntCounter,
    pub read_bytes: IntCounter,
    pub lines_not_json: IntCounter,
    pub lines_invalid_utf8: IntCounter,
    pub lines_truncated: IntCounter,
    pub lines_rejected: IntCounter,
    pub lines_blank: IntCounter,
    pub records_isolated: IntCounter,
    pub batch_splits: IntCounter,
    pub records_forwarded: IntCounter,
    pub forwarded_bytes: IntCounter,
    pub batches_sent: IntCounter,
    pub batch_failures: IntCounterVec,
    pub retries: IntCounter,
    pub duplicates_reported: IntCounter,
    pub batches_in_flight: IntGauge,
    pub lag_bytes: IntGaugeVec,
    pub files_tracked: IntGauge,
    pub files_open: IntGauge,
    pub open_file_limit: IntCounterVec,
    pub parked_lost_bytes: IntCounter,
    pub ack_latency: Histogram,
    pub checkpoint_writes: IntCounter,
    pub checkpoint_errors: IntCounter,
    pub actor_restarts: IntCounterVec,
    pub rotations: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(format!("logging_sidecar_{name}"), help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(format!("logging_sidecar_{name}"), help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let lag_bytes = IntGaugeVec::new(
            Opts::new(
                "logging_sidecar_lag_bytes",
                "Bytes of a file not yet acknowledged by the aggregator.",
            ),
            &["path"],
        )?;
        registry.register(Box::new(lag_bytes.clone()))?;
        let batches_in_flight = IntGauge::new(
            "logging_sidecar_batches_in_flight",
            "Closed batches not yet acknowledged.",
        )?;
        registry.register(Box::new(batches_in_flight.clone()))?;
        let files_tracked = IntGauge::new(
            "logging_sidecar_files_tracked",
            "Files the tailer holds, rotated ones included.",
        )?;
        registry.register(Box::new(files_tracked.clone()))?;
        let files_open = IntGauge::new(
            "logging_sidecar_files_open",
            "Files the tailer holds open (at most MAX_OPEN_FILES after each discovery).",
        )?;
        registry.register(Box::new(files_open.clone()))?;
        let ack_latency = Histogram::with_opts(
            HistogramOpts::new(
                "logging_sidecar_ack_latency_seconds",
                "From closing a batch to the aggregator's acknowledgement, retries included.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ]),
        )?;
        registry.register(Box::new(ack_latency.clone()))?;
        Ok(Metrics {
            lines_read: counter(registry, "lines_read_total", "Lines read from files.")?,
            read_bytes: counter(registry, "read_bytes_total", "Bytes read from files.")?,
            lines_not_json: counter(
                registry,
                "lines_not_json_total",
                "Lines forwarded as a message because they were not a JSON object.",
            )?,
            lines_invalid_utf8: counter(
                registry,
                "lines_invalid_utf8_total",
                "Lines whose invalid UTF-8 was replaced.",
            )?,
            lines_truncated: counter(
                registry,
                "lines_truncated_total",
                "Lines cut at MAX_LINE_BYTES.",
            )?,
            lines_rejected: counter(
                registry,
                "lines_rejected_total",
                "JSON object lines the aggregator's record rules refuse (a number out of range, a lone surrogate, a non-string event_id), forwarded as a message instead.",
            )?,
            lines_blank: counter(
                registry,
                "lines_blank_total",
                "Empty or whitespace-only lines, skipped (not forwarded).",
            )?,
            records_isolated: counter(
                registry,
                "records_isolated_total",
                "Records the aggregator refused one by one, re-sent as a message carrying their text.",
            )?,
            batch_splits: counter(
                registry,
                "batch_splits_total",
                "Batches the aggregator refused for their content, split in two to find the records it refuses.",
            )?,
            records_forwarded: counter(
                registry,
                "records_forwarded_total",
                "Records acknowledged by the aggregator.",
            )?,
            forwarded_bytes: counter(
                registry,
                "forwarded_bytes_total",
                "Request body bytes acknowledged by the aggregator (after gzip).",
            )?,
            batches_sent: counter(
                registry,
                "batches_sent_total",
                "Batches acknowledged by the aggregator.",
            )?,
            batch_failures: counter_vec(
                registry,
                "batch_failures_total",
                "POSTs that failed and will be retried, by error type.",
                &["error_type"],
            )?,
            retries: counter(registry, "retries_total", "POSTs that were retries.")?,
            duplicates_reported: counter(
                registry,
                "duplicates_reported_total",
                "Records the aggregator already held (re-sends recognised by event_id).",
            )?,
            batches_in_flight,
            lag_bytes,
            files_tracked,
            files_open,
            open_file_limit: counter_vec(
                registry,
                "open_file_limit_total",
                "What MAX_OPEN_FILES made the tailer do, by action: released (a rotated file done, closed before ROTATE_WAIT), parked (closed, position kept), reopened, lost (a parked file not found again).",
                &["action"],
            )?,
            parked_lost_bytes: counter(
                registry,
                "parked_lost_bytes_total",
                "Bytes known unread in parked files that were not found again (deleted or moved away while parked).",
            )?,
            ack_latency,
            checkpoint_writes: counter(
                registry,
                "checkpoint_writes_total",
                "Checkpoint files written.",
            )?,
            checkpoint_errors: counter(
                registry,
                "checkpoint_errors_total",
                "Checkpoint writes that failed (retried at the next interval).",
            )?,
            actor_restarts: counter_vec(
                registry,
                "actor_restarts_total",
                "Actors restarted by their supervisor.",
                &["actor"],
            )?,
            rotations: counter_vec(
                registry,
                "rotations_total",
                "Rotations seen, by kind (rename, truncate).",
                &["kind"],
            )?,
        })
    }
}

/// What `/health` needs to know.
#[derive(Debug, Default)]
pub struct Readiness {
    tailing: AtomicBool,
    aggregator_answered: AtomicBool,
}

impl Readiness {
    pub fn set_tailing(&self) {
        self.tailing.store(true, Ordering::Relaxed);
    }

    pub fn set_aggregator_answered(&self) {
        self.aggregator_answered.store(true, Ordering::Relaxed);
    }

    pub fn aggregator_answered(&self) -> bool {
        self.aggregator_answered.load(Ordering::Relaxed)
    }

    /// `Err(reason)` until both the tailer runs and the aggregator has answered once.
    pub fn check(&self) -> Result<(), &'static str> {
        if !self.tailing.load(Ordering::Relaxed) {
            Err("the tailer has not started yet")
        } else if !self.aggregator_answered.load(Ordering::Relaxed) {
            Err("the aggregator has not answered yet")
        } else {
            Ok(())
        }
    }
}
