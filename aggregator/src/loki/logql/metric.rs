//! Metric queries: range aggregations accumulated entry by entry, then vector
//! aggregations and arithmetic, step by step.
//!
//! A range aggregation keeps, per series, two difference arrays over the steps (entries
//! and bytes): an entry adds to the first step whose window `(t - range, t]` holds it and
//! subtracts after the last, so each entry costs O(1) whatever the range and step, and
//! memory is two integers per series and step. When the aggregation is the direct
//! argument of `sum by/without`, entries are projected on the grouping labels at once
//! (the sum of the series of a group is the aggregation of its entries), so the series
//! never materialise.

use std::collections::HashMap;

use super::ast::*;
use super::pipeline::ERROR;
use crate::loki::labels::LabelSet;

/// The evaluation times: `start`, `start + step`, ... up to `end` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    pub start: i64,
    pub step: i64,
    pub count: usize,
}

impl Steps {
    pub fn range(start: i64, end: i64, step: i64) -> Steps {
        let count = if end < start {
            0
        } else {
            ((end - start) / step.max(1)) as usize + 1
        };
        Steps {
            start,
            step: step.max(1),
            count,
        }
    }

    pub fn instant(at: i64) -> Steps {
        Steps {
            start: at,
            step: 1,
            count: 1,
        }
    }

    pub fn at(&self, k: usize) -> i64 {
        self.start + k as i64 * self.step
    }

    pub fn end(&self) -> i64 {
        self.at(self.count.saturating_sub(1))
    }
}

/// A metric series: its labels and a value per step (absent where it has none).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: LabelSet,
    pub points: Vec<Option<f64>>,
}

/// The value of a metric expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Vec<f64>),
    Matrix(Vec<Series>),
}

/// A limit that stopped a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("maximum of series ({0}) reached for a single query")]
    Series(usize),
    #[error("the query would hold {points} points (series × steps), more than the limit of {limit}; increase the step or narrow the selector")]
    Points { points: usize, limit: usize },
    #[error("pipeline error: '{0}' for series: '{1}'.\nUse a label filter to intentionally skip this error. (e.g | __error__!=\"{0}\").\nTo skip all potential errors you can match empty errors.(e.g __error__=\"\")\nThe label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )")]
    Pipeline(String, String),
}

/// Bounds on what one query may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_series: usize,
    pub max_points: usize,
}

/// Accumulates the entries of one range aggregation.
pub struct RangeAcc {
    steps: Steps,
    range: i64,
    offset: i64,
    func: RangeFunc,
    project: Option<Grouping>,
    bounds: Bounds,
    series: HashMap<LabelSet, Diffs>,
}

struct Diffs {
    entries: Vec<i64>,
    bytes: Vec<i64>,
}

impl RangeAcc {
    pub fn new(
        agg: &RangeAgg,
        steps: Steps,
        project: Option<Grouping>,
        bounds: Bounds,
    ) -> RangeAcc {
        RangeAcc {
            steps,
            range: agg.range,
            offset: agg.offset,
            func: agg.func,
            project,
            bounds,
            series: HashMap::new(),
        }
    }

    /// The entry times this aggregation reads: `[from, to)` in nanoseconds.
    pub fn time_span(agg: &RangeAgg, steps: Steps) -> (i64, i64) {
        let from = steps
            .start
            .saturating_sub(agg.range)
            .saturating_sub(agg.offset)
            .saturating_add(1);
        let to = steps.end().saturating_sub(agg.offset).saturating_add(1);
        (from, to)
    }

    /// Adds one entry that passed the pipeline, with its final labels.
    pub fn add(
        &mut self,
        ts_ns: i64,
        labels: LabelSet,
        line_bytes: usize,
    ) -> Result<(), EvalError> {
        if let Some((_, kind)) = labels.iter().find(|(k, _)| k == ERROR) {
            return Err(EvalError::Pipeline(kind.clone(), format_labels(&labels)));
        }
        let Some((lo, hi)) = self.window(ts_ns.saturating_add(self.offset)) else {
            return Ok(());
        };
        let key = match &self.project {
            Some(g) => project(labels, g),
            None => labels,
        };
        let n = self.steps.count;
        if !self.series.contains_key(&key) {
            if self.series.len() >= self.bounds.max_series {
                return Err(EvalError::Series(self.bounds.max_series));
            }
            let points = (self.series.len() + 1).saturating_mul(n);
            if points > self.bounds.max_points {
                return Err(EvalError::Points {
                    points,
                    limit: self.bounds.max_points,
                });
            }
        }
        let d = self.series.entry(key).or_insert_with(|| Diffs {
            entries: vec![0; n + 1],
            bytes: vec![0; n + 1],
        });
        d.entries[lo] += 1;
        d.entries[hi + 1] -= 1;
        d.bytes[lo] += line_bytes as i64;
        d.bytes[hi + 1] -= line_bytes as i64;
        Ok(())
    }

    /// The steps `lo..=hi` whose window `(t - range, t]` holds time `ts`.
    fn window(&self, ts: i64) -> Option<(usize, usize)> {
        let s = self.steps;
        if s.count == 0 {
            return None;
        }
        // Smallest k with t_k >= ts; largest k with t_k < ts + range.
        let lo = ceil_div(ts - s.start, s.step).max(0);
        let hi = (ceil_div(ts + self.range - s.start, s.step) - 1).min(s.count as i64 - 1);
        (lo <= hi).then_some((lo as usize, hi as usize))
    }

    pub fn finish(self) -> Vec<Series> {
        let seconds = self.range as f64 / 1e9;
        let mut out: Vec<Series> = self
            .series
            .into_iter()
            .map(|(labels, d)| {
                let (mut entries, mut bytes) = (0i64, 0i64);
                let points = (0..self.steps.count)
                    .map(|k| {
                        entries += d.entries[k];
                        bytes += d.bytes[k];
                        (entries > 0).then(|| {
                            let total = if self.func.counts_bytes() {
                                bytes
                            } else {
                                entries
                            } as f64;
                            if self.func.per_second() {
                                total / seconds
                            } else {
                                total
                            }
                        })
                    })
                    .collect();
                Series { labels, points }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 {
        q
    } else {
        q + 1
    }
}

/// The labels a grouping keeps.
pub fn project(labels: LabelSet, g: &Grouping) -> LabelSet {
    labels
        .into_iter()
        .filter(|(k, _)| g.labels.iter().any(|n| n == k) != g.without)
        .collect()
}

/// `{a="b", c="d"}`, as Loki writes a series in messages.
pub fn format_labels(labels: &LabelSet) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// The `sum by/without` grouping that may be pushed into its range aggregation.
pub fn pushdown(expr: &MetricExpr) -> Option<(&RangeAgg, Grouping)> {
    match expr {
        MetricExpr::Vector {
            op: VectorOp::Sum,
            grouping,
            inner,
            ..
        } => match inner.as_ref() {
            MetricExpr::Range(r) => Some((
                r,
                grouping.clone().unwrap_or(Grouping {
                    without: false,
                    labels: Vec::new(),
                }),
            )),
            _ => None,
        },
        _ => None,
    }
}

/// Evaluates everything above the range aggregations, whose results `ranges` gives in
/// the order [`range_aggs`] lists them.
pub fn eval(
    expr: &MetricExpr,
    steps: Steps,
    ranges: &mut std::vec::IntoIter<Vec<Series>>,
    bounds: Bounds,
) -> Result<Value, EvalError> {
    Ok(match expr {
        MetricExpr::Range(_) => Value::Matrix(ranges.next().unwrap_or_default()),
        MetricExpr::Scalar(n) => Value::Scalar(vec![*n; steps.count]),
        MetricExpr::VectorLit(n) => Value::Matrix(vec![Series {
            labels: Vec::new(),
            points: vec![Some(*n); steps.count],
        }]),
        MetricExpr::Vector {
            op,
            param,
            grouping,
            inner,
        } => {
            let inner = match eval(inner, steps, ranges, bounds)? {
                Value::Matrix(m) => m,
                // Aggregating a scalar: a vector of one unlabelled series.
                Value::Scalar(v) => vec![Series {
                    labels: Vec::new(),
                    points: v.into_iter().map(Some).collect(),
                }],
            };
            Value::Matrix(aggregate(
                *op,
                *param,
                grouping.as_ref(),
                inner,
                steps.count,
                bounds,
            )?)
        }
        MetricExpr::Binary { op, lhs, rhs } => {
            let l = eval(lhs, steps, ranges, bounds)?;
            let r = eval(rhs, steps, ranges, bounds)?;
            binary(*op, l, r)
        }
    })
}

/// Every range aggregation of `expr`, left to right, each with the grouping pushed into
/// it when its parent is a `sum`.
pub fn range_aggs(expr: &MetricExpr) -> Vec<(&RangeAgg, Option<Grouping>)> {
    let mut out = Vec::new();
    collect(expr, &mut out);
    out
}

fn collect<'a>(expr: &'a MetricExpr, out: &mut Vec<(&'a RangeAgg, Option<Grouping>)>) {
    if let Some((r, g)) = pushdown(expr) {
        out.push((r, Some(g)));
        return;
    }
    match expr {
        MetricExpr::Range(r) => out.push((r, None)),
        MetricExpr::Vector { inner, .. } => collect(inner, out),
        MetricExpr::Binary { lhs, rhs, .. } => {
            collect(lhs, out);
            collect(rhs, out);
        }
        MetricExpr::Scalar(_) | MetricExpr::VectorLit(_) => {}
    }
}

fn aggregate(
    op: VectorOp,
    k: Option<usize>,
    grouping: Option<&Grouping>,
    inner: Vec<Series>,
    n: usize,
    bounds: Bounds,
) -> Result<Vec<Series>, EvalError> {
    let all = Grouping {
        without: false,
        labels: Vec::new(),
    };
    let g = grouping.unwrap_or(&all);
    let mut groups: Vec<(LabelSet, Vec<Series>)> = Vec::new();
    let mut index: HashMap<LabelSet, usize> = HashMap::new();
    for s in inner {
        let key = project(s.labels.clone(), g);
        match index.get(&key) {
            Some(&i) => groups[i].1.push(s),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![s]));
            }
        }
    }
    let mut out = Vec::new();
    for (key, members) in groups {
        if let (VectorOp::Topk | VectorOp::Bottomk, Some(k)) = (op, k) {
            let mut kept: Vec<Vec<Option<f64>>> = vec![vec![None; n]; members.len()];
            #[allow(clippy::needless_range_loop)] // `step` indexes every member's points
            for step in 0..n {
                let mut present: Vec<(usize, f64)> = members
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.points[step].map(|v| (i, v)))
                    .collect();
                present.sort_by(|a, b| {
                    let o = a.1.total_cmp(&b.1);
                    if op == VectorOp::Topk {
                        o.reverse()
                    } else {
                        o
                    }
                });
                for (i, v) in present.into_iter().take(k) {
                    kept[i][step] = Some(v);
                }
            }
            for (s, points) in members.into_iter().zip(kept) {
                if points.iter().any(Option::is_some) {
                    out.push(Series {
                        labels: s.labels,
                        points,
                    });
                }
            }
            continue;
        }
        let points = (0..n)
            .map(|step| {
                let values = members.iter().filter_map(|s| s.points[step]);
                let (count, sum, min, max) = values.fold(
                    (0usize, 0.0, f64::INFINITY, f64::NEG_INFINITY),
                    |(c, s, mi, ma), v| (c + 1, s + v, mi.min(v), ma.max(v)),
                );
                (count > 0).then_some(match op {
                    VectorOp::Sum => sum,
                    VectorOp::Count => count as f64,
                    VectorOp::Avg => sum / count as f64,
                    VectorOp::Min => min,
                    VectorOp::Max => max,
                    VectorOp::Topk | VectorOp::Bottomk => sum,
                })
            })
            .collect::<Vec<_>>();
        if points.iter().any(Option::is_some) {
            out.push(Series {
                labels: key,
                points,
            });
        }
    }
    if out.len() > bounds.max_series {
        return Err(EvalError::Series(bounds.max_series));
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

fn binary(op: BinOp, l: Value, r: Value) -> Value {
    match (l, r) {
        (Value::Scalar(a), Value::Scalar(b)) => {
            Value::Scalar(a.iter().zip(&b).map(|(x, y)| op.apply(*x, *y)).collect())
        }
        (Value::Scalar(a), Value::Matrix(m)) => Value::Matrix(
            m.into_iter()
                .map(|s| Series {
                    points: s
                        .points
                        .iter()
                        .zip(&a)
                        .map(|(p, x)| p.map(|v| op.apply(*x, v)))
                        .collect(),
                    labels: s.labels,
                })
                .collect(),
        ),
        (Value::Matrix(m), Value::Scalar(b)) => Value::Matrix(
            m.into_iter()
                .map(|s| Series {
                    points: s
                        .points
                        .iter()
                        .zip(&b)
                        .map(|(p, y)| p.map(|v| op.apply(v, *y)))
                        .collect(),
                    labels: s.labels,
                })
                .collect(),
        ),
        (Value::Matrix(a), Value::Matrix(b)) => {
            let rhs: HashMap<&LabelSet, &Series> = b.iter().map(|s| (&s.labels, s)).collect();
            Value::Matrix(
                a.iter()
                    .filter_map(|s| {
                        let other = rhs.get(&s.labels)?;
                        let points: Vec<Option<f64>> = s
                            .points
                            .iter()
                            .zip(&other.points)
                            .map(|(x, y)| match (x, y) {
                                (Some(x), Some(y)) => Some(op.apply(*x, *y)),
                                _ => None,
                            })
                            .collect();
                        points.iter().any(Option::is_some).then(|| Series {
                            labels: s.labels.clone(),
                            points,
                        })
                    })
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const BOUNDS: Bounds = Bounds {
        max_series: 100,
        max_points: 1_000_000,
    };

    fn agg(func: RangeFunc, range: i64) -> RangeAgg {
        RangeAgg {
            func,
            log: LogExpr {
                matchers: Vec::new(),
                stages: Vec::new(),
            },
            range,
            offset: 0,
        }
    }

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn windows_are_left_open_right_closed() {
        // Steps at 10 s, 20 s, 30 s; range 10 s.
        let steps = Steps::range(10 * S, 30 * S, 10 * S);
        let mut acc = RangeAcc::new(&agg(RangeFunc::CountOverTime, 10 * S), steps, None, BOUNDS);
        for t in [0, 1, 10, 11, 25, 30, 31] {
            acc.add(t * S, ls(&[("a", "b")]), 3).unwrap();
        }
        // (0,10] has 1 and 10; (10,20] has 11; (20,30] has 25 and 30.
        assert_eq!(
            acc.finish()[0].points,
            vec![Some(2.0), Some(1.0), Some(2.0)]
        );

        let mut acc = RangeAcc::new(&agg(RangeFunc::BytesRate, 20 * S), steps, None, BOUNDS);
        acc.add(15 * S, ls(&[("a", "b")]), 10).unwrap();
        assert_eq!(acc.finish()[0].points, vec![None, Some(0.5), Some(0.5)]);

        // Range smaller than the step leaves gaps; an instant query is one step.
        let mut acc = RangeAcc::new(
            &agg(RangeFunc::Rate, 2 * S),
            Steps::instant(30 * S),
            None,
            BOUNDS,
        );
        acc.add(29 * S, ls(&[]), 0).unwrap();
        acc.add(28 * S, ls(&[]), 0).unwrap();
        assert_eq!(acc.finish()[0].points, vec![Some(0.5)]);
    }

    #[test]
    fn limits_and_errors() {
        let steps = Steps::range(0, 10 * S, S);
        let mut acc = RangeAcc::new(
            &agg(RangeFunc::CountOverTime, S),
            steps,
            None,
            Bounds {
                max_series: 2,
                max_points: 1000,
            },
        );
        acc.add(S, ls(&[("a", "1")]), 0).unwrap();
        acc.add(S, ls(&[("a", "2")]), 0).unwrap();
        assert_eq!(acc.add(S, ls(&[("a", "3")]), 0), Err(EvalError::Series(2)));
        let mut acc = RangeAcc::new(
            &agg(RangeFunc::CountOverTime, S),
            steps,
            None,
            Bounds {
                max_series: 10,
                max_points: 15,
            },
        );
        acc.add(S, ls(&[("a", "1")]), 0).unwrap();
        assert!(matches!(
            acc.add(S, ls(&[("a", "2")]), 0),
            Err(EvalError::Points { .. })
        ));
        let err = acc
            .add(S, ls(&[("__error__", "JSONParserErr")]), 0)
            .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("pipeline error: 'JSONParserErr'"));
        // Projection folds series before they count.
        let g = Grouping {
            without: false,
            labels: vec!["level".into()],
        };
        let mut acc = RangeAcc::new(
            &agg(RangeFunc::CountOverTime, S),
            steps,
            Some(g),
            Bounds {
                max_series: 1,
                max_points: 1000,
            },
        );
        for i in 0..5 {
            acc.add(S, ls(&[("id", &i.to_string()), ("level", "x")]), 0)
                .unwrap();
        }
        assert_eq!(acc.finish()[0].points[1], Some(5.0));
    }

    #[test]
    fn aggregations_and_arithmetic() {
        let m = vec![
            Series {
                labels: ls(&[("l", "a"), ("s", "1")]),
                points: vec![Some(1.0), Some(5.0)],
            },
            Series {
                labels: ls(&[("l", "a"), ("s", "2")]),
                points: vec![Some(3.0), None],
            },
            Series {
                labels: ls(&[("l", "b"), ("s", "1")]),
                points: vec![None, Some(2.0)],
            },
        ];
        let by_l = Grouping {
            without: false,
            labels: vec!["l".into()],
        };
        let sum = aggregate(VectorOp::Sum, None, Some(&by_l), m.clone(), 2, BOUNDS).unwrap();
        assert_eq!(
            sum[0],
            Series {
                labels: ls(&[("l", "a")]),
                points: vec![Some(4.0), Some(5.0)]
            }
        );
        assert_eq!(sum[1].points, vec![None, Some(2.0)]);
        let without_s = Grouping {
            without: true,
            labels: vec!["s".into()],
        };
        assert_eq!(
            aggregate(VectorOp::Sum, None, Some(&without_s), m.clone(), 2, BOUNDS).unwrap(),
            sum
        );
        let count = aggregate(VectorOp::Count, None, None, m.clone(), 2, BOUNDS).unwrap();
        assert_eq!(count[0].points, vec![Some(2.0), Some(2.0)]);
        let avg = aggregate(VectorOp::Avg, None, None, m.clone(), 2, BOUNDS).unwrap();
        assert_eq!(avg[0].points, vec![Some(2.0), Some(3.5)]);
        let max = aggregate(VectorOp::Max, None, None, m.clone(), 2, BOUNDS).unwrap();
        assert_eq!(max[0].points, vec![Some(3.0), Some(5.0)]);
        let min = aggregate(VectorOp::Min, None, Some(&by_l), m.clone(), 2, BOUNDS).unwrap();
        assert_eq!(min[0].points, vec![Some(1.0), Some(5.0)]);
        let top = aggregate(VectorOp::Topk, Some(1), None, m.clone(), 2, BOUNDS).unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].points, vec![None, Some(5.0)]);
        assert_eq!(top[1].points, vec![Some(3.0), None]);
        let bottom = aggregate(
            VectorOp::Bottomk,
            Some(1),
            Some(&by_l),
            m.clone(),
            2,
            BOUNDS,
        )
        .unwrap();
        assert_eq!(bottom.len(), 2);

        let two = binary(
            BinOp::Div,
            Value::Matrix(m.clone()),
            Value::Scalar(vec![2.0, 2.0]),
        );
        let Value::Matrix(two) = two else { panic!() };
        assert_eq!(two[0].points, vec![Some(0.5), Some(2.5)]);
        let Value::Matrix(same) = binary(
            BinOp::Add,
            Value::Matrix(m.clone()),
            Value::Matrix(m[..1].to_vec()),
        ) else {
            panic!()
        };
        assert_eq!(
            same,
            vec![Series {
                labels: m[0].labels.clone(),
                points: vec![Some(2.0), Some(10.0)]
            }]
        );
        assert_eq!(
            binary(
                BinOp::Pow,
                Value::Scalar(vec![2.0]),
                Value::Scalar(vec![3.0])
            ),
            Value::Scalar(vec![8.0])
        );
    }
}
