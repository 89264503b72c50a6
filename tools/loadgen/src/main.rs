//! loadgen: open-loop HTTP load against the user, product and order services.
//!
//! `scripts/load.sh` builds and runs it. In the order a run goes:
//! - [`options`]: the flags, every bad one reported before anything is sent.
//! - [`preflight`]: each target must answer `GET /health`, or the run does not start.
//! - [`mix`]: which requests are sent, to which endpoint, expecting which statuses.
//! - [`pacing`]: when each request is due at the target rate (open loop).
//! - [`worker`]: the sending threads, each with its own runtime, client and recorder.
//! - [`stats`]: per-endpoint latency histograms, statuses and errors.
//! - [`progress`]: the live line on stderr while the workers run.
//! - [`report`]: the summary, a table or one JSON object on stdout.

mod mix;
mod options;
mod pacing;
mod preflight;
mod progress;
mod report;
mod stats;
mod worker;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mix::{Target, TEMPLATES};
use crate::options::{Command, Options, USAGE};
use crate::pacing::{share, Pace};
use crate::report::Summary;
use crate::stats::{Live, Recorder};

/// A flag was wrong (`EX_USAGE`).
const EXIT_USAGE: u8 = 64;
/// A target did not answer before the run (`EX_UNAVAILABLE`).
const EXIT_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = match options::parse(std::env::args().skip(1), cpus) {
        Ok(Command::Run(o)) => o,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("loadgen {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(errors) => {
            for e in errors {
                eprintln!("loadgen: {e}");
            }
            eprintln!("loadgen: try --help");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    let unreachable = actix_rt::System::new().block_on(preflight::check(&options.targets));
    if !unreachable.is_empty() {
        for p in unreachable {
            eprintln!("loadgen: {p}");
        }
        eprintln!("loadgen: start the services first (or point --user-url, --product-url, --order-url at them); nothing was sent.");
        return ExitCode::from(EXIT_UNAVAILABLE);
    }

    if !options.quiet {
        let rate = options
            .rate
            .map_or("as fast as possible".to_owned(), |r| format!("{r} req/s"));
        eprintln!(
            "loadgen: sending {rate} for {:.1} s, at most {} in flight, on {} threads, to {}.",
            options.duration.as_secs_f64(),
            options.concurrency,
            options.threads,
            options
                .targets
                .iter()
                .map(|(t, url)| format!("{} at {url}", t.service()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match run(&options) {
        Ok(summary) => {
            if options.json {
                println!("{}", summary.json());
            } else {
                print!("{}", summary.table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Spreads the run over the threads, waits for them and sums up.
fn run(options: &Options) -> Result<Summary, String> {
    let targets: Vec<Target> = options.targets.iter().map(|(t, _)| *t).collect();
    let sequence = Arc::new(mix::sequence(&targets));
    let urls = Arc::new(
        TEMPLATES
            .iter()
            .map(|t| {
                let target = mix::ENDPOINTS[t.endpoint].target;
                options
                    .targets
                    .iter()
                    .find(|(x, _)| *x == target)
                    .map_or_else(String::new, |(_, base)| format!("{base}{}", t.path))
            })
            .collect::<Vec<_>>(),
    );
    let live = Arc::new(Live::default());
    let threads = options.threads;
    let start = Instant::now();
    let mut workers = Vec::with_capacity(threads);
    for i in 0..threads {
        let share = worker::Share {
            offset: i * sequence.len() / threads,
            pace: options
                .rate
                .and_then(|r| Pace::new(r as f64 / threads as f64)),
            concurrency: share(options.concurrency as u64, threads, i) as usize,
            max_requests: options.max_requests.map(|n| share(n, threads, i)),
            duration: options.duration,
            timeout: options.timeout,
            sequence: sequence.clone(),
            urls: urls.clone(),
        };
        let live = live.clone();
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{i}"))
            .spawn(move || worker::run(share, live))
            .map_err(|e| format!("cannot start a sending thread: {e}"))?;
        workers.push(handle);
    }
    let results = progress::follow(workers, &live, options.duration, options.quiet);
    let elapsed = start.elapsed();
    let mut recorder = Recorder::default();
    let (mut unsent, mut late, mut sending) = (0, 0, Duration::ZERO);
    for result in results {
        let finished = result.map_err(|_| "a sending thread panicked".to_owned())?;
        recorder.merge(&finished.recorder);
        unsent += finished.unsent;
        late += finished.late;
        sending = sending.max(finished.sending);
    }
    Ok(Summary {
        sending,
        late,
        ..Summary::new(&recorder, &targets, elapsed, options.rate, unsent)
    })
}
