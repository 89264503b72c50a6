//! What the run observed: per endpoint, a latency histogram, the statuses and the errors.
//!
//! Each sending thread fills its own [`Recorder`] with no locking; the threads' recorders
//! are merged once at the end. The histograms have fixed bounds and precision, so memory
//! stays the same however long the run. [`Live`] holds the few shared counters the
//! progress line reads while the run goes on.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::mix::ENDPOINTS;

/// Latencies are kept in microseconds, from 1 µs to this, at 3 significant digits.
const HISTOGRAM_MAX_MICROS: u64 = 120_000_000;
const HISTOGRAM_DIGITS: u8 = 3;

/// Why a request counts as an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The service answered a status the mix does not expect for this request.
    Status(u16),
    /// No connection could be made (refused, reset while connecting).
    Connect,
    /// No complete answer within `--timeout`.
    Timeout,
    /// The connection broke while sending the request or reading the answer.
    Io,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Status(s) => write!(f, "status {s}"),
            ErrorKind::Connect => f.write_str("connect"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Io => f.write_str("io"),
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A full answer with this status, within this time.
    Answered {
        status: u16,
        latency: Duration,
    },
    Failed(ErrorKind),
}

/// One endpoint's figures.
#[derive(Debug, Clone)]
pub struct EndpointStats {
    pub latency_micros: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<ErrorKind, u64>,
}

impl EndpointStats {
    fn new() -> EndpointStats {
        EndpointStats {
            latency_micros: new_histogram(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    /// Requests that ended, answered or not.
    pub fn requests(&self) -> u64 {
        self.statuses.values().sum::<u64>()
            + self
                .errors
                .iter()
                .filter(|(k, _)| !matches!(k, ErrorKind::Status(_)))
                .map(|(_, n)| n)
                .sum::<u64>()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, HISTOGRAM_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Everything one thread (or, merged, the whole run) saw, indexed like [`ENDPOINTS`].
#[derive(Debug, Clone)]
pub struct Recorder {
    pub endpoints: Vec<EndpointStats>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            endpoints: ENDPOINTS.iter().map(|_| EndpointStats::new()).collect(),
        }
    }
}

impl Recorder {
    /// Records one request; `expect` lists the statuses that are not errors. Returns
    /// whether it was an error.
    pub fn record(&mut self, endpoint: usize, expect: &[u16], outcome: Outcome) -> bool {
        let stats = &mut self.endpoints[endpoint];
        match outcome {
            Outcome::Answered { status, latency } => {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                stats.latency_micros.saturating_record(micros.max(1));
                *stats.statuses.entry(status).or_default() += 1;
                if expect.contains(&status) {
                    false
                } else {
                    *stats.errors.entry(ErrorKind::Status(status)).or_default() += 1;
                    true
                }
            }
            Outcome::Failed(kind) => {
                *stats.errors.entry(kind).or_default() += 1;
                true
            }
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.endpoints.iter_mut().zip(&other.endpoints) {
            // Same bounds on both sides, so adding cannot fail.
            let _ = mine.latency_micros.add(&theirs.latency_micros);
            for (s, n) in &theirs.statuses {
                *mine.statuses.entry(*s).or_default() += n;
            }
            for (k, n) in &theirs.errors {
                *mine.errors.entry(*k).or_default() += n;
            }
        }
    }
}

/// Counters shared with the progress line while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.done.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, ms: u64) -> Outcome {
        Outcome::Answered {
            status,
            latency: Duration::from_millis(ms),
        }
    }

    #[test]
    fn expected_statuses_are_not_errors() {
        let mut r = Recorder::default();
        assert!(!r.record(2, &[200], answered(200, 1)));
        assert!(!r.record(2, &[404], answered(404, 2)));
        assert!(r.record(2, &[200], answered(500, 3)));
        assert!(r.record(2, &[200], Outcome::Failed(ErrorKind::Timeout)));
        let e = &r.endpoints[2];
        assert_eq!(e.requests(), 4);
        assert_eq!(e.error_count(), 2);
        assert_eq!(e.statuses[&500], 1);
        assert_eq!(e.errors[&ErrorKind::Status(500)], 1);
        assert_eq!(e.latency_micros.len(), 3);
    }

    #[test]
    fn merging_adds_everything() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.record(0, &[200], answered(200, 1));
        b.record(0, &[200], answered(200, 9));
        b.record(0, &[200], Outcome::Failed(ErrorKind::Connect));
        a.merge(&b);
        let e = &a.endpoints[0];
        assert_eq!(e.requests(), 3);
        assert_eq!(e.latency_micros.len(), 2);
        assert!(e.latency_micros.max() >= 9_000);
        assert_eq!(e.errors[&ErrorKind::Connect], 1);
    }

    #[test]
    fn an_absurd_latency_is_clamped_not_lost() {
        let mut r = Recorder::default();
        r.record(0, &[200], answered(200, 10_000_000));
        assert_eq!(r.endpoints[0].latency_micros.len(), 1);
    }
}
