//! What `GET /logs/volume` counts in its one pass over the matching records: records per
//! time bucket and series, the facets (records per service and per level), and each
//! service's requests (records carrying an HTTP `status`), their errors and latency.
//!
//! Everything here is bounded whatever the records hold: at most [`MAX_BUCKETS`]
//! buckets, [`MAX_SERIES`] distinct names per facet or series (the rest are counted
//! under [`OTHER`]), and latencies kept as a fixed log-scale histogram, not a list.

use std::collections::BTreeMap;

use serde::Serialize;

/// Most buckets one answer holds.
pub const MAX_BUCKETS: i64 = 2000;
/// Most distinct services or levels named in one answer.
pub const MAX_SERIES: usize = 200;
/// Where the names past [`MAX_SERIES`] are counted.
pub const OTHER: &str = "(other)";

/// Which field splits the buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Level,
    Service,
}

impl By {
    pub fn parse(text: Option<&str>) -> Option<By> {
        match text {
            None | Some("" | "level") => Some(By::Level),
            Some("service") => Some(By::Service),
            Some(_) => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            By::Level => "level",
            By::Service => "service",
        }
    }
}

/// Steps chosen when none is asked for, in milliseconds: the first that gives at most
/// [`AUTO_BUCKETS`] buckets.
const NICE_STEPS_MS: [i64; 20] = [
    1_000,
    2_000,
    5_000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    604_800_000,
    2_592_000_000,
];

/// About how many bars a histogram without `step=` gets.
pub const AUTO_BUCKETS: i64 = 60;

/// A step for `[since, until)` (microseconds) giving at most [`AUTO_BUCKETS`] buckets.
pub fn auto_step_us(since_us: i64, until_us: i64) -> i64 {
    let span = until_us.saturating_sub(since_us).max(1);
    for ms in NICE_STEPS_MS {
        if span / (ms * 1000) <= AUTO_BUCKETS {
            return ms * 1000;
        }
    }
    // Longer than five years per 60 bars: whole 30-day steps, as many as needed.
    let last = NICE_STEPS_MS[NICE_STEPS_MS.len() - 1] * 1000;
    (span / AUTO_BUCKETS / last + 1) * last
}

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z: the times RFC 3339 can write,
/// in microseconds.
pub const EARLIEST_US: i64 = -62_167_219_200_000_000;
pub const LATEST_US: i64 = 253_402_300_799_999_999;

/// The buckets of `[since, until)`: aligned on multiples of `step` since the epoch, so
/// that the same step always cuts time at the same places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Start of the first bucket, microseconds.
    pub start_us: i64,
    pub step_us: i64,
    pub buckets: usize,
}

impl Grid {
    /// `None` when the range needs more than [`MAX_BUCKETS`] buckets of `step_us`.
    pub fn new(since_us: i64, until_us: i64, step_us: i64) -> Option<Grid> {
        let step_us = step_us.max(1);
        let aligned = since_us.div_euclid(step_us).checked_mul(step_us)?;
        // A bucket's start is written in RFC 3339, which has no year before 0000.
        let start_us = if aligned < EARLIEST_US && since_us >= EARLIEST_US {
            since_us
        } else {
            aligned
        };
        let span = until_us.checked_sub(start_us)?.max(0);
        let buckets = span.div_euclid(step_us) + i64::from(span % step_us != 0);
        (buckets <= MAX_BUCKETS).then_some(Grid {
            start_us,
            step_us,
            buckets: buckets as usize,
        })
    }

    pub fn index(&self, ts_us: i64) -> Option<usize> {
        let i = ts_us.checked_sub(self.start_us)?.div_euclid(self.step_us);
        (i >= 0 && (i as usize) < self.buckets).then_some(i as usize)
    }
}

/// Counts by name, at most [`MAX_SERIES`] names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Named(pub BTreeMap<String, u64>);

impl Named {
    pub fn add(&mut self, name: &str) {
        if let Some(n) = self.0.get_mut(name) {
            *n += 1;
        } else if self.0.len() < MAX_SERIES {
            self.0.insert(name.to_owned(), 1);
        } else {
            *self.0.entry(OTHER.to_owned()).or_default() += 1;
        }
    }
}

/// Latencies as a histogram whose buckets grow by 2%: a percentile read from it is
/// within 2% of the true one, in a few kilobytes whatever the number of requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latency {
    buckets: BTreeMap<u32, u64>,
    n: u64,
}

const GROWTH: f64 = 1.02;

impl Latency {
    pub fn add(&mut self, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        let k = ((ms + 1.0).ln() / GROWTH.ln()).floor().min(u32::MAX as f64) as u32;
        *self.buckets.entry(k).or_default() += 1;
        self.n += 1;
    }

    /// The `q` quantile (0 to 1), in milliseconds: the middle of its bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (k, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                let mid = GROWTH.powf(f64::from(*k) + 0.5) - 1.0;
                return Some((mid * 100.0).round() / 100.0);
            }
        }
        None
    }
}

/// One service's requests over the range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceStats {
    /// Records of the service.
    pub records: u64,
    /// Records carrying a numeric HTTP `status`.
    pub requests: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// Requests per second over the range.
    pub rate_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    #[serde(skip)]
    latency: Latency,
}

/// The fields of one record that the tally reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'a> {
    pub ts_us: i64,
    pub service: Option<&'a str>,
    pub level: Option<&'a str>,
    pub status: Option<f64>,
    pub duration_ms: Option<f64>,
}

/// Everything counted in one pass.
#[derive(Debug, Clone)]
pub struct Tally {
    pub grid: Grid,
    pub by: By,
    pub total: u64,
    pub buckets: Vec<Named>,
    pub services: Named,
    pub levels: Named,
    pub overview: BTreeMap<String, ServiceStats>,
}

impl Tally {
    pub fn new(grid: Grid, by: By) -> Tally {
        Tally {
            grid,
            by,
            total: 0,
            buckets: vec![Named::default(); grid.buckets],
            services: Named::default(),
            levels: Named::default(),
            overview: BTreeMap::new(),
        }
    }

    /// Counts one record; a record outside the grid is not counted.
    pub fn add(&mut self, r: Seen<'_>) {
        let Some(i) = self.grid.index(r.ts_us) else {
            return;
        };
        let service = r.service.unwrap_or(crate::store::UNKNOWN);
        let level = r.level.unwrap_or(crate::store::UNKNOWN);
        self.total += 1;
        self.buckets[i].add(match self.by {
            By::Level => level,
            By::Service => service,
        });
        self.services.add(service);
        self.levels.add(level);
        let key = if self.overview.contains_key(service) || self.overview.len() < MAX_SERIES {
            service
        } else {
            OTHER
        };
        if !self.overview.contains_key(key) {
            self.overview
                .insert(key.to_owned(), ServiceStats::default());
        }
        let Some(stats) = self.overview.get_mut(key) else {
            return;
        };
        stats.records += 1;
        if let Some(status) = r.status {
            stats.requests += 1;
            if (400.0..500.0).contains(&status) {
                stats.status_4xx += 1;
            } else if (500.0..600.0).contains(&status) {
                stats.status_5xx += 1;
            }
            if let Some(d) = r.duration_ms {
                stats.latency.add(d);
            }
        }
    }

    /// Fills the rates and percentiles once every record is counted.
    pub fn finish(&mut self, since_us: i64, until_us: i64) {
        let seconds = (until_us.saturating_sub(since_us).max(1)) as f64 / 1e6;
        for stats in self.overview.values_mut() {
            stats.rate_per_s = ((stats.requests as f64 / seconds) * 1000.0).round() / 1000.0;
            stats.p50_ms = stats.latency.quantile(0.5);
            stats.p99_ms = stats.latency.quantile(0.99);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn grids_align_on_the_step_and_cover_the_range() {
        let g = Grid::new(61 * S, 185 * S, 60 * S).unwrap();
        assert_eq!(g.start_us, 60 * S);
        assert_eq!(g.buckets, 3);
        assert_eq!(g.index(60 * S), Some(0));
        assert_eq!(g.index(184 * S), Some(2));
        assert_eq!(g.index(240 * S), None);
        assert_eq!(g.index(59 * S), None);
        // Before 1970 too.
        let g = Grid::new(-90 * S, 0, 60 * S).unwrap();
        assert_eq!((g.start_us, g.buckets), (-120 * S, 2));
        assert!(Grid::new(0, 2001 * S, S).is_none());
        assert!(Grid::new(i64::MIN, i64::MAX, S).is_none());
        assert_eq!(Grid::new(5 * S, 5 * S, S).unwrap().buckets, 0);
        // No bucket starts before the year 0000.
        let g = Grid::new(EARLIEST_US, EARLIEST_US + 3600 * S, 86_400 * 40 * S).unwrap();
        assert_eq!((g.start_us, g.buckets), (EARLIEST_US, 1));
    }

    #[test]
    fn automatic_steps_give_at_most_sixty_bars() {
        assert_eq!(auto_step_us(0, 5 * 60 * S), 5 * S);
        assert_eq!(auto_step_us(0, 3600 * S), 60 * S);
        assert_eq!(auto_step_us(0, 86_400 * S), 1800 * S);
        for span in [1, S, 59 * S, 7 * 86_400 * S, 400 * 86_400 * S, i64::MAX / 2] {
            let step = auto_step_us(0, span);
            assert!(span / step < AUTO_BUCKETS + 1, "{span} {step}");
            assert!(Grid::new(0, span, step).is_some());
        }
    }

    #[test]
    fn buckets_facets_and_overview_add_up() {
        let grid = Grid::new(0, 120 * S, 60 * S).unwrap();
        let mut t = Tally::new(grid, By::Level);
        let rec = |ts, service, level, status, d| Seen {
            ts_us: ts,
            service,
            level,
            status,
            duration_ms: d,
        };
        t.add(rec(S, Some("a"), Some("INFO"), Some(200.0), Some(10.0)));
        t.add(rec(
            2 * S,
            Some("a"),
            Some("ERROR"),
            Some(503.0),
            Some(1000.0),
        ));
        t.add(rec(
            61 * S,
            Some("a"),
            Some("WARN"),
            Some(404.0),
            Some(20.0),
        ));
        t.add(rec(62 * S, Some("b"), None, None, None));
        t.add(rec(500 * S, Some("b"), Some("INFO"), None, None));
        t.finish(0, 120 * S);
        assert_eq!(t.total, 4);
        let sum: u64 = t.buckets.iter().flat_map(|b| b.0.values()).sum();
        assert_eq!(sum, t.total);
        assert_eq!(t.buckets[0].0.get("ERROR"), Some(&1));
        assert_eq!(t.buckets[1].0.get("unknown"), Some(&1));
        assert_eq!(t.services.0.get("a"), Some(&3));
        let a = &t.overview["a"];
        assert_eq!((a.requests, a.status_4xx, a.status_5xx), (3, 1, 1));
        assert_eq!(a.rate_per_s, 0.025);
        let p50 = a.p50_ms.unwrap();
        assert!((p50 - 20.0).abs() / 20.0 < 0.03, "{p50}");
        let p99 = a.p99_ms.unwrap();
        assert!((p99 - 1000.0).abs() / 1000.0 < 0.03, "{p99}");
        assert_eq!(t.overview["b"].p50_ms, None);
    }

    #[test]
    fn names_past_the_bound_are_counted_as_other() {
        let mut n = Named::default();
        for i in 0..MAX_SERIES + 50 {
            n.add(&format!("s{i}"));
        }
        n.add("s0");
        assert_eq!(n.0.len(), MAX_SERIES + 1);
        assert_eq!(n.0[OTHER], 50);
        assert_eq!(n.0["s0"], 2);
        let mut l = Latency::default();
        for d in [f64::NAN, -1.0, f64::INFINITY, 1e300] {
            l.add(d);
        }
        assert!(l.quantile(0.5).is_some());
    }
}
