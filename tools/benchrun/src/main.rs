//! benchrun: every whole-system figure of the project, reproduced by one command
//! (`scripts/bench.sh`) and printed as one table.
//!
//! In the order a run goes:
//! - [`machine`]: the line saying where and from which commit the figures come.
//! - [`components`]: each component's own benchmark example, built and run several
//!   times, its `BENCH_JSON` line collected.
//! - [`sidecar_cost`]: the services under `loadgen`, with and without the sidecars.
//! - [`figures`]: medians and spreads, the table, the `--json` file, `--compare`.
//! - [`children`]: every process started is killed on exit, Ctrl-C included.

mod children;
mod components;
mod figures;
mod machine;
mod sidecar_cost;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::components::{Workspace, BENCHES};
use crate::figures::{Results, Section};

const EXIT_USAGE: u8 = 64;
const DEFAULT_RUNS: usize = 3;
/// The load of the sidecar-cost measurement, full and `--quick`.
const COST_RATE: u64 = 2_000;
const COST_DURATION: Duration = Duration::from_secs(15);
const QUICK_COST_RATE: u64 = 1_000;
const QUICK_COST_DURATION: Duration = Duration::from_secs(4);

const USAGE: &str = "benchrun: run every whole-system benchmark and print one table.

USAGE:
    scripts/bench.sh [--quick] [--runs N] [--only LIST] [--json FILE]
    scripts/bench.sh --compare BASE.json NEW.json
    scripts/bench.sh --markdown FILE.json

FLAGS:
    --quick          rough figures: each benchmark once, with its --quick sizes
    --runs N         runs of each benchmark; the table shows the median and the spread [3; 1 with --quick]
    --only LIST      comma-separated sections: sidecar, aggregator, loki, metrics, cost [all]
    --json FILE      also write the figures (median, min, max, runs) and the machine to FILE
    --bin-dir DIR    measure the cost of the sidecars with the binaries in DIR (built
                     elsewhere) instead of this workspace's release build
    --compare A B    print two --json files side by side with the change of each figure
    --markdown FILE  print a --json file as the Markdown table of BENCHMARKS.md
    -h, --help       print this help
";

#[derive(Debug, Clone, PartialEq)]
enum Mode {
    Run {
        quick: bool,
        runs: Option<usize>,
        only: Option<Vec<String>>,
        json: Option<PathBuf>,
        bin_dir: Option<PathBuf>,
    },
    Compare(PathBuf, PathBuf),
    Markdown(PathBuf),
    Help,
}

fn parse(args: &[String]) -> Result<Mode, String> {
    let (mut quick, mut runs, mut only, mut json, mut bin_dir) = (false, None, None, None, None);
    let mut i = 0;
    let value = |i: &mut usize, flag: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i)
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))
    };
    while i < args.len() {
        match args[i].as_str() {
            "-h" | "--help" => return Ok(Mode::Help),
            "--quick" => quick = true,
            "--runs" => {
                let v = value(&mut i, "--runs")?;
                match v.parse::<usize>() {
                    Ok(n) if (1..=50).contains(&n) => runs = Some(n),
                    _ => return Err(format!("--runs {v:?}: expected a number from 1 to 50")),
                }
            }
            "--only" => {
                let v = value(&mut i, "--only")?;
                let list: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
                let valid = ["sidecar", "aggregator", "loki", "metrics", "cost"];
                if let Some(bad) = list.iter().find(|s| !valid.contains(&s.as_str())) {
                    return Err(format!(
                        "--only: unknown section {bad:?}; use {}",
                        valid.join(", ")
                    ));
                }
                only = Some(list);
            }
            "--json" => json = Some(PathBuf::from(value(&mut i, "--json")?)),
            "--bin-dir" => bin_dir = Some(PathBuf::from(value(&mut i, "--bin-dir")?)),
            "--markdown" => {
                let file = value(&mut i, "--markdown")?;
                if i + 1 != args.len() {
                    return Err("--markdown takes one file and nothing else".to_owned());
                }
                return Ok(Mode::Markdown(file.into()));
            }
            "--compare" => {
                let a = value(&mut i, "--compare")?;
                let b = value(&mut i, "--compare")?;
                if i + 1 != args.len() {
                    return Err("--compare takes two files and nothing else".to_owned());
                }
                return Ok(Mode::Compare(a.into(), b.into()));
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
        i += 1;
    }
    Ok(Mode::Run {
        quick,
        runs,
        only,
        json,
        bin_dir,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match parse(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("benchrun: {e}; try --help");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = match mode {
        Mode::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Mode::Compare(a, b) => compare(&a, &b),
        Mode::Markdown(file) => load(&file).map(|r| {
            let mut sections: Vec<(&str, &str, &[figures::Known])> =
                BENCHES.iter().map(|b| (b.id, b.title, b.known)).collect();
            sections.push((
                "cost",
                "Cost of the sidecars to the services",
                sidecar_cost::KNOWN,
            ));
            print!("{}", figures::markdown(&r, &sections));
        }),
        Mode::Run {
            quick,
            runs,
            only,
            json,
            bin_dir,
        } => {
            children::install_signal_handler();
            let runs = runs.unwrap_or(if quick { 1 } else { DEFAULT_RUNS });
            run(quick, runs, only.as_deref(), json.as_deref(), bin_dir)
        }
    };
    match result {
        Ok(()) if children::interrupted() => ExitCode::from(130),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchrun: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(p: &Path) -> anyhow::Result<Results> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a benchrun --json file", p.display()))
}

fn compare(a: &Path, b: &Path) -> anyhow::Result<()> {
    print!("{}", figures::compare(&load(a)?, &load(b)?));
    Ok(())
}

/// The workspace root: the nearest directory up from here with a `[workspace]` manifest.
fn workspace_root() -> anyhow::Result<PathBuf> {
    let here = std::env::current_dir()?;
    here.ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
        })
        .map(Path::to_path_buf)
        .context("run benchrun from inside the project's workspace")
}

fn run(
    quick: bool,
    runs: usize,
    only: Option<&[String]>,
    json: Option<&Path>,
    bin_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let wanted = |id: &str| only.map_or(true, |o| o.iter().any(|x| x == id));
    let root = workspace_root()?;
    let ws = Workspace::load(&root)?;
    let machine = machine::describe(&root);
    let commit = machine::commit(&root);
    eprintln!("benchrun: {machine}; commit {commit}");

    // scripts/bench.sh has just built the workspace (binaries, loadgen, this harness);
    // only the benchmark examples are built here, each on its own so one that does not
    // compile costs only its own figures.
    // Every example is built before anything is measured, so no build runs beside a
    // measurement.
    let mut built = Vec::new();
    for bench in BENCHES.iter().filter(|b| wanted(b.id)) {
        if children::interrupted() {
            break;
        }
        let program = ws.find(bench).and_then(|()| {
            eprintln!(
                "benchrun: Building {} (cargo build --release -p {} --example {})...",
                bench.title, bench.package, bench.example
            );
            components::build(&root, &[bench.package], &[bench.example])
                .map(|()| ws.target_dir.join("release/examples").join(bench.example))
                .map_err(|e| format!("the build failed: {}", e.lines().last().unwrap_or_default()))
        });
        if let Err(why) = &program {
            eprintln!("benchrun: {}: {why}", bench.title);
        }
        built.push((bench, program));
    }
    let building = started.elapsed();

    let scratch = tempfile::Builder::new().prefix("benchrun-").tempdir()?;
    let mut sections: Vec<Section> = Vec::new();
    for (bench, program) in built {
        if children::interrupted() {
            break;
        }
        sections.push(match program {
            Ok(program) => components::run(bench, &program, runs, quick, scratch.path()),
            Err(why) => Section {
                id: bench.id,
                title: bench.title.to_owned(),
                source: format!("-p {} --example {}", bench.package, bench.example),
                known: bench.known,
                values: Err(why),
            },
        });
    }
    if wanted("cost") && !children::interrupted() {
        // A component is there when its binary is: in the workspace's release build, or
        // in the directory given.
        let release_dir = bin_dir.unwrap_or_else(|| ws.target_dir.join("release"));
        let present = |bin: &str| release_dir.join(bin).is_file();
        let plan = sidecar_cost::Plan {
            rate: if quick { QUICK_COST_RATE } else { COST_RATE },
            duration: if quick {
                QUICK_COST_DURATION
            } else {
                COST_DURATION
            },
            runs,
            aggregator: present("log-aggregator"),
            logging_sidecar: present("logging-sidecar"),
            metrics_sidecar: present("metrics-sidecar"),
            release_dir,
        };
        sections.push(sidecar_cost::run(&plan, scratch.path()));
    }
    if children::interrupted() {
        eprintln!("benchrun: Interrupted; every process it started has been stopped.");
        return Ok(());
    }

    println!(
        "Whole-system benchmarks{}: median of {runs} run(s) each, spread is min - max",
        if quick {
            " (--quick: rough figures)"
        } else {
            ""
        }
    );
    println!("machine: {machine}");
    println!("commit:  {commit}");
    println!();
    print!("{}", figures::table(&sections));
    println!(
        "\nMeasuring took {:.0} s, after {:.0} s building the benchmark examples.",
        (started.elapsed() - building).as_secs_f64(),
        building.as_secs_f64()
    );
    if let Some(path) = json {
        let results = figures::results(&sections, &machine, &commit, quick);
        std::fs::write(path, serde_json::to_string_pretty(&results)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("benchrun: Figures written to {}.", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags() {
        assert_eq!(
            parse(&args(&[
                "--quick",
                "--only",
                "cost,metrics",
                "--json",
                "x.json"
            ])),
            Ok(Mode::Run {
                quick: true,
                runs: None,
                only: Some(vec!["cost".into(), "metrics".into()]),
                json: Some("x.json".into()),
                bin_dir: None,
            })
        );
        assert_eq!(
            parse(&args(&["--compare", "a", "b"])),
            Ok(Mode::Compare("a".into(), "b".into()))
        );
        assert!(parse(&args(&["--runs", "0"])).is_err());
        assert!(parse(&args(&["--only", "everything"]))
            .unwrap_err()
            .contains("unknown section"));
        assert!(parse(&args(&["--compare", "a"])).is_err());
        assert_eq!(
            parse(&args(&["--markdown", "r.json"])),
            Ok(Mode::Markdown("r.json".into()))
        );
        assert!(parse(&args(&["--fast"]))
            .unwrap_err()
            .contains("unknown flag"));
    }
}
