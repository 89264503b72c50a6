//! The live feed behind `GET /logs/tail`, with a short memory so a tail can resume.
//!
//! One follower task reads the store's feed ([`crate::store::Store::subscribe`]) and
//! keeps the most recent records in a ring bounded by count and by bytes; every tail
//! reads the ring and subscribes to the hub under one lock, so a tail resuming after
//! `Last-Event-ID` gets exactly the records it missed, then the live ones, none twice.
//!
//! The follower starts with the first tail, so an aggregator nobody tails pays nothing
//! for it. Event ids name the hub's epoch (its start time), so an id from before a
//! restart is recognised as such rather than silently resumed from the wrong place.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast::{self, error::RecvError};

use crate::store::{Committed, CommittedRecord, RecordId, Store};

/// Records the ring keeps at most.
pub const RING_RECORDS: usize = 10_000;
/// Bytes of record bodies the ring keeps at most.
pub const RING_BYTES: usize = 16 << 20;
/// Hub messages a tail may lag behind before it must catch up from the ring.
pub const HUB_CAPACITY: usize = 256;

/// What the hub tells its tails.
#[derive(Debug, Clone)]
pub enum Event {
    /// Records of one commit, in id order.
    Records(Committed),
    /// The follower fell behind the store's feed and lost records: every tail misses
    /// them and is told so.
    Gap,
    /// The aggregator is stopping: every tail ends its stream, so that open tails do
    /// not hold up the stop for `SHUTDOWN_GRACE`.
    Closing,
}

/// The recent records, oldest first.
#[derive(Debug, Default)]
pub struct Ring {
    records: VecDeque<CommittedRecord>,
    bytes: usize,
    /// Every record committed after this id (since the follower started) is still in
    /// the ring; `None` until the first commit arrives (nothing missed yet).
    floor: Option<RecordId>,
    gap_pending: bool,
}

/// Where a tail resumes from the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// These records follow the id, in order (possibly none).
    From(Vec<CommittedRecord>),
    /// Records after the id may have been lost (evicted or never seen).
    Lost,
}

impl Ring {
    /// Adds one commit, evicting the oldest records past the bounds.
    pub fn push(&mut self, committed: &[CommittedRecord]) {
        if let Some(first) = committed.first() {
            if self.gap_pending || self.floor.is_none() {
                if self.gap_pending {
                    self.records.clear();
                    self.bytes = 0;
                }
                self.gap_pending = false;
                self.floor = Some(first.id - 1);
            }
        }
        for c in committed {
            self.bytes += c.record.body.len();
            self.records.push_back(c.clone());
        }
        while self.records.len() > RING_RECORDS || self.bytes > RING_BYTES {
            let Some(old) = self.records.pop_front() else {
                break;
            };
            self.bytes -= old.record.body.len();
            self.floor = Some(old.id);
        }
    }

    /// The follower lost records: nothing before the next commit can be resumed.
    pub fn gap(&mut self) {
        self.gap_pending = true;
    }

    /// The records after `id`, when the ring holds all of them.
    pub fn after(&self, id: RecordId) -> Resume {
        if self.gap_pending {
            return Resume::Lost;
        }
        match self.floor {
            // Nothing committed since the follower started.
            None => Resume::From(Vec::new()),
            Some(floor) if id >= floor => {
                Resume::From(self.records.iter().filter(|c| c.id > id).cloned().collect())
            }
            Some(_) => Resume::Lost,
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The hub: the ring, the broadcast to tails, and the follower's start.
pub struct Hub {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Event>,
    started: std::sync::Once,
    /// Set once by [`Hub::close`]; the Loki WebSocket tail watches it too.
    closed: tokio::sync::watch::Sender<bool>,
    /// Identifies this hub's event ids: its start time in microseconds.
    pub epoch: i64,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            ring: Mutex::new(Ring::default()),
            tx: broadcast::channel(HUB_CAPACITY).0,
            started: std::sync::Once::new(),
            closed: tokio::sync::watch::Sender::new(false),
            epoch: chrono::Utc::now().timestamp_micros(),
        }
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves a ring that is still consistent.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the follower once, on the runtime of the caller.
    pub fn start(self: &Arc<Hub>, store: &Store) {
        let hub = self.clone();
        let store = store.clone();
        self.started.call_once(move || {
            let mut feed = store.subscribe();
            actix_web::rt::spawn(async move {
                loop {
                    match feed.recv().await {
                        Ok(committed) => hub.publish(committed),
                        Err(RecvError::Lagged(_)) => hub.lost(),
                        Err(RecvError::Closed) => return,
                    }
                }
            });
        });
    }

    fn publish(&self, committed: Committed) {
        let mut ring = self.lock();
        ring.push(&committed);
        // Sent under the lock, so a tail that subscribes under it sees each commit
        // either in the ring or on the channel, never both, never neither.
        let _ = self.tx.send(Event::Records(committed));
    }

    fn lost(&self) {
        let mut ring = self.lock();
        ring.gap();
        let _ = self.tx.send(Event::Gap);
    }

    /// Ends every tail's stream: the aggregator is stopping.
    pub fn close(&self) {
        let _ring = self.lock();
        self.closed.send_replace(true);
        let _ = self.tx.send(Event::Closing);
    }

    /// Whether [`Hub::close`] was called; a new tail is refused then.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Tells a long-lived stream of another kind (the Loki tail) when the aggregator
    /// stops, so that it ends and does not hold up the stop.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Subscribes, and reads what followed `after` (when resuming) at the same instant.
    pub fn join(&self, after: Option<RecordId>) -> (broadcast::Receiver<Event>, Resume) {
        let ring = self.lock();
        let rx = self.tx.subscribe();
        let resume = match after {
            None => Resume::From(Vec::new()),
            Some(id) => ring.after(id),
        };
        (rx, resume)
    }

    /// What followed `id`, for a tail that lagged behind the hub.
    pub fn catch_up(&self, id: RecordId) -> Resume {
        self.lock().after(id)
    }
}

/// `Last-Event-ID` as the tail writes it: `<epoch>-<record id>`.
pub fn event_id(epoch: i64, id: RecordId) -> String {
    format!("{epoch}-{id}")
}

/// The record id of a `Last-Event-ID` of this epoch; `None` for another epoch or a text
/// that is not an id.
pub fn parse_event_id(epoch: i64, text: &str) -> Option<RecordId> {
    let (e, id) = text.trim().split_once('-')?;
    if e.parse::<i64>().ok()? != epoch {
        return None;
    }
    id.parse::<RecordId>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{parse, Received};

    fn rec(id: RecordId, body_len: usize) -> CommittedRecord {
        let text = format!("{{\"message\":\"{}\"}}", "x".repeat(body_len));
        CommittedRecord {
            id,
            record: parse(&text, &Received::now()).unwrap(),
        }
    }

    fn ids(r: Resume) -> Option<Vec<RecordId>> {
        match r {
            Resume::From(v) => Some(v.iter().map(|c| c.id).collect()),
            Resume::Lost => None,
        }
    }

    #[test]
    fn a_resume_gets_exactly_what_followed() {
        let mut ring = Ring::default();
        assert_eq!(ids(ring.after(5)), Some(vec![]));
        ring.push(&[rec(10, 1), rec(11, 1)]);
        ring.push(&[rec(14, 1)]);
        assert_eq!(ids(ring.after(9)), Some(vec![10, 11, 14]));
        assert_eq!(ids(ring.after(11)), Some(vec![14]));
        assert_eq!(ids(ring.after(14)), Some(vec![]));
        // Before the follower started: unknown.
        assert_eq!(ids(ring.after(3)), None);
    }

    #[test]
    fn the_ring_is_bounded_and_knows_what_it_dropped() {
        let mut ring = Ring::default();
        for i in 0..(RING_RECORDS as i64 + 10) {
            ring.push(&[rec(i + 1, 1)]);
        }
        assert_eq!(ring.len(), RING_RECORDS);
        assert_eq!(ids(ring.after(5)), None);
        assert_eq!(ids(ring.after(RING_RECORDS as i64 + 8)).unwrap().len(), 2);
        let mut ring = Ring::default();
        for i in 0..40 {
            ring.push(&[rec(i + 1, 1 << 20)]);
        }
        assert!(
            ring.bytes <= RING_BYTES && ring.len() < 17,
            "{}",
            ring.len()
        );
    }

    #[test]
    fn a_gap_loses_what_came_before_it() {
        let mut ring = Ring::default();
        ring.push(&[rec(1, 1), rec(2, 1)]);
        ring.gap();
        assert_eq!(ids(ring.after(2)), None);
        ring.push(&[rec(9, 1)]);
        assert_eq!(ids(ring.after(2)), None);
        assert_eq!(ids(ring.after(8)), Some(vec![9]));
        assert!(!ring.is_empty());
    }

    #[test]
    fn event_ids_carry_the_epoch() {
        let id = event_id(77, 12);
        assert_eq!(parse_event_id(77, &id), Some(12));
        assert_eq!(parse_event_id(78, &id), None);
        assert_eq!(parse_event_id(77, "12"), None);
        assert_eq!(parse_event_id(77, "77-x"), None);
    }
}
