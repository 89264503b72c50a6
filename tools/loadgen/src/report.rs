//! The end of a run: a [`Summary`] of the merged figures, as a table for people or one
//! JSON object for the benchmark harness.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::mix::{Target, ENDPOINTS};
use crate::stats::{new_histogram, ErrorKind, Recorder};

/// Latency percentiles of one row, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Latency {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        })
    }
}

/// One endpoint's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub endpoint: String,
    pub requests: u64,
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub latency: Option<Latency>,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// From the start until the last answer.
    pub elapsed: Duration,
    /// From the start until the last request was sent; the rate is measured over it.
    pub sending: Duration,
    pub target_rate: Option<u64>,
    pub requests: u64,
    pub errors: u64,
    pub unsent: u64,
    /// Requests sent more than 10 ms behind their schedule.
    pub late: u64,
    pub errors_by_kind: BTreeMap<ErrorKind, u64>,
    /// Only the endpoints of the services driven.
    pub rows: Vec<Row>,
    /// All endpoints together.
    pub all: Option<Latency>,
}

impl Summary {
    pub fn new(
        recorder: &Recorder,
        targets: &[Target],
        elapsed: Duration,
        target_rate: Option<u64>,
        unsent: u64,
    ) -> Summary {
        let mut all = new_histogram();
        let mut errors_by_kind = BTreeMap::new();
        let mut rows = Vec::new();
        for (endpoint, stats) in ENDPOINTS.iter().zip(&recorder.endpoints) {
            if !targets.contains(&endpoint.target) {
                continue;
            }
            let _ = all.add(&stats.latency_micros);
            for (kind, n) in &stats.errors {
                *errors_by_kind.entry(*kind).or_default() += n;
            }
            rows.push(Row {
                endpoint: endpoint.to_string(),
                requests: stats.requests(),
                errors: stats.error_count(),
                statuses: stats.statuses.clone(),
                latency: Latency::of(&stats.latency_micros),
            });
        }
        Summary {
            elapsed,
            sending: elapsed,
            target_rate,
            requests: rows.iter().map(|r| r.requests).sum(),
            errors: rows.iter().map(|r| r.errors).sum(),
            unsent,
            late: 0,
            errors_by_kind,
            rows,
            all: Latency::of(&all),
        }
    }

    /// Requests per second over the span in which they were sent; the few
    /// milliseconds of waiting for the last answers do not count against it.
    pub fn achieved_rate(&self) -> f64 {
        let secs = self.sending.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let target = match self.target_rate {
            Some(r) => format!("target {r} req/s"),
            None => "no target rate".to_owned(),
        };
        let _ = writeln!(
            out,
            "{} requests in {:.2} s: {:.0} req/s achieved ({target}), {} errors, {} unsent",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.achieved_rate(),
            self.errors,
            self.unsent,
        );
        let _ = writeln!(
            out,
            "\n{:<34} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8}  statuses",
            "endpoint", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        let line =
            |out: &mut String, name: &str, req: u64, err: u64, lat: Option<Latency>, st: &str| {
                let cell = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
                let _ = writeln!(
                    out,
                    "{:<34} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8}  {st}",
                    name,
                    req,
                    err,
                    cell(lat.map(|l| l.p50_ms)),
                    cell(lat.map(|l| l.p90_ms)),
                    cell(lat.map(|l| l.p99_ms)),
                    cell(lat.map(|l| l.max_ms)),
                );
            };
        for row in &self.rows {
            let statuses: Vec<String> = row
                .statuses
                .iter()
                .map(|(s, n)| format!("{s}:{n}"))
                .collect();
            line(
                &mut out,
                &row.endpoint,
                row.requests,
                row.errors,
                row.latency,
                &statuses.join(" "),
            );
        }
        line(&mut out, "all", self.requests, self.errors, self.all, "");
        if !self.errors_by_kind.is_empty() {
            let _ = writeln!(out, "\nerrors by kind:");
            for (kind, n) in &self.errors_by_kind {
                let _ = writeln!(out, "  {:<14} {n}", kind.to_string());
            }
        }
        if self.late > 0 {
            let _ = writeln!(
                out,
                "\n{} requests were sent more than 10 ms after they fell due: the generator \
                 fell behind its schedule for a while, and their latency leaves that wait out.",
                self.late
            );
        }
        if self.unsent > 0 {
            let _ = writeln!(
                out,
                "\n{} requests fell due but were not sent: the target rate was not held \
                 (every --concurrency slot busy, or the generator saturated).",
                self.unsent
            );
        }
        out
    }

    /// The summary as one JSON object, for scripts and the benchmark harness.
    pub fn json(&self) -> Value {
        let latency = |l: Option<Latency>| match l {
            Some(l) => json!({
                "p50_ms": l.p50_ms, "p90_ms": l.p90_ms, "p99_ms": l.p99_ms, "max_ms": l.max_ms,
            }),
            None => json!({"p50_ms": null, "p90_ms": null, "p99_ms": null, "max_ms": null}),
        };
        let endpoints: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut v = latency(r.latency);
                v["endpoint"] = json!(r.endpoint);
                v["requests"] = json!(r.requests);
                v["errors"] = json!(r.errors);
                v["statuses"] = Value::Object(counts(&r.statuses));
                v
            })
            .collect();
        let mut v = latency(self.all);
        v["elapsed_s"] = json!(self.elapsed.as_secs_f64());
        v["target_rate"] = json!(self.target_rate);
        v["achieved_rate"] = json!(self.achieved_rate());
        v["requests"] = json!(self.requests);
        v["errors"] = json!(self.errors);
        v["unsent"] = json!(self.unsent);
        v["late"] = json!(self.late);
        v["errors_by_kind"] = Value::Object(counts(&self.errors_by_kind));
        v["endpoints"] = Value::Array(endpoints);
        v
    }
}

fn counts<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> Map<String, Value> {
    m.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Outcome;

    fn summary() -> Summary {
        let mut r = Recorder::default();
        for ms in 1..=100 {
            r.record(
                1,
                &[200],
                Outcome::Answered {
                    status: 200,
                    latency: Duration::from_millis(ms),
                },
            );
        }
        r.record(1, &[200], Outcome::Failed(ErrorKind::Timeout));
        r.record(
            2,
            &[200],
            Outcome::Answered {
                status: 503,
                latency: Duration::from_millis(1),
            },
        );
        Summary {
            late: 4,
            ..Summary::new(&r, &[Target::User], Duration::from_secs(2), Some(60), 3)
        }
    }

    #[test]
    fn figures_add_up() {
        let s = summary();
        assert_eq!(s.rows.len(), 3, "only user-service's endpoints");
        assert_eq!(s.requests, 102);
        assert_eq!(s.errors, 2);
        assert_eq!(s.achieved_rate(), 51.0);
        assert_eq!(s.errors_by_kind[&ErrorKind::Timeout], 1);
        assert_eq!(s.errors_by_kind[&ErrorKind::Status(503)], 1);
        let l = s.rows[1].latency.unwrap();
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
        assert!(s.rows[0].latency.is_none());
    }

    #[test]
    fn the_table_and_the_json_say_the_same() {
        let s = summary();
        let table = s.table();
        assert!(
            table.starts_with(
                "102 requests in 2.00 s: 51 req/s achieved (target 60 req/s), 2 errors, 3 unsent"
            ),
            "{table}"
        );
        assert!(table.contains("user-service GET /users "), "{table}");
        assert!(table.contains("timeout"), "{table}");
        assert!(table.contains("not sent"), "{table}");
        assert!(
            table.contains("4 requests were sent more than 10 ms after"),
            "{table}"
        );
        let j = s.json();
        assert_eq!(j["requests"], 102);
        assert_eq!(j["unsent"], 3);
        assert_eq!(j["late"], 4);
        assert_eq!(j["errors_by_kind"]["status 503"], 1);
        assert_eq!(j["endpoints"][1]["endpoint"], "user-service GET /users");
        assert_eq!(j["endpoints"][1]["statuses"]["200"], 100);
        assert_eq!(j["endpoints"][0]["p50_ms"], Value::Null);
    }
}
