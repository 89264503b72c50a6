//! The reader actors: each owns one read connection on its own thread.
//!
//! WAL mode lets them read while the writer commits, so a slow query never holds up a
//! batch. Every read carries a deadline: a read still queued at its deadline is answered
//! at once without running, and a running one is interrupted by SQLite's progress
//! handler, so a reader is never busy with one query for longer than its limit.
//! [`Readers`] hands each query to the reader with the fewest queries in hand, so a slow
//! query holds up only the reader it runs on while another is free.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::db::{Db, DbError};
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
    /// When it was asked, to say how long it was given.
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
    store: Db,
    metrics: Metrics,
}

impl Reader {
    /// Runs `read` on the connection with the deadline set; the timeout answer names the
    /// time the query was given.
    fn within<T>(
        &mut self,
        kind: &str,
        asked: Instant,
        deadline: Instant,
        read: impl FnOnce(&Db) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        let given = deadline.saturating_duration_since(asked);
        if Instant::now() >= deadline {
            return Err(StoreError::Timeout(given));
        }
        let start = Instant::now();
        self.store.set_deadline(Some(deadline));
        let result = read(&self.store);
        self.store.set_deadline(None);
        self.metrics
            .query_duration
            .with_label_values(&[kind])
            .observe(start.elapsed().as_secs_f64());
        result.map_err(|e| {
            if e.is_interrupt() {
                StoreError::Timeout(given)
            } else {
                e.into()
            }
        })
    }
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
        self.within("logs", msg.asked, msg.deadline, |db| db.query(&msg.query))
    }
}

impl Handler<Count> for Reader {
    type Result = Result<Counts, StoreError>;

    fn handle(&mut self, msg: Count, _: &mut Context<Self>) -> Self::Result {
        self.within("count", msg.asked, msg.deadline, Db::counts)
    }
}

/// The reader actors, each on its own arbiter.
#[derive(Clone)]
pub struct Readers {
    addrs: Arc<Vec<Addr<Reader>>>,
    /// Queries handed to each reader and not answered yet.
    in_hand: Arc<Vec<AtomicUsize>>,
}

/// A query in a reader's hands: counted until it is dropped (answered or abandoned).
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
    /// Starts one reader per connection on its own arbiter; the arbiters are returned so
    /// that shutdown can stop them.
    pub fn start(stores: Vec<Db>, metrics: &Metrics) -> (Readers, Vec<Arbiter>) {
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

    /// The reader with the fewest queries in hand, counted as holding one more until the
    /// returned guard is dropped.
    pub fn pick(&self) -> (&Addr<Reader>, Held) {
        let index = (0..self.addrs.len())
            .min_by_key(|&i| self.in_hand[i].load(Ordering::Relaxed))
            .unwrap_or(0);
        self.in_hand[index].fetch_add(1, Ordering::Relaxed);
        let held = Held {
            in_hand: self.in_hand.clone(),
            index,
        };
        (&self.addrs[index], held)
    }
}
