//! Last actor of the pipeline: owns the latest snapshot and the scrape's health.
//!
//! `GET /metrics` asks it to [`Render`]: the answer is the held snapshot (a cheap clone
//! of its bytes) and the sidecar's own families, rendered fresh. It never waits for a
//! scrape, because scraping and relabeling happen in the other two actors. A failed
//! scrape keeps the last good snapshot, served with `up` 0, until it is older than the
//! staleness limit; then it is dropped and only the sidecar's own families remain. The
//! logic is the plain [`Store`]; the actor wraps it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web::Bytes;
use serde::Serialize;

use crate::enricher::ScrapeReport;
use crate::health::{self, ScrapeHealth, Served};
use crate::supervision::{Fault, Restarts, Stage};

/// Requests from the HTTP workers queue here; a full mailbox makes them wait.
pub const EXPOSER_MAILBOX: usize = 256;

/// The target's samples held for serving.
#[derive(Debug, Clone)]
struct Held {
    bytes: Bytes,
    samples: u64,
    taken: Instant,
}

/// The snapshot and the health of the scrapes, without any runtime.
#[derive(Debug)]
pub struct Store {
    health: ScrapeHealth,
    held: Option<Held>,
    staleness_limit: Duration,
    /// The added labels, as the relabeler writes them, for the sidecar's own families.
    labels: Vec<u8>,
}

/// What `GET /metrics` serves: the target's part and the sidecar's own.
#[derive(Debug, Clone, MessageResponse)]
pub struct Rendered {
    pub target: Bytes,
    pub own: Bytes,
}

/// What `GET /health` reports about the scrape.
#[derive(Debug, Clone, PartialEq, Serialize, MessageResponse)]
pub struct Status {
    pub target_up: bool,
    pub consecutive_failures: u64,
    pub snapshot_samples: u64,
    pub last_success_unix: Option<f64>,
}

impl Store {
    pub fn new(staleness_limit: Duration, labels: Vec<u8>) -> Store {
        Store {
            health: ScrapeHealth::default(),
            held: None,
            staleness_limit,
            labels,
        }
    }

    pub fn health(&self) -> &ScrapeHealth {
        &self.health
    }

    /// Takes in a scrape's outcome; a failure leaves the held snapshot in place.
    pub fn publish(&mut self, report: ScrapeReport, now: Instant) {
        let first = self.health.scrapes == 0;
        match report.outcome {
            Ok(snapshot) => {
                if !first && !self.health.up {
                    log::info!(
                        failures = self.health.consecutive_failures;
                        "Target is up again."
                    );
                }
                self.health.record_success(
                    report.duration,
                    snapshot.stats.samples,
                    snapshot.stats.skipped_samples,
                    report.finished_unix,
                );
                self.held = Some(Held {
                    bytes: snapshot.bytes,
                    samples: snapshot.stats.samples,
                    taken: now,
                });
            }
            Err(error) => {
                let kind = error.kind();
                if first || self.health.up {
                    log::warn!(
                        error_type = kind.as_str(),
                        error = error.to_string().as_str();
                        "Scrape failed; serving the last good samples until they are stale."
                    );
                } else {
                    log::debug!(error = error.to_string().as_str(); "Scrape failed again.");
                }
                self.health.record_failure(report.duration, kind);
            }
        }
    }

    /// Drops the held snapshot once it is older than the staleness limit.
    fn expire(&mut self, now: Instant) {
        let stale = self
            .held
            .as_ref()
            .is_some_and(|h| now.saturating_duration_since(h.taken) > self.staleness_limit);
        if stale {
            self.held = None;
            self.health.stale_drops += 1;
            log::warn!(
                staleness_limit_s = self.staleness_limit.as_secs_f64();
                "Dropped the last good samples: older than the staleness limit."
            );
        }
    }

    fn served(&self, now: Instant) -> Served {
        Served {
            samples: self.held.as_ref().map_or(0, |h| h.samples),
            age: self
                .held
                .as_ref()
                .map(|h| now.saturating_duration_since(h.taken)),
        }
    }

    pub fn render(&mut self, now: Instant, restarts: &Restarts) -> Rendered {
        self.expire(now);
        let mut own = Vec::with_capacity(4096);
        health::render(
            &self.health,
            self.served(now),
            restarts,
            &self.labels,
            &mut own,
        );
        Rendered {
            target: self
                .held
                .as_ref()
                .map(|h| h.bytes.clone())
                .unwrap_or_default(),
            own: Bytes::from(own),
        }
    }

    pub fn status(&mut self, now: Instant) -> Status {
        self.expire(now);
        Status {
            target_up: self.health.up,
            consecutive_failures: self.health.consecutive_failures,
            snapshot_samples: self.served(now).samples,
            last_success_unix: self.health.last_success_unix,
        }
    }
}

/// A scrape report from the enricher.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Publish(pub ScrapeReport);

/// Asks for the body of `GET /metrics`.
#[derive(Debug, Message)]
#[rtype(result = "Rendered")]
pub struct Render;

/// Asks for the scrape's status, for `GET /health`.
#[derive(Debug, Message)]
#[rtype(result = "Status")]
pub struct GetStatus;

/// Owns the [`Store`].
pub struct Exposer {
    store: Store,
    restarts: Arc<Restarts>,
}

impl Exposer {
    pub fn new(store: Store, restarts: Arc<Restarts>) -> Exposer {
        Exposer { store, restarts }
    }
}

impl Actor for Exposer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(EXPOSER_MAILBOX);
    }
}

impl Supervised for Exposer {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The store is kept on purpose: a restart must not lose the snapshot.
        self.restarts.record(Stage::Exposer);
    }
}

impl Handler<Publish> for Exposer {
    type Result = ();

    fn handle(&mut self, msg: Publish, _ctx: &mut Context<Self>) {
        self.store.publish(msg.0, Instant::now());
    }
}

impl Handler<Render> for Exposer {
    type Result = Rendered;

    fn handle(&mut self, _: Render, _ctx: &mut Context<Self>) -> Rendered {
        self.store.render(Instant::now(), &self.restarts)
    }
}

impl Handler<GetStatus> for Exposer {
    type Result = Status;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Status {
        self.store.status(Instant::now())
    }
}

impl Handler<Fault> for Exposer {
    type Result = ();

    fn handle(&mut self, _: Fault, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enricher::Snapshot;
    use crate::relabel::RelabelStats;
    use crate::scraper::ScrapeError;

    fn good(samples: u64) -> ScrapeReport {
        ScrapeReport {
            outcome: Ok(Snapshot {
                bytes: Bytes::from_static(b"a{x=\"1\"} 1\n"),
                stats: RelabelStats {
                    samples,
                    ..RelabelStats::default()
                },
            }),
            duration: Duration::from_millis(2),
            finished_unix: 100.0,
        }
    }

    fn bad() -> ScrapeReport {
        ScrapeReport {
            outcome: Err(ScrapeError::HttpStatus(500)),
            duration: Duration::from_millis(1),
            finished_unix: 101.0,
        }
    }

    #[test]
    fn a_failure_keeps_the_snapshot_until_it_is_stale() {
        let restarts = Restarts::default();
        let mut store = Store::new(Duration::from_secs(30), b"s=\"1\"".to_vec());
        let t0 = Instant::now();
        store.publish(good(1), t0);
        store.publish(bad(), t0 + Duration::from_secs(10));
        let r = store.render(t0 + Duration::from_secs(20), &restarts);
        assert_eq!(&r.target[..], b"a{x=\"1\"} 1\n");
        let own = String::from_utf8(r.own.to_vec()).unwrap();
        assert!(own.contains("metrics_sidecar_up{s=\"1\"} 0\n"), "{own}");
        assert!(own.contains("metrics_sidecar_snapshot_age_seconds{s=\"1\"} 20\n"));

        let r = store.render(t0 + Duration::from_secs(31), &restarts);
        assert!(r.target.is_empty());
        let own = String::from_utf8(r.own.to_vec()).unwrap();
        assert!(own.contains("metrics_sidecar_stale_snapshots_dropped_total{s=\"1\"} 1\n"));
        assert!(own.contains("metrics_sidecar_snapshot_samples{s=\"1\"} 0\n"));
        assert_eq!(
            store
                .status(t0 + Duration::from_secs(32))
                .consecutive_failures,
            1
        );

        store.publish(good(1), t0 + Duration::from_secs(40));
        let status = store.status(t0 + Duration::from_secs(41));
        assert!(status.target_up);
        assert_eq!(status.snapshot_samples, 1);
    }
}
