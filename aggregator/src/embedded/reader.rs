//! The reader actors: each answers queries over the current [`View`] on its own thread.
//!
//! A view is immutable, so readers never lock anything the writer holds. Every read
//! carries a deadline: one still queued at its deadline is answered at once without
//! running, and a running one stops between row groups once it has passed. Queries
//! go to the reader with the fewest in hand, so a slow query holds up only its own
//! reader while another is free.
//!
//! [`View`]: super::memory::View

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::memory::SharedView;
use super::search;
use crate::metrics::Metrics;
use crate::query::LogQuery;
use crate::store::{Counts, Page, StoreError};

/// Queries waiting for one reader.
pub const READER_MAILBOX: usize = 64;

/// One page of `GET /logs`, stopped at `deadline`.
#[derive(Message)]
#[rtype(result = "Result<Page, StoreError>")]
pub struct Query {
    pub query: LogQuery,
    pub deadline: Instant,
    pub asked: Instant,
}

/// Records stored, by service and level.
#[derive(Message)]
#[rtype(result = "Result<Counts, StoreError>")]
pub struct Count {
    pub deadline: Instant,
    pub asked: Instant,
}

pub struct Reader {
    view: SharedView,
    metrics: Metrics,
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
        let given = msg.deadline.saturating_duration_since(msg.asked);
        if Instant::now() >= msg.deadline {
            return Err(StoreError::Timeout(given));
        }
        let start = Instant::now();
        let page = search::query(&self.view.get(), &msg.query, msg.deadline, given);
        self.metrics
            .query_duration
            .with_label_values(&["logs"])
            .observe(start.elapsed().as_secs_f64());
        page
    }
}

impl Handler<Count> for Reader {
    type Result = Result<Counts, StoreError>;

    fn handle(&mut self, msg: Count, _: &mut Context<Self>) -> Self::Result {
        if Instant::now() >= msg.deadline {
            return Err(StoreError::Timeout(
                msg.deadline.saturating_duration_since(msg.asked),
            ));
        }
        let start = Instant::now();
        let counts = search::counts(&self.view.get());
        self.metrics
            .query_duration
            .with_label_values(&["count"])
            .observe(start.elapsed().as_secs_f64());
        Ok(counts)
    }
}

/// The reader actors, each on its own arbiter.
#[derive(Clone)]
pub struct Readers {
    addrs: Arc<Vec<Addr<Reader>>>,
    in_hand: Arc<Vec<AtomicUsize>>,
}

/// A query in a reader's hands: counted until it is dropped.
pub struct Held {
    in_hand: Arc<Vec<AtomicUsize>>,
    index: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.in_hand[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Readers {
    pub fn start(n: usize, view: &SharedView, metrics: &Metrics) -> (Readers, Vec<Arbiter>) {
        let mut addrs = Vec::with_capacity(n);
        let mut arbiters = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let arbiter = Arbiter::new();
            let (view, metrics) = (view.clone(), metrics.clone());
            addrs.push(Reader::start_in_arbiter(&arbiter.handle(), move |_| {
                Reader { view, metrics }
            }));
            arbiters.push(arbiter);
        }
        let in_hand = addrs.iter().map(|_| AtomicUsize::new(0)).collect();
        (
            Readers {
                addrs: Arc::new(addrs),
                in_hand: Arc::new(in_hand),
            },
            arbiters,
        )
    }

    /// Whether every reader is alive.
    pub fn connected(&self) -> bool {
        self.addrs.iter().all(Addr::connected)
    }

    /// The reader with the fewest queries in hand.
    pub fn pick(&self) -> (&Addr<Reader>, Held) {
        let index = (0..self.addrs.len())
            .min_by_key(|&i| self.in_hand[i].load(Ordering::Relaxed))
            .unwrap_or(0);
        self.in_hand[index].fetch_add(1, Ordering::Relaxed);
        (
            &self.addrs[index],
            Held {
                in_hand: self.in_hand.clone(),
                index,
            },
        )
    }
}
