//! The figures: what each one is called, its median and spread over the runs, the
//! table that shows them, the JSON file that keeps them, and the comparison of two.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A figure the harness knows by name, with its label and unit.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
}

pub const fn known(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    higher_is_better: bool,
) -> Known {
    Known {
        key,
        label,
        unit,
        higher_is_better,
    }
}

/// One group of figures from one source (a component's benchmark, or the harness's own
/// measurement).
#[derive(Debug, Clone)]
pub struct Section {
    /// Short id that prefixes the keys in the JSON file: `sidecar`, `aggregator`, ...
    pub id: &'static str,
    pub title: String,
    /// The command it came from, for the reader.
    pub source: String,
    pub known: &'static [Known],
    /// Values per key, one per run; `Err` says why there are none.
    pub values: Result<BTreeMap<String, Vec<f64>>, String>,
}

/// Median, spread and count of one figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: v[0],
            max: v[n - 1],
            runs: n,
        })
    }
}

/// A number as people read it: thousands grouped, about three significant digits.
pub fn human(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let a = x.abs();
    if a >= 1000.0 {
        let digits = format!("{:.0}", a);
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{}{grouped}", if x < 0.0 { "-" } else { "" })
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// What a run of the harness produced, as kept in the `--json` file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub machine: String,
    pub commit: String,
    pub quick: bool,
    pub figures: BTreeMap<String, Figure>,
    /// Sections without figures, and why.
    pub missing: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figure {
    pub label: String,
    pub unit: String,
    pub higher_is_better: bool,
    #[serde(flatten)]
    pub stat: Stat,
}

/// The rows of a section: known figures first, in their order, then any others.
fn rows(section: &Section, values: &BTreeMap<String, Vec<f64>>) -> Vec<(String, Figure)> {
    let mut out = Vec::new();
    for k in section.known {
        if let Some(stat) = values.get(k.key).and_then(|v| Stat::of(v)) {
            out.push((
                format!("{}.{}", section.id, k.key),
                Figure {
                    label: k.label.to_owned(),
                    unit: k.unit.to_owned(),
                    higher_is_better: k.higher_is_better,
                    stat,
                },
            ));
        }
    }
    for (key, v) in values {
        if section.known.iter().any(|k| k.key == key) {
            continue;
        }
        if let Some(stat) = Stat::of(v) {
            // A figure the harness does not know yet: shown under its own name.
            out.push((
                format!("{}.{key}", section.id),
                Figure {
                    label: key.clone(),
                    unit: String::new(),
                    higher_is_better: key.contains("per_s"),
                    stat,
                },
            ));
        }
    }
    out
}

/// Collects the sections into the results kept on disk.
pub fn results(sections: &[Section], machine: &str, commit: &str, quick: bool) -> Results {
    let mut figures = BTreeMap::new();
    let mut missing = BTreeMap::new();
    for s in sections {
        match &s.values {
            Ok(values) => {
                figures.extend(rows(s, values));
                for k in s.known {
                    if !values.contains_key(k.key) {
                        missing.insert(
                            format!("{}.{}", s.id, k.key),
                            "not reported by the benchmark".to_owned(),
                        );
                    }
                }
            }
            Err(why) => {
                missing.insert(s.id.to_owned(), why.clone());
            }
        }
    }
    Results {
        machine: machine.to_owned(),
        commit: commit.to_owned(),
        quick,
        figures,
        missing,
    }
}

/// The table printed at the end of a run.
pub fn table(sections: &[Section]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<64} {:>12} {:>25} {:>4}",
        "figure", "median", "spread (min-max)", "runs"
    );
    for s in sections {
        let _ = writeln!(out, "\n{} ({})", s.title, s.source);
        match &s.values {
            Err(why) => {
                let _ = writeln!(out, "  not measured: {why}");
            }
            Ok(values) => {
                for (_, f) in rows(s, values) {
                    let label = if f.unit.is_empty() {
                        f.label.clone()
                    } else {
                        format!("{} ({})", f.label, f.unit)
                    };
                    let spread = format!("{} - {}", human(f.stat.min), human(f.stat.max));
                    let _ = writeln!(
                        out,
                        "  {:<62} {:>12} {:>25} {:>4}",
                        label,
                        human(f.stat.median),
                        spread,
                        f.stat.runs
                    );
                }
                for k in s.known.iter().filter(|k| !values.contains_key(k.key)) {
                    let _ = writeln!(out, "  {:<62} {:>12}", k.label, "not reported");
                }
            }
        }
    }
    out
}

/// A results file as the Markdown table kept in BENCHMARKS.md.
/// `sections` gives each section's id, title and known figures, whose order the rows
/// follow.
pub fn markdown(r: &Results, sections: &[(&str, &str, &[Known])]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Commit `{}`{}; machine: {}.\n",
        r.commit,
        if r.quick {
            ", `--quick` (rough figures)"
        } else {
            ""
        },
        r.machine
    );
    let _ = writeln!(out, "| figure | median | spread (min – max) | runs |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (id, title, known) in sections {
        let prefix = format!("{id}.");
        // Known figures in their order and with today's labels (an older file may carry
        // older ones), then the others.
        let mut rows: Vec<(usize, String, String, &Stat)> = r
            .figures
            .iter()
            .filter_map(|(k, f)| {
                let key = k.strip_prefix(&prefix)?;
                Some(match known.iter().position(|x| x.key == key) {
                    Some(at) => (
                        at,
                        known[at].label.to_owned(),
                        known[at].unit.to_owned(),
                        &f.stat,
                    ),
                    None => (usize::MAX, f.label.clone(), f.unit.clone(), &f.stat),
                })
            })
            .collect();
        rows.sort_by_key(|row| row.0);
        if let Some(why) = r.missing.get(*id) {
            let _ = writeln!(out, "| **{title}** | not measured: {why} | | |");
            continue;
        }
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "| **{title}** | | | |");
        for (_, label, unit, stat) in rows {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" ({unit})")
            };
            let _ = writeln!(
                out,
                "| {label}{unit} | {} | {} – {} | {} |",
                human(stat.median),
                human(stat.min),
                human(stat.max),
                stat.runs
            );
        }
    }
    out
}

/// Two result files side by side: the median of each figure and how it moved.
pub fn compare(base: &Results, new: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "base: {} ({})", base.commit, base.machine);
    let _ = writeln!(out, "new:  {} ({})", new.commit, new.machine);
    if base.quick != new.quick {
        let _ = writeln!(
            out,
            "warning: one run used --quick and the other did not; the figures are not comparable."
        );
    }
    let _ = writeln!(
        out,
        "\n{:<64} {:>12} {:>12} {:>15}",
        "figure", "base", "new", "change"
    );
    let mut keys: Vec<&String> = base.figures.keys().chain(new.figures.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (b, n) = (base.figures.get(key), new.figures.get(key));
        let f = n.or(b).expect("the key came from one of the two");
        let label = if f.unit.is_empty() {
            f.label.clone()
        } else {
            format!("{} ({})", f.label, f.unit)
        };
        let cell = |x: Option<&Figure>| x.map_or("-".to_owned(), |x| human(x.stat.median));
        let change = match (b, n) {
            (Some(b), Some(n)) if b.stat.median != 0.0 => {
                let pct = (n.stat.median - b.stat.median) / b.stat.median.abs() * 100.0;
                let better = (pct > 0.0) == f.higher_is_better;
                // Within the spread of either side, a move is noise, not a change.
                let noise = n.stat.median >= b.stat.min && n.stat.median <= b.stat.max
                    || b.stat.median >= n.stat.min && b.stat.median <= n.stat.max;
                let verdict = if pct.abs() < 0.05 || noise {
                    "~"
                } else if better {
                    "better"
                } else {
                    "worse"
                };
                format!("{pct:+.1}% {verdict}")
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<64} {:>12} {:>12} {:>15}",
            label,
            cell(b),
            cell(n),
            change
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[Known] = &[
        known("rate_per_s", "throughput", "lines/s", true),
        known("p99_ms", "latency p99", "ms", false),
    ];

    fn section(values: &[(&str, &[f64])]) -> Section {
        Section {
            id: "x",
            title: "Example".to_owned(),
            source: "example".to_owned(),
            known: KNOWN,
            values: Ok(values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect()),
        }
    }

    #[test]
    fn median_and_spread() {
        assert_eq!(
            Stat::of(&[3.0, 1.0, 2.0]),
            Some(Stat {
                median: 2.0,
                min: 1.0,
                max: 3.0,
                runs: 3
            })
        );
        assert_eq!(Stat::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(Stat::of(&[f64::NAN]), None);
        assert_eq!(Stat::of(&[]), None);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(human(1234567.8), "1,234,568");
        assert_eq!(human(-4321.0), "-4,321");
        assert_eq!(human(999.4), "999");
        assert_eq!(human(12.345), "12.3");
        assert_eq!(human(0.1234), "0.12");
    }

    #[test]
    fn the_table_shows_known_unknown_and_missing() {
        let sections = [
            section(&[("rate_per_s", &[10.0, 30.0, 20.0]), ("extra", &[1.0])]),
            Section {
                values: Err("not on this branch yet".to_owned()),
                id: "y",
                ..section(&[])
            },
        ];
        let t = table(&sections);
        assert!(t.contains("throughput (lines/s)"), "{t}");
        assert!(t.contains("20.0"), "{t}");
        assert!(t.contains("10.0 - 30.0"), "{t}");
        assert!(t.contains("extra"), "{t}");
        assert!(
            t.contains("latency p99") && t.contains("not reported"),
            "{t}"
        );
        assert!(t.contains("not measured: not on this branch yet"), "{t}");

        let r = results(&sections, "machine", "abc123", true);
        assert_eq!(r.figures["x.rate_per_s"].stat.median, 20.0);
        assert!(r.figures.contains_key("x.extra"));
        assert_eq!(r.missing["y"], "not on this branch yet");
        assert!(r.missing.contains_key("x.p99_ms"));
        let back: Results = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn comparing_says_which_way_each_figure_moved() {
        let base = results(
            &[section(&[
                ("rate_per_s", &[100.0, 101.0, 99.0]),
                ("p99_ms", &[10.0]),
            ])],
            "m",
            "aaa",
            false,
        );
        let new = results(
            &[section(&[("rate_per_s", &[150.0]), ("p99_ms", &[10.05])])],
            "m",
            "bbb",
            false,
        );
        let md = markdown(&new, &[("x", "Example", KNOWN), ("y", "Other", KNOWN)]);
        assert!(md.contains("Commit `bbb`; machine: m."), "{md}");
        assert!(md.contains("| **Example** | | | |"), "{md}");
        assert!(
            md.contains("| throughput (lines/s) | 150 | 150 – 150 | 1 |"),
            "{md}"
        );
        assert!(!md.contains("Other"), "{md}");
        let c = compare(&base, &new);
        assert!(c.contains("+50.0% better"), "{c}");
        assert!(c.contains("+0.5% worse"), "{c}");
        assert!(!c.contains("warning"), "{c}");
    }
}
