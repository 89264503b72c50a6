//! The command line, parsed once into [`Options`] before anything is sent.
//!
//! Every bad flag is collected and reported together, like the environment settings of
//! the other binaries, so a user fixes a command line in one go.

use std::time::Duration;

use shared::config::parse_duration;

use crate::mix::Target;

pub const DEFAULT_USER_URL: &str = "http://127.0.0.1:8081";
pub const DEFAULT_PRODUCT_URL: &str = "http://127.0.0.1:8082";
pub const DEFAULT_ORDER_URL: &str = "http://127.0.0.1:8083";
/// Requests per second; high enough to matter, low enough for a laptop.
pub const DEFAULT_RATE: u64 = 1_000;
pub const DEFAULT_CONCURRENCY: usize = 64;
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bounds that keep a typo from opening a million sockets.
pub const MAX_CONCURRENCY: usize = 10_000;
pub const MAX_THREADS: usize = 64;
pub const MAX_RATE: u64 = 10_000_000;

pub const USAGE: &str = "loadgen: drive the user, product and order services with an open-loop request mix.

USAGE:
    loadgen [FLAGS]

FLAGS (defaults in brackets):
    --rate N             requests per second in total; 0 sends as fast as --concurrency allows [1000]
    --concurrency N      requests in flight at most, over all threads [64]
    --duration D         how long to send, e.g. 30s, 2m, 500ms [10s]
    --requests N         stop after N requests even if --duration has not elapsed [no limit]
    --threads N          sending threads [the number of CPUs]
    --timeout D          per-request timeout [5s]
    --services LIST      which services to drive, comma-separated: user,product,order [all three]
    --user-url URL       user-service base URL [http://127.0.0.1:8081]
    --product-url URL    product-service base URL [http://127.0.0.1:8082]
    --order-url URL      order-service base URL [http://127.0.0.1:8083]
    --json               print the summary as one JSON object instead of a table
    --quiet              no progress line on stderr
    -h, --help           print this help
    -V, --version        print the version

The mix covers every endpoint: GET /health, the lists, get by id (known ids, unknown ids
answered 404 and malformed ids answered 400, both expected), and POST /orders (valid, and
with an unknown user or product, answered 404 and expected). Any other status, a refused
connection or a timeout is an error.

EXIT STATUS:
    0 the run completed (errors, if any, are in the summary)
    64 a bad flag
    69 a target did not answer GET /health before the run
";

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Requests per second over all threads; `None` means as fast as concurrency allows.
    pub rate: Option<u64>,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    pub threads: usize,
    pub timeout: Duration,
    /// The targets driven, each with its base URL (no trailing slash).
    pub targets: Vec<(Target, String)>,
    pub json: bool,
    pub quiet: bool,
}

/// What the command line asks the program to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Options),
    Help,
    Version,
}

/// Parses the arguments after the program name; `Err` lists every problem found.
pub fn parse<I, S>(args: I, cpus: usize) -> Result<Command, Vec<String>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut errors = Vec::new();
    let mut rate = DEFAULT_RATE;
    let mut concurrency = DEFAULT_CONCURRENCY;
    let mut duration = DEFAULT_DURATION;
    let mut max_requests = None;
    let mut threads = cpus.clamp(1, MAX_THREADS);
    let mut timeout = DEFAULT_TIMEOUT;
    let mut services = vec![Target::User, Target::Product, Target::Order];
    let mut urls = [
        DEFAULT_USER_URL.to_owned(),
        DEFAULT_PRODUCT_URL.to_owned(),
        DEFAULT_ORDER_URL.to_owned(),
    ];
    let (mut json, mut quiet) = (false, false);

    let mut i = 0;
    while i < args.len() {
        // Both `--flag value` and `--flag=value` are accepted.
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (args[i].clone(), None),
        };
        i += 1;
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--json" | "--quiet" => {
                if inline.is_some() {
                    errors.push(format!("{flag} takes no value"));
                }
                if flag == "--json" {
                    json = true;
                } else {
                    quiet = true;
                }
                continue;
            }
            _ => {}
        }
        let known = [
            "--rate",
            "--concurrency",
            "--duration",
            "--requests",
            "--threads",
            "--timeout",
            "--services",
            "--user-url",
            "--product-url",
            "--order-url",
        ];
        if !known.contains(&flag.as_str()) {
            errors.push(format!("unknown flag {flag:?}"));
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None if i < args.len() => {
                i += 1;
                args[i - 1].clone()
            }
            None => {
                errors.push(format!("{flag} needs a value"));
                continue;
            }
        };
        let mut fail = |reason: String| errors.push(format!("{flag} {value:?}: {reason}"));
        match flag.as_str() {
            "--rate" => match number(&value, 0, MAX_RATE) {
                Ok(n) => rate = n,
                Err(e) => fail(e),
            },
            "--concurrency" => match number(&value, 1, MAX_CONCURRENCY as u64) {
                Ok(n) => concurrency = n as usize,
                Err(e) => fail(e),
            },
            "--threads" => match number(&value, 1, MAX_THREADS as u64) {
                Ok(n) => threads = n as usize,
                Err(e) => fail(e),
            },
            "--requests" => match number(&value, 1, u64::MAX) {
                Ok(n) => max_requests = Some(n),
                Err(e) => fail(e),
            },
            "--duration" | "--timeout" => match parse_duration(&value) {
                Ok(d) if d.is_zero() => fail("must be more than zero".into()),
                Ok(d) if flag == "--duration" => duration = d,
                Ok(d) => timeout = d,
                Err(e) => fail(e),
            },
            "--services" => match parse_services(&value) {
                Ok(list) => services = list,
                Err(e) => fail(e),
            },
            _ => {
                let slot = match flag.as_str() {
                    "--user-url" => 0,
                    "--product-url" => 1,
                    _ => 2,
                };
                match base_url(&value) {
                    Ok(url) => urls[slot] = url,
                    Err(e) => fail(e),
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // More threads than in-flight requests would leave threads with nothing to do.
    let threads = threads.min(concurrency);
    let targets = services
        .into_iter()
        .map(|t| {
            let url = urls[t as usize].clone();
            (t, url)
        })
        .collect();
    Ok(Command::Run(Options {
        rate: (rate > 0).then_some(rate),
        concurrency,
        duration,
        max_requests,
        threads,
        timeout,
        targets,
        json,
        quiet,
    }))
}

fn number(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let n: u64 = text
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| "expected a whole number".to_owned())?;
    if n < min || n > max {
        return Err(format!("expected a number from {min} to {max}"));
    }
    Ok(n)
}

fn parse_services(text: &str) -> Result<Vec<Target>, String> {
    let mut list = Vec::new();
    for name in text.split(',').map(str::trim) {
        let target = match name {
            "user" | "user-service" => Target::User,
            "product" | "product-service" => Target::Product,
            "order" | "order-service" => Target::Order,
            other => {
                return Err(format!(
                    "unknown service {other:?}; use user, product, order"
                ))
            }
        };
        if !list.contains(&target) {
            list.push(target);
        }
    }
    list.sort();
    Ok(list)
}

/// `http://host:port` with an optional path prefix, without the trailing slash.
fn base_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("http://")
        .ok_or_else(|| "expected an http:// URL such as http://127.0.0.1:8081".to_owned())?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err("the URL has no host".to_owned());
    }
    if let Some((_, port)) = authority.rsplit_once(':') {
        if !port.is_empty() && port.parse::<u16>().is_err() {
            return Err(format!("bad port {port:?}"));
        }
    }
    Ok(text.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        match parse(args, 2) {
            Ok(Command::Run(o)) => o,
            other => panic!("expected options, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_contract_ports() {
        let o = run(&[]);
        assert_eq!(o.rate, Some(DEFAULT_RATE));
        assert_eq!(o.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(o.threads, 2);
        assert_eq!(
            o.targets,
            vec![
                (Target::User, "http://127.0.0.1:8081".to_owned()),
                (Target::Product, "http://127.0.0.1:8082".to_owned()),
                (Target::Order, "http://127.0.0.1:8083".to_owned()),
            ]
        );
    }

    #[test]
    fn flags_in_both_spellings() {
        let o = run(&[
            "--rate=0",
            "--concurrency",
            "8",
            "--duration",
            "1.5s",
            "--requests=300",
            "--services",
            "order,user",
            "--order-url",
            "http://localhost:9000/",
            "--json",
            "--quiet",
        ]);
        assert_eq!(o.rate, None);
        assert_eq!(o.concurrency, 8);
        assert_eq!(o.duration, Duration::from_millis(1500));
        assert_eq!(o.max_requests, Some(300));
        assert_eq!(
            o.targets,
            vec![
                (Target::User, "http://127.0.0.1:8081".to_owned()),
                (Target::Order, "http://localhost:9000".to_owned()),
            ]
        );
        assert!(o.json && o.quiet);
    }

    #[test]
    fn threads_never_exceed_concurrency() {
        assert_eq!(run(&["--threads", "8", "--concurrency", "3"]).threads, 3);
    }

    #[test]
    fn every_bad_flag_is_reported() {
        let errors = parse(
            [
                "--rate",
                "fast",
                "--bogus",
                "--duration",
                "0s",
                "--user-url",
                "ftp://x",
                "--services",
                "cart",
                "--concurrency",
            ],
            2,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors[0].contains("--rate \"fast\""), "{errors:?}");
        assert!(errors[1].contains("unknown flag \"--bogus\""), "{errors:?}");
        assert!(
            errors[5].contains("--concurrency needs a value"),
            "{errors:?}"
        );
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(["--rate", "5", "--help"], 2), Ok(Command::Help));
        assert_eq!(parse(["-V"], 2), Ok(Command::Version));
    }
}
