//! Open-loop pacing: when each request is due, whatever happened to the earlier ones.
//!
//! A closed loop (send, wait, send) slows down when the service does and so hides its
//! slowness; here request `n` of a thread is due at `n / rate` seconds after the start.
//! A thread that falls behind (every permit of its concurrency in use) sends the overdue
//! requests as soon as it can; what is still overdue when the run ends is reported as
//! "unsent", so a run that could not keep its rate says so.

use std::time::Duration;

/// One thread's share of the rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    per_second: f64,
}

impl Pace {
    /// `None` for a rate of zero or less.
    pub fn new(per_second: f64) -> Option<Pace> {
        (per_second > 0.0 && per_second.is_finite()).then_some(Pace { per_second })
    }

    /// How many requests are due `elapsed` after the start (request 0 is due at once).
    pub fn due(&self, elapsed: Duration) -> u64 {
        // The small tolerance keeps `due(due_at(n))` exact despite rounding.
        (elapsed.as_secs_f64() * self.per_second + 1e-6).floor() as u64 + 1
    }

    /// How many requests fall due strictly before `elapsed`: a run of that length owes
    /// this many.
    pub fn due_before(&self, elapsed: Duration) -> u64 {
        (elapsed.as_secs_f64() * self.per_second - 1e-6)
            .ceil()
            .max(0.0) as u64
    }

    /// When request `n` (counted from 0) is due, after the start.
    pub fn due_at(&self, n: u64) -> Duration {
        Duration::from_secs_f64(n as f64 / self.per_second)
    }
}

/// Splits `total` over `parts` so the shares differ by at most one.
pub fn share(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts.max(1) as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_due_at_the_rate() {
        let p = Pace::new(1000.0).unwrap();
        assert_eq!(p.due(Duration::ZERO), 1);
        assert_eq!(p.due(Duration::from_micros(999)), 1);
        assert_eq!(p.due(Duration::from_millis(1)), 2);
        assert_eq!(p.due(Duration::from_secs(2)), 2001);
        assert_eq!(p.due_at(500), Duration::from_millis(500));
        assert_eq!(p.due_before(Duration::from_secs(2)), 2000);
        assert_eq!(p.due_before(Duration::from_micros(2500)), 3);
        assert_eq!(p.due_before(Duration::ZERO), 0);
        // due_at and due agree: request n is due exactly at due_at(n).
        for n in [0, 1, 7, 999, 12345] {
            assert_eq!(p.due(p.due_at(n)), n + 1);
        }
    }

    #[test]
    fn no_pace_for_zero() {
        assert!(Pace::new(0.0).is_none());
        assert!(Pace::new(f64::NAN).is_none());
    }

    #[test]
    fn shares_add_up() {
        let total: u64 = (0..3).map(|i| share(10, 3, i)).sum();
        assert_eq!(total, 10);
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
        assert_eq!(share(5, 0, 0), 5);
    }
}
