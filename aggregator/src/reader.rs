//! The reader actors: each owns one read connection on its own thread.
//!
//! WAL mode lets them read while the writer commits, so a slow query never holds up a
//! batch. [`Readers`] hands queries round-robin to a fixed set of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::metrics::Metrics;
use crate::query::LogQuery;
use crate::store::{Counts, Page, Store, StoreError};

/// Queries waiting for one reader.
pub const READER_MAILBOX: usize = 64;

/// One page of `GET /logs`.
#[derive(Message)]
#[rtype(result = "Result<Page, StoreError>")]
pub struct Query(pub LogQuery);

/// Records stored, by service and level.
#[derive(Message)]
#[rtype(result = "Result<Counts, StoreError>")]
pub struct Count;

pub struct Reader {
    pub(crate) store: Store,
    pub(crate) metrics: Metrics,
}

impl Actor for Reader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(READER_MAILBOX);
    }
}

impl Handler<Query> for Reader {
    type Result = Result<Page, StoreError>;

    fn handle(&mut self, msg: Query, _: &mut Context<Self>) -> Self::Result {
        let start = Instant::now();
        let page = self.store.query(&msg.0);
        self.metrics
            .query_duration
            .with_label_values(&["logs"])
            .observe(start.elapsed().as_secs_f64());
        page
    }
}

impl Handler<Count> for Reader {
    type Result = Result<Counts, StoreError>;

    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> Self::Result {
        let start = Instant::now();
        let counts = self.store.counts();
        self.metrics
            .query_duration
            .with_label_values(&["count"])
            .observe(start.elapsed().as_secs_f64());
        counts
    }
}

/// The reader actors, each on its own arbiter, used in turn.
#[derive(Clone)]
pub struct Readers {
    addrs: Arc<Vec<Addr<Reader>>>,
    next: Arc<AtomicUsize>,
}

impl Readers {
    /// Starts one reader per store on its own arbiter; the arbiters are returned so that
    /// shutdown can stop them.
    pub fn start(stores: Vec<Store>, metrics: &Metrics) -> (Readers, Vec<Arbiter>) {
        let mut addrs = Vec::with_capacity(stores.len());
        let mut arbiters = Vec::with_capacity(stores.len());
        for store in stores {
            let arbiter = Arbiter::new();
            let metrics = metrics.clone();
            addrs.push(Reader::start_in_arbiter(&arbiter.handle(), move |_| {
                Reader { store, metrics }
            }));
            arbiters.push(arbiter);
        }
        (
            Readers {
                addrs: Arc::new(addrs),
                next: Arc::new(AtomicUsize::new(0)),
            },
            arbiters,
        )
    }

    /// The next reader in turn.
    pub fn pick(&self) -> &Addr<Reader> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.addrs.len();
        &self.addrs[i]
    }
}
