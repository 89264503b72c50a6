//! The sidecar's settings, read once from the environment at start.
//!
//! Every variable has a documented default (see [`SETTINGS_HELP`]); every bad one is
//! named before the process exits with status 64.

use std::net::SocketAddr;
use std::time::Duration;

use shared::config::{ConfigErrors, Reader, Source};
use shared::startup::Settings;

pub const LISTEN_ADDR: &str = "LISTEN_ADDR";
pub const SERVICE_NAME: &str = "SERVICE_NAME";
pub const APP_SERVICE_URL: &str = "APP_SERVICE_URL";
pub const ENVIRONMENT: &str = "ENVIRONMENT";
pub const SCRAPE_INTERVAL: &str = "SCRAPE_INTERVAL";
pub const SCRAPE_TIMEOUT: &str = "SCRAPE_TIMEOUT";
pub const SCRAPE_BODY_LIMIT: &str = "SCRAPE_BODY_LIMIT";
pub const STALENESS_LIMIT: &str = "STALENESS_LIMIT";
pub const WORKERS: &str = "WORKERS";
pub const SHUTDOWN_GRACE: &str = "SHUTDOWN_GRACE";

pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:9090";
pub const DEFAULT_SERVICE_NAME: &str = "unknown-service";
/// Local default: a service on its container port, on this host.
pub const DEFAULT_APP_SERVICE_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_ENVIRONMENT: &str = "development";
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(10);
/// Capped at the interval, so that one scrape ends before the next is due.
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_SCRAPE_BODY_LIMIT: u64 = 16 << 20;
pub const DEFAULT_STALENESS_LIMIT: Duration = Duration::from_secs(60);
pub const DEFAULT_WORKERS: usize = 1;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Shortest accepted interval: faster scraping only loads the target.
pub const MIN_SCRAPE_INTERVAL: Duration = Duration::from_millis(100);

/// The settings help text, shown by `--help`.
pub const SETTINGS_HELP: &str = "    LISTEN_ADDR        address to serve /metrics and /health on (0.0.0.0:9090)
    SERVICE_NAME       value of the added service label (unknown-service)
    APP_SERVICE_URL    base URL of the service to scrape; /metrics is appended (http://127.0.0.1:8080)
    ENVIRONMENT        value of the added environment label (development)
    SCRAPE_INTERVAL    time between scrapes, e.g. 500ms, 2s (10s; at least 100ms)
    SCRAPE_TIMEOUT     time allowed for one scrape, at most the interval (5s, or the interval if shorter)
    SCRAPE_BODY_LIMIT  largest scraped body, e.g. 4MiB (16MiB)
    STALENESS_LIMIT    how long the last good samples are served while scrapes fail (60s)
    WORKERS            HTTP worker threads (1)
    SHUTDOWN_GRACE     time allowed to finish requests on SIGTERM (10s)
    RUST_LOG           log filter (info)
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarConfig {
    pub listen: SocketAddr,
    pub service_name: String,
    /// The full URL scraped: `<APP_SERVICE_URL>/metrics`.
    pub scrape_url: String,
    pub environment: String,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub body_limit_bytes: usize,
    pub staleness_limit: Duration,
    pub workers: usize,
    pub shutdown_grace: Duration,
}

impl Settings for SidecarConfig {
    fn listen_addr(&self) -> SocketAddr {
        self.listen
    }
}

impl SidecarConfig {
    pub fn from_env(env: &dyn Source) -> Result<SidecarConfig, ConfigErrors> {
        let mut r = Reader::new(env);
        let listen = r.socket_addr(LISTEN_ADDR, DEFAULT_LISTEN_ADDR);
        let service_name = r.string(SERVICE_NAME, DEFAULT_SERVICE_NAME);
        let mut base = r.url(APP_SERVICE_URL, DEFAULT_APP_SERVICE_URL);
        while base.ends_with('/') {
            base.pop();
        }
        let environment = r.string(ENVIRONMENT, DEFAULT_ENVIRONMENT);
        let scrape_interval = r.duration(SCRAPE_INTERVAL, DEFAULT_SCRAPE_INTERVAL);
        if scrape_interval < MIN_SCRAPE_INTERVAL {
            let raw = env
                .get(SCRAPE_INTERVAL)
                .and_then(Result::ok)
                .unwrap_or_default();
            r.fail(SCRAPE_INTERVAL, &raw, "must be at least 100ms");
        }
        let explicit_timeout = env
            .get(SCRAPE_TIMEOUT)
            .and_then(Result::ok)
            .filter(|v| !v.is_empty());
        let scrape_timeout = r.duration(SCRAPE_TIMEOUT, DEFAULT_SCRAPE_TIMEOUT);
        let scrape_timeout = match explicit_timeout {
            Some(raw) if scrape_timeout.is_zero() || scrape_timeout > scrape_interval => {
                r.fail(
                    SCRAPE_TIMEOUT,
                    &raw,
                    "must be above zero and at most SCRAPE_INTERVAL",
                );
                scrape_timeout
            }
            _ => scrape_timeout.min(scrape_interval),
        };
        let body_limit = r.bytes(SCRAPE_BODY_LIMIT, DEFAULT_SCRAPE_BODY_LIMIT);
        if body_limit == 0 || body_limit > 1 << 30 {
            let raw = env
                .get(SCRAPE_BODY_LIMIT)
                .and_then(Result::ok)
                .unwrap_or_default();
            r.fail(SCRAPE_BODY_LIMIT, &raw, "must be between 1 byte and 1GiB");
        }
        let config = SidecarConfig {
            listen,
            service_name,
            scrape_url: format!("{base}/metrics"),
            environment,
            scrape_interval,
            scrape_timeout,
            body_limit_bytes: usize::try_from(body_limit).unwrap_or(usize::MAX),
            staleness_limit: r.duration(STALENESS_LIMIT, DEFAULT_STALENESS_LIMIT),
            workers: r.bounded(WORKERS, DEFAULT_WORKERS, 1..=64),
            shutdown_grace: r.duration(SHUTDOWN_GRACE, DEFAULT_SHUTDOWN_GRACE),
        };
        r.finish()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults() {
        let c = SidecarConfig::from_env(&HashMap::<&str, &str>::new()).unwrap();
        assert_eq!(c.listen.port(), 9090);
        assert_eq!(c.scrape_url, "http://127.0.0.1:8080/metrics");
        assert_eq!(c.environment, "development");
        assert_eq!(c.scrape_interval, Duration::from_secs(10));
        assert_eq!(c.scrape_timeout, Duration::from_secs(5));
        assert_eq!(c.body_limit_bytes, 16 << 20);
        assert_eq!(c.staleness_limit, Duration::from_secs(60));
    }

    #[test]
    fn the_timeout_follows_a_short_interval() {
        let env: HashMap<&str, &str> = [
            ("SCRAPE_INTERVAL", "500ms"),
            ("APP_SERVICE_URL", "http://user-service:8080/"),
        ]
        .into();
        let c = SidecarConfig::from_env(&env).unwrap();
        assert_eq!(c.scrape_timeout, Duration::from_millis(500));
        assert_eq!(c.scrape_url, "http://user-service:8080/metrics");
    }

    #[test]
    fn bad_values_are_named() {
        let env: HashMap<&str, &str> = [
            ("LISTEN_ADDR", "port nine"),
            ("APP_SERVICE_URL", "user-service:8080"),
            ("SCRAPE_INTERVAL", "10ms"),
            ("SCRAPE_TIMEOUT", "20s"),
            ("SCRAPE_BODY_LIMIT", "0"),
            ("STALENESS_LIMIT", "soon"),
        ]
        .into();
        let text = SidecarConfig::from_env(&env).unwrap_err().to_string();
        for var in [
            "LISTEN_ADDR",
            "APP_SERVICE_URL",
            "SCRAPE_INTERVAL",
            "SCRAPE_TIMEOUT",
            "SCRAPE_BODY_LIMIT",
            "STALENESS_LIMIT",
        ] {
            assert!(text.contains(var), "{var} missing from {text}");
        }
    }
}
