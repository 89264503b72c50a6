//! First actor of the pipeline: fetches `<APP_SERVICE_URL>/metrics` on a timer.
//!
//! Each tick sends one GET with the scrape timeout covering the whole exchange, reads
//! at most the body limit, and hands the outcome, good or bad, to the enricher with
//! `send().await`, so a slow enricher holds back the next scrape instead of piling up
//! bodies. At most one scrape is in flight: a tick that finds one running is skipped.
//! The actor is supervised; a restart rebuilds the HTTP client and starts the timer
//! again.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use actix_web::http::header;
use actix_web::web::Bytes;
use awc::error::{PayloadError, SendRequestError};

use crate::enricher::{Enricher, Scraped};
use crate::exposition::{Dialect, ExpositionError};
use crate::health::FailureKind;
use crate::supervision::{Fault, Restarts, Stage};

/// The scraper only receives its fault hook; the timer lives in its context.
pub const SCRAPER_MAILBOX: usize = 4;

/// Ask for the text format first, as Prometheus does; OpenMetrics is read too.
pub const ACCEPT: &str =
    "text/plain;version=0.0.4;q=1.0,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";

/// Why a scrape failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScrapeError {
    #[error("cannot connect to the target: {0}")]
    Connect(String),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("the target answered HTTP {0}")]
    HttpStatus(u16),
    #[error("the body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("reading the answer failed: {0}")]
    Read(String),
    #[error("invalid exposition: {0}")]
    Invalid(#[from] ExpositionError),
}

impl ScrapeError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ScrapeError::Connect(_) => FailureKind::Connect,
            ScrapeError::Timeout(_) => FailureKind::Timeout,
            ScrapeError::HttpStatus(_) => FailureKind::HttpStatus,
            ScrapeError::BodyTooLarge(_) => FailureKind::BodyTooLarge,
            ScrapeError::Read(_) => FailureKind::Read,
            ScrapeError::Invalid(_) => FailureKind::Invalid,
        }
    }
}

/// A body as the target sent it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub body: Bytes,
    pub dialect: Dialect,
}

/// Seconds since the Unix epoch, for the last-success gauge.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The HTTP client of the scraper; redirects are not followed, as Prometheus does not.
pub fn client(timeout: Duration) -> awc::Client {
    awc::Client::builder()
        .timeout(timeout)
        .disable_redirects()
        .finish()
}

/// One scrape: GET `url` within `timeout`, reading at most `limit` bytes of body.
pub async fn fetch(
    client: &awc::Client,
    url: &str,
    timeout: Duration,
    limit: usize,
) -> Result<Fetched, ScrapeError> {
    let exchange = async {
        let mut res = client
            .get(url)
            .insert_header((header::ACCEPT, ACCEPT))
            .send()
            .await
            .map_err(|e| match e {
                SendRequestError::Timeout => ScrapeError::Timeout(timeout),
                SendRequestError::Connect(e) => ScrapeError::Connect(e.to_string()),
                other => ScrapeError::Read(other.to_string()),
            })?;
        if !res.status().is_success() {
            return Err(ScrapeError::HttpStatus(res.status().as_u16()));
        }
        let dialect = Dialect::from_content_type(
            res.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        let body = res.body().limit(limit).await.map_err(|e| match e {
            PayloadError::Overflow => ScrapeError::BodyTooLarge(limit),
            other => ScrapeError::Read(other.to_string()),
        })?;
        Ok(Fetched { body, dialect })
    };
    // The client's own timeout covers the head of the answer; this one the whole of it.
    match actix_rt::time::timeout(timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ScrapeError::Timeout(timeout)),
    }
}

/// Scrapes the target on a timer and sends each outcome to the enricher.
pub struct Scraper {
    url: String,
    interval: Duration,
    timeout: Duration,
    limit: usize,
    client: awc::Client,
    enricher: Addr<Enricher>,
    in_flight: bool,
    restarts: Arc<Restarts>,
}

impl Scraper {
    pub fn new(
        url: String,
        interval: Duration,
        timeout: Duration,
        limit: usize,
        enricher: Addr<Enricher>,
        restarts: Arc<Restarts>,
    ) -> Scraper {
        Scraper {
            url,
            interval,
            timeout,
            limit,
            client: client(timeout),
            enricher,
            in_flight: false,
            restarts,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            log::debug!(url = self.url.as_str(); "Skipped a scrape: the previous one is still running.");
            return;
        }
        self.in_flight = true;
        let (client, url, enricher) =
            (self.client.clone(), self.url.clone(), self.enricher.clone());
        let (timeout, limit) = (self.timeout, self.limit);
        let scrape = async move {
            let started = Instant::now();
            let fetched = fetch(&client, &url, timeout, limit).await;
            let scraped = Scraped {
                fetched,
                fetch_time: started.elapsed(),
                finished_unix: unix_now(),
            };
            enricher.send(scraped).await
        };
        ctx.spawn(scrape.into_actor(self).map(|sent, act, ctx| {
            act.in_flight = false;
            if let Err(e) = sent {
                log::error!(error = e.to_string().as_str(); "Cannot hand a scrape to the enricher; restarting.");
                ctx.stop();
            }
        }));
    }
}

impl Actor for Scraper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(SCRAPER_MAILBOX);
        self.tick(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}

impl Supervised for Scraper {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The scrape in flight was cancelled with the old context; start afresh.
        self.restarts.record(Stage::Scraper);
        self.in_flight = false;
        self.client = client(self.timeout);
    }
}

impl Handler<Fault> for Scraper {
    type Result = ();

    fn handle(&mut self, _: Fault, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
