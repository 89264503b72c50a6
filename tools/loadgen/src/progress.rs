//! The live progress line on stderr while the run goes on.
//!
//! On a terminal one line is rewritten in place every second; otherwise (a log file, a
//! CI job) a plain line is written every few seconds so the output stays readable.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::stats::Live;

/// How often the line is rewritten on a terminal.
const TTY_INTERVAL: Duration = Duration::from_secs(1);
/// How often a plain line is written elsewhere.
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);
/// How often the workers are checked for completion between two lines.
const POLL: Duration = Duration::from_millis(50);

/// One progress line from the counters.
pub fn line(elapsed: Duration, total: Duration, rate: f64, counts: (u64, u64, u64)) -> String {
    let (sent, done, errors) = counts;
    format!(
        "{:>5.1}/{:.0} s  {:>8.0} req/s  sent {sent}  done {done}  in flight {}  errors {errors}",
        elapsed.as_secs_f64(),
        total.as_secs_f64(),
        rate,
        sent.saturating_sub(done),
    )
}

/// Waits for every worker, showing progress unless `quiet`; returns the workers' results.
pub fn follow<T>(
    workers: Vec<JoinHandle<T>>,
    live: &Arc<Live>,
    duration: Duration,
    quiet: bool,
) -> Vec<std::thread::Result<T>> {
    let tty = std::io::stderr().is_terminal();
    let interval = if tty { TTY_INTERVAL } else { PLAIN_INTERVAL };
    let start = Instant::now();
    let mut last = (start, 0u64);
    let mut shown = false;
    while !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(POLL);
        let now = Instant::now();
        if quiet || now - last.0 < interval {
            continue;
        }
        let counts = live.snapshot();
        let rate = (counts.1 - last.1) as f64 / (now - last.0).as_secs_f64();
        last = (now, counts.1);
        let text = line(now - start, duration, rate, counts);
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r\x1b[2K{text}")
        } else {
            writeln!(err, "{text}")
        };
        let _ = err.flush();
        shown = true;
    }
    if shown && tty {
        eprintln!();
    }
    workers.into_iter().map(|w| w.join()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_rate_errors_and_elapsed() {
        let text = line(
            Duration::from_millis(2500),
            Duration::from_secs(10),
            4999.6,
            (12_000, 11_990, 3),
        );
        assert_eq!(
            text,
            "  2.5/10 s      5000 req/s  sent 12000  done 11990  in flight 10  errors 3"
        );
    }
}
