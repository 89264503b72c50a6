//! How the aggregator benchmarks print what they measured, alike: the load average, a
//! table with one column per store or setup and one row per figure, and a last line
//! `BENCH_JSON {...}` with each figure as `<column>_<figure>`, rounded to 3 decimals.

use serde_json::json;

use super::harness::QueryFigures;

/// The table being printed: the figures of each column, and the widths.
pub struct Table<'a, F> {
    columns: &'a [(String, F)],
    label_width: usize,
    column_width: usize,
}

impl<'a, F> Table<'a, F> {
    /// Prints the load average, then the header row.
    pub fn start(columns: &'a [(String, F)], label_width: usize, column_width: usize) -> Self {
        if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
            println!("load average at the end: {}", load.trim());
        }
        println!();
        print!("{:<label_width$}", "figure");
        for (name, _) in columns {
            print!(" {name:>column_width$}");
        }
        println!();
        Table {
            columns,
            label_width,
            column_width,
        }
    }

    /// One figure for every column, with `precision` decimals.
    pub fn row(&self, name: &str, get: &dyn Fn(&F) -> f64, precision: usize) {
        print!("{name:<w$}", w = self.label_width);
        for (_, f) in self.columns {
            print!(" {:>w$.precision$}", get(f), w = self.column_width);
        }
        println!();
    }

    /// p50 and p99 of each kind of query (the kinds of the first column).
    pub fn query_rows(&self, queries: fn(&F) -> &[QueryFigures]) {
        let Some((_, first)) = self.columns.first() else {
            return;
        };
        for (i, q) in queries(first).iter().enumerate() {
            let at = |f: &F, p99: bool| {
                queries(f)
                    .get(i)
                    .map_or(f64::NAN, |q| if p99 { q.p99 } else { q.p50 })
            };
            self.row(&format!("query {} p50 (ms)", q.name), &|f| at(f, false), 2);
            self.row(&format!("query {} p99 (ms)", q.name), &|f| at(f, true), 2);
        }
    }
}

/// The `query_<kind>_p50_ms` and `query_<kind>_p99_ms` figures of `BENCH_JSON`.
pub fn query_json(queries: &[QueryFigures]) -> Vec<(String, f64)> {
    queries
        .iter()
        .flat_map(|q| {
            [
                (format!("query_{}_p50_ms", q.name), q.p50),
                (format!("query_{}_p99_ms", q.name), q.p99),
            ]
        })
        .collect()
}

/// Prints `BENCH_JSON {...}`: `records`, then `figures` of each column.
pub fn print_bench_json<F>(
    records: usize,
    columns: &[(String, F)],
    figures: impl Fn(&F) -> Vec<(String, f64)>,
) {
    let mut out = serde_json::Map::new();
    out.insert("records".into(), json!(records));
    for (column, f) in columns {
        for (key, v) in figures(f) {
            out.insert(
                format!("{column}_{key}"),
                json!((v * 1000.0).round() / 1000.0),
            );
        }
    }
    println!("BENCH_JSON {}", serde_json::Value::Object(out));
}
