//! Second actor of the pipeline: parses and relabels each scraped body.
//!
//! It runs on an arbiter (thread) of its own, so that parsing a large body never delays
//! an answer of the exposer. The work is the plain function [`enrich`]; the actor only
//! times it and passes the report on to the exposer with `send().await`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web::Bytes;

use crate::exposer::{Exposer, Publish};
use crate::relabel::{RelabelStats, Relabeler};
use crate::scraper::{Fetched, ScrapeError};
use crate::supervision::{Fault, Restarts, Stage};

/// One scrape waits here while the previous one is relabeled.
pub const ENRICHER_MAILBOX: usize = 2;

/// A scrape's outcome, from the scraper.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Scraped {
    pub fetched: Result<Fetched, ScrapeError>,
    pub fetch_time: Duration,
    pub finished_unix: f64,
}

/// The target's samples, relabeled and rendered, ready to serve.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub bytes: Bytes,
    pub stats: RelabelStats,
}

/// A scrape's outcome after relabeling, for the exposer.
#[derive(Debug, Clone)]
pub struct ScrapeReport {
    pub outcome: Result<Snapshot, ScrapeError>,
    /// Fetching plus relabeling.
    pub duration: Duration,
    pub finished_unix: f64,
}

/// Relabels a fetched body into a snapshot.
pub fn enrich(relabeler: &Relabeler, fetched: &Fetched) -> Result<Snapshot, ScrapeError> {
    // The added labels roughly double a typical line; one reservation avoids regrowth.
    let mut out = Vec::with_capacity(fetched.body.len() * 2 + 1024);
    let stats = relabeler.relabel(&fetched.body, fetched.dialect, &mut out)?;
    // The snapshot is held for a whole interval: give back the unused reservation.
    out.shrink_to_fit();
    Ok(Snapshot {
        bytes: Bytes::from(out),
        stats,
    })
}

/// Turns scraped bodies into snapshots.
pub struct Enricher {
    relabeler: Relabeler,
    exposer: Addr<Exposer>,
    restarts: Arc<Restarts>,
}

impl Enricher {
    pub fn new(relabeler: Relabeler, exposer: Addr<Exposer>, restarts: Arc<Restarts>) -> Enricher {
        Enricher {
            relabeler,
            exposer,
            restarts,
        }
    }
}

impl Actor for Enricher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(ENRICHER_MAILBOX);
    }
}

impl Supervised for Enricher {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Nothing to reopen: the relabeler holds no state between scrapes.
        self.restarts.record(Stage::Enricher);
    }
}

impl Handler<Scraped> for Enricher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Scraped, _ctx: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        let outcome = msg
            .fetched
            .and_then(|fetched| enrich(&self.relabeler, &fetched));
        let report = ScrapeReport {
            outcome,
            duration: msg.fetch_time + started.elapsed(),
            finished_unix: msg.finished_unix,
        };
        let exposer = self.exposer.clone();
        Box::pin(async move {
            if let Err(e) = exposer.send(Publish(report)).await {
                log::error!(error = e.to_string().as_str(); "Cannot hand a snapshot to the exposer.");
            }
        })
    }
}

impl Handler<Fault> for Enricher {
    type Result = ();

    fn handle(&mut self, _: Fault, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
