//! Running a query against the store: pages of records in time order, each record seen
//! as a Loki entry, matched, piped and collected, within the query's limits.
//!
//! Records come a page at a time from the store (one short read per page, each with the
//! query's deadline), so a long query never holds a reader and other queries interleave
//! with it.
//! The work on each page is bounded (at most [`PAGE_ROWS`] records), and the whole query
//! by its deadline, its entry limit and its series and points limits: nothing a query
//! holds grows with the size of the store.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::error::LokiError;
use super::labels::LabelSet;
use super::logql::ast::{LogExpr, MatchOp, Matcher, MetricExpr};
use super::logql::metric::{self, Bounds, RangeAcc, Steps, Value};
use super::logql::pipeline::{self, Labels};
use super::params::Direction;
use super::stored::View;
use crate::query::Order;
use crate::store::{RecordId, ScanQuery, Store};

/// Records per page read from the store.
pub const PAGE_ROWS: usize = 1000;

/// What one query may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Loki's `max_entries_limit_per_query`.
    pub max_entries: usize,
    /// Loki's `max_query_series`.
    pub max_series: usize,
    /// Series × steps a metric query may hold.
    pub max_points: usize,
    /// Distinct streams `/labels`, `/series` and `/index/*` may collect.
    pub max_streams: usize,
    /// Loki's limit on steps per series.
    pub max_steps: usize,
    pub timeout: std::time::Duration,
}

impl Limits {
    pub fn bounds(&self) -> Bounds {
        Bounds {
            max_series: self.max_series,
            max_points: self.max_points,
        }
    }
}

/// What a query read, for the `stats` of its answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub lines: u64,
    pub bytes: u64,
}

/// One query's access to the store.
pub struct Exec<'a> {
    store: &'a Store,
    deadline: Instant,
    pub stats: Stats,
}

/// One log stream of a result, entries in the result's order.
pub type Streams = BTreeMap<LabelSet, Vec<(i64, String)>>;

impl<'a> Exec<'a> {
    pub fn new(store: &'a Store, limits: &Limits) -> Exec<'a> {
        Exec {
            store,
            deadline: Instant::now() + limits.timeout,
            stats: Stats::default(),
        }
    }

    /// Calls `f` on every record in `[from_ns, to_ns)` whose stream labels match
    /// `matchers`, in `order`, with its id, until `f` answers `false`.
    pub async fn each(
        &mut self,
        matchers: &[Matcher],
        from_ns: i64,
        to_ns: i64,
        order: Order,
        mut f: impl FnMut(View<'_>, RecordId) -> Result<bool, LokiError>,
    ) -> Result<(), LokiError> {
        if to_ns <= from_ns {
            return Ok(());
        }
        let eq = |name: &str| {
            matchers
                .iter()
                .find(|m| m.name == name && m.op == MatchOp::Eq)
                .map(|m| m.value.clone())
        };
        let mut q = ScanQuery {
            service: eq("service"),
            level: eq("level").map(|l| l.to_ascii_uppercase()),
            since_us: from_ns.div_euclid(1000),
            until_us: to_ns.div_euclid(1000) + 1,
            order,
            after: None,
            limit: PAGE_ROWS,
        };
        loop {
            if Instant::now() > self.deadline {
                return Err(LokiError::timeout());
            }
            let page = self
                .store
                .scan(q.clone(), self.deadline)
                .await
                .map_err(LokiError::from)?;
            for row in &page.rows {
                self.stats.lines += 1;
                self.stats.bytes += row.body.len() as u64;
                let Some(view) = View::of(&row.body, row.ts_us) else {
                    continue;
                };
                if view.ts_ns < from_ns || view.ts_ns >= to_ns || !selects(matchers, &view) {
                    continue;
                }
                if !f(view, row.id)? {
                    return Ok(());
                }
            }
            match (page.more, page.rows.last()) {
                (true, Some(last)) => q.after = Some((last.ts_us, last.id)),
                _ => return Ok(()),
            }
        }
    }

    /// A log query: at most `limit` entries in `[start, end)`, newest first when
    /// backward, grouped by their final labels.
    pub async fn logs(
        &mut self,
        expr: &LogExpr,
        start: i64,
        end: i64,
        direction: Direction,
        limit: usize,
    ) -> Result<Streams, LokiError> {
        let order = match direction {
            Direction::Forward => Order::Asc,
            Direction::Backward => Order::Desc,
        };
        let mut streams = Streams::new();
        let mut taken = 0;
        self.each(&expr.matchers, start, end, order, |view, _| {
            let (ts, labels, line) = piped(expr, view);
            if let (Some(line), Some(labels)) = (line, labels) {
                streams
                    .entry(labels)
                    .or_default()
                    .push((ts, line.into_owned()));
                taken += 1;
            }
            Ok(taken < limit)
        })
        .await?;
        // Records are read in microsecond order; entries within one microsecond are put
        // in nanosecond order here.
        for entries in streams.values_mut() {
            match direction {
                Direction::Forward => entries.sort_by_key(|e| e.0),
                Direction::Backward => entries.sort_by_key(|e| std::cmp::Reverse(e.0)),
            }
        }
        Ok(streams)
    }

    /// A metric query evaluated at every step.
    pub async fn metric(
        &mut self,
        expr: &MetricExpr,
        steps: Steps,
        limits: &Limits,
    ) -> Result<Value, LokiError> {
        let mut results = Vec::new();
        for (agg, project) in metric::range_aggs(expr) {
            let mut acc = RangeAcc::new(agg, steps, project, limits.bounds());
            let (from, to) = RangeAcc::time_span(agg, steps);
            let mut failed = None;
            self.each(&agg.log.matchers, from, to, Order::Asc, |view, _| {
                let (ts, labels, line) = piped(&agg.log, view);
                if let (Some(line), Some(labels)) = (line, labels) {
                    if let Err(e) = acc.add(ts, labels, line.len()) {
                        failed = Some(e);
                        return Ok(false);
                    }
                }
                Ok(true)
            })
            .await?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            results.push(acc.finish());
        }
        Ok(metric::eval(
            expr,
            steps,
            &mut results.into_iter(),
            limits.bounds(),
        )?)
    }

    /// The distinct streams (stream labels only) matching `matchers` in `[start, end)`,
    /// with their entries and bytes, and per step when `steps` is given.
    pub async fn streams(
        &mut self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        steps: Option<Steps>,
        max_streams: usize,
    ) -> Result<HashMap<LabelSet, StreamStats>, LokiError> {
        let mut out: HashMap<LabelSet, StreamStats> = HashMap::new();
        let mut too_many = false;
        self.each(matchers, start, end, Order::Asc, |view, _| {
            let key: LabelSet = view
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if !out.contains_key(&key) && out.len() >= max_streams {
                too_many = true;
                return Ok(false);
            }
            let s = out.entry(key).or_default();
            s.entries += 1;
            s.bytes += view.line.len() as u64;
            if let Some(steps) = steps {
                // The step whose bucket (t - step, t] holds the entry.
                let k = (view.ts_ns - steps.start + steps.step - 1).div_euclid(steps.step);
                if (0..steps.count as i64).contains(&k) {
                    let buckets = s.per_step.get_or_insert_with(|| vec![0; steps.count]);
                    buckets[k as usize] += view.line.len() as u64;
                }
            }
            Ok(true)
        })
        .await?;
        if too_many {
            return Err(LokiError::bad(format!(
                "the selector matches more than {max_streams} streams in this time range; narrow it"
            )));
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    pub entries: u64,
    pub bytes: u64,
    /// Bytes per step, for `/index/volume_range`.
    pub per_step: Option<Vec<u64>>,
}

/// Whether a record's stream labels satisfy every matcher (an absent label is `""`).
pub fn selects(matchers: &[Matcher], view: &View<'_>) -> bool {
    matchers.iter().all(|m| {
        let value = view
            .labels
            .iter()
            .find(|(k, _)| *k == m.name)
            .map_or("", |(_, v)| v.as_ref());
        m.matches(value)
    })
}

/// An entry through a log expression's pipeline: its time, final labels and line
/// (`None` when filtered out).
pub fn piped<'v>(expr: &LogExpr, view: View<'v>) -> (i64, Option<LabelSet>, Option<Cow<'v, str>>) {
    let ts = view.ts_ns;
    let owned = |pairs: Vec<(Cow<'_, str>, Cow<'_, str>)>| -> Vec<(String, String)> {
        pairs
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    let mut labels = Labels::new(owned(view.labels), owned(view.metadata));
    match pipeline::run(&expr.stages, ts, view.line, &mut labels) {
        Some(line) => (ts, Some(labels.into_set()), Some(line)),
        None => (ts, None, None),
    }
}
