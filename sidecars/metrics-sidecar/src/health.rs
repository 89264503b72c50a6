//! The health of the scrape itself, and its rendering as the sidecar's own metrics.
//!
//! The exposer keeps one [`ScrapeHealth`] and updates it with every scrape report; each
//! `GET /metrics` renders it next to the target's samples. The families all start with
//! [`OWN_PREFIX`], which the relabeler keeps out of the target's output, so they can
//! never be duplicated; they carry the same added labels as the target's samples.

use std::io::Write;
use std::time::Duration;

use crate::supervision::{Restarts, Stage};

/// The prefix of every family the sidecar reports about itself.
pub const OWN_PREFIX: &str = "metrics_sidecar_";

/// Why a scrape failed, as the `error_type` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The target could not be reached.
    Connect,
    /// No complete answer within the scrape timeout.
    Timeout,
    /// The target answered with a status other than 2xx.
    HttpStatus,
    /// The body was larger than the limit.
    BodyTooLarge,
    /// The connection failed while the body was read.
    Read,
    /// The body is not a valid exposition.
    Invalid,
}

impl FailureKind {
    pub const ALL: [FailureKind; 6] = [
        FailureKind::Connect,
        FailureKind::Timeout,
        FailureKind::HttpStatus,
        FailureKind::BodyTooLarge,
        FailureKind::Read,
        FailureKind::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::HttpStatus => "http_status",
            FailureKind::BodyTooLarge => "body_too_large",
            FailureKind::Read => "read",
            FailureKind::Invalid => "invalid_exposition",
        }
    }
}

/// Counters and gauges about the scrapes so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScrapeHealth {
    pub up: bool,
    pub last_duration: Duration,
    /// Samples in the latest scrape: 0 when it failed, as Prometheus counts them.
    pub last_samples: u64,
    pub last_success_unix: Option<f64>,
    pub consecutive_failures: u64,
    pub scrapes: u64,
    pub failures: [u64; FailureKind::ALL.len()],
    pub skipped_samples: u64,
    pub stale_drops: u64,
}

impl ScrapeHealth {
    pub fn record_success(&mut self, duration: Duration, samples: u64, skipped: u64, unix: f64) {
        self.scrapes += 1;
        self.up = true;
        self.last_duration = duration;
        self.last_samples = samples;
        self.last_success_unix = Some(unix);
        self.consecutive_failures = 0;
        self.skipped_samples += skipped;
    }

    pub fn record_failure(&mut self, duration: Duration, kind: FailureKind) {
        self.scrapes += 1;
        self.up = false;
        self.last_duration = duration;
        self.last_samples = 0;
        self.consecutive_failures += 1;
        self.failures[kind as usize] += 1;
    }

    pub fn failures_of(&self, kind: FailureKind) -> u64 {
        self.failures[kind as usize]
    }
}

/// What the exposer currently serves of the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Served {
    pub samples: u64,
    pub age: Option<Duration>,
}

/// Writes the sidecar's own families; `labels` is the added label text (`a="b",...`).
pub fn render(
    health: &ScrapeHealth,
    served: Served,
    restarts: &Restarts,
    labels: &[u8],
    out: &mut Vec<u8>,
) {
    let labels = String::from_utf8_lossy(labels);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {OWN_PREFIX}{name} {help}");
        let _ = writeln!(out, "# TYPE {OWN_PREFIX}{name} {kind}");
        for (extra, value) in samples {
            let _ = writeln!(out, "{OWN_PREFIX}{name}{{{extra}{labels}}} {value}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    family(
        "up",
        "gauge",
        "1 when the latest scrape of the target succeeded, 0 otherwise.",
        &one(if health.up { 1.0 } else { 0.0 }),
    );
    family(
        "scrape_duration_seconds",
        "gauge",
        "Time the latest scrape took, fetching and relabeling.",
        &one(health.last_duration.as_secs_f64()),
    );
    family(
        "scrape_samples",
        "gauge",
        "Samples in the latest scrape; 0 when it failed.",
        &one(health.last_samples as f64),
    );
    family(
        "last_success_timestamp_seconds",
        "gauge",
        "Unix time of the latest successful scrape; 0 before the first.",
        &one(health.last_success_unix.unwrap_or(0.0)),
    );
    family(
        "consecutive_failures",
        "gauge",
        "Scrapes that failed since the latest success.",
        &one(health.consecutive_failures as f64),
    );
    family(
        "scrapes_total",
        "counter",
        "Scrapes attempted.",
        &one(health.scrapes as f64),
    );
    let failures: Vec<(String, f64)> = FailureKind::ALL
        .iter()
        .map(|k| {
            (
                format!("error_type=\"{}\",", k.as_str()),
                health.failures_of(*k) as f64,
            )
        })
        .collect();
    family(
        "scrape_failures_total",
        "counter",
        "Failed scrapes, by cause.",
        &failures,
    );
    family(
        "skipped_samples_total",
        "counter",
        "Target samples not re-exposed: in families named like the sidecar's own, or OpenMetrics _created samples.",
        &one(health.skipped_samples as f64),
    );
    family(
        "snapshot_samples",
        "gauge",
        "Target samples served now; 0 when none or when the last good ones went stale.",
        &one(served.samples as f64),
    );
    family(
        "snapshot_age_seconds",
        "gauge",
        "Age of the target samples served now; absent when none are served.",
        &served
            .age
            .map(|a| vec![(String::new(), a.as_secs_f64())])
            .unwrap_or_default(),
    );
    family(
        "stale_snapshots_dropped_total",
        "counter",
        "Times the last good samples were dropped for being older than the staleness limit.",
        &one(health.stale_drops as f64),
    );
    let restarted: Vec<(String, f64)> = Stage::ALL
        .iter()
        .map(|s| {
            (
                format!("actor=\"{}\",", s.as_str()),
                restarts.get(*s) as f64,
            )
        })
        .collect();
    family(
        "actor_restarts_total",
        "counter",
        "Restarts of the pipeline's actors by their supervisors.",
        &restarted,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_successes() {
        let mut h = ScrapeHealth::default();
        h.record_failure(Duration::from_millis(5), FailureKind::Timeout);
        h.record_failure(Duration::from_millis(5), FailureKind::Timeout);
        assert_eq!(h.consecutive_failures, 2);
        assert!(!h.up);
        h.record_success(Duration::from_millis(3), 10, 0, 1.5);
        assert_eq!(h.consecutive_failures, 0);
        assert_eq!(h.failures_of(FailureKind::Timeout), 2);
        assert_eq!(h.scrapes, 3);

        let mut out = Vec::new();
        let served = Served {
            samples: 10,
            age: None,
        };
        render(
            &h,
            served,
            &Restarts::default(),
            b"sidecar=\"true\"",
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("metrics_sidecar_up{sidecar=\"true\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "metrics_sidecar_scrape_failures_total{error_type=\"timeout\",sidecar=\"true\"} 2\n"
        ));
        assert!(
            text.contains("metrics_sidecar_last_success_timestamp_seconds{sidecar=\"true\"} 1.5\n")
        );
        assert!(!text.contains("metrics_sidecar_snapshot_age_seconds{"));
    }
}
