//! Who may ingest now: how many `POST /logs` requests are under way, overall and per
//! client, and how much memory their bodies and records hold.
//!
//! Both are plain structs with guards that give back what they hold when dropped, so a
//! request that fails anywhere, or whose client goes away, leaves nothing taken. The
//! guards are `'static` (they hold an `Arc`): the handler moves them into the task that
//! waits for the writer, so a batch stays counted until the writer has answered it,
//! even when its client disconnected meanwhile.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::IntGauge;

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{limit} ingest requests are already under way; retry later")]
    Overall { limit: usize },
    #[error("this client already has {limit} ingest requests under way; wait for their answers")]
    PerClient { limit: usize },
}

/// Counts the ingest requests under way, overall and per client address.
#[derive(Debug)]
pub struct Admission {
    max_overall: usize,
    max_per_client: usize,
    /// Requests under way per client; an entry leaves the map when its count reaches 0,
    /// so the map never holds more than `max_overall` entries.
    under_way: Mutex<(usize, HashMap<IpAddr, usize>)>,
    /// Shows the requests under way on `/metrics`.
    gauge: IntGauge,
}

/// One admitted request; dropping it lets the next one in.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    client: Option<IpAddr>,
}

impl Admission {
    pub fn new(max_overall: usize, max_per_client: usize, gauge: IntGauge) -> Arc<Admission> {
        Arc::new(Admission {
            max_overall,
            max_per_client,
            under_way: Mutex::new((0, HashMap::new())),
            gauge,
        })
    }

    /// Lets a request in, or says which limit it would pass. A request whose peer
    /// address is unknown counts only against the overall limit.
    pub fn enter(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Admitted, Refused> {
        let mut guard = self.under_way.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_client) = &mut *guard;
        // The client's own limit first: a client past it is told that it is the cause.
        if let Some(ip) = client {
            if per_client
                .get(&ip)
                .is_some_and(|&n| n >= self.max_per_client)
            {
                return Err(Refused::PerClient {
                    limit: self.max_per_client,
                });
            }
        }
        if *total >= self.max_overall {
            return Err(Refused::Overall {
                limit: self.max_overall,
            });
        }
        if let Some(ip) = client {
            *per_client.entry(ip).or_insert(0) += 1;
        }
        *total += 1;
        self.gauge.set(*total as i64);
        Ok(Admitted {
            admission: self.clone(),
            client,
        })
    }

    /// Requests under way now.
    pub fn under_way(&self) -> usize {
        self.under_way.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut guard = self
            .admission
            .under_way
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (total, per_client) = &mut *guard;
        *total -= 1;
        self.admission.gauge.set(*total as i64);
        if let Some(ip) = self.client {
            if let Some(n) = per_client.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_client.remove(&ip);
                }
            }
        }
    }
}

/// The memory all ingest requests together may hold: raw and decompressed bodies, and
/// the records parsed from them, each counted before it is allocated.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    /// Shows the bytes in use on `/metrics`.
    gauge: IntGauge,
}

/// The budget was spent; the request is refused before it allocates more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ingest memory budget of {limit} bytes is in use by other requests; retry later")]
pub struct OverBudget {
    pub limit: usize,
}

/// Bytes of the budget held by one request; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize, gauge: IntGauge) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
            gauge,
        })
    }

    /// An empty reservation, to grow as the request reads and parses.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    /// Bytes held by all reservations now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn take(&self, bytes: usize) -> Result<(), OverBudget> {
        let before = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .map_err(|_| OverBudget { limit: self.limit })?;
        self.gauge.set((before + bytes) as i64);
        Ok(())
    }

    fn give_back(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        self.gauge.set((before - bytes) as i64);
    }
}

impl Reservation {
    /// Takes `bytes` more, or nothing when the budget cannot spare them.
    pub fn grow(&mut self, bytes: usize) -> Result<(), OverBudget> {
        self.budget.take(bytes)?;
        self.bytes += bytes;
        Ok(())
    }

    /// Gives back `bytes` of what this reservation holds (at most all of it).
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.budget.give_back(bytes);
        self.bytes -= bytes;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> IntGauge {
        IntGauge::new("g", "g").unwrap()
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn admission_limits_each_client_and_everyone() {
        let a = Admission::new(3, 2, gauge());
        let first = a.enter(ip(1)).unwrap();
        let _second = a.enter(ip(1)).unwrap();
        assert_eq!(a.enter(ip(1)).unwrap_err(), Refused::PerClient { limit: 2 });
        let _other = a.enter(ip(2)).unwrap();
        assert_eq!(a.enter(ip(3)).unwrap_err(), Refused::Overall { limit: 3 });
        assert_eq!(a.enter(None).unwrap_err(), Refused::Overall { limit: 3 });
        drop(first);
        assert_eq!(a.under_way(), 2);
        let _again = a.enter(ip(1)).unwrap();
        assert_eq!(a.enter(ip(1)).unwrap_err(), Refused::PerClient { limit: 2 });
    }

    #[test]
    fn clients_that_left_leave_no_entry() {
        let a = Admission::new(10, 10, gauge());
        for last in 0..=255 {
            drop(a.enter(ip(last)).unwrap());
        }
        assert_eq!(a.under_way(), 0);
        assert!(a.under_way.lock().unwrap().1.is_empty());
    }

    #[test]
    fn the_budget_is_never_exceeded_and_comes_back() {
        let budget = MemoryBudget::new(100, gauge());
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        a.grow(60).unwrap();
        assert_eq!(b.grow(41), Err(OverBudget { limit: 100 }));
        b.grow(40).unwrap();
        assert_eq!(budget.used(), 100);
        assert_eq!(budget.gauge.get(), 100);
        a.shrink(10);
        assert_eq!((a.bytes(), budget.used()), (50, 90));
        a.shrink(1_000);
        assert_eq!(a.bytes(), 0);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(a.grow(usize::MAX).is_err());
    }
}
