//! A service's settings, with their defaults, read once at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shared::config::{ConfigErrors, Reader, Source};
use shared::startup::Settings;

use crate::Service;

pub const LISTEN_ADDR: &str = "LISTEN_ADDR";
pub const LOG_FILE: &str = "LOG_FILE";
pub const ENVIRONMENT: &str = "ENVIRONMENT";
pub const USER_SERVICE_URL: &str = "USER_SERVICE_URL";
pub const PRODUCT_SERVICE_URL: &str = "PRODUCT_SERVICE_URL";
pub const DOWNSTREAM_TIMEOUT: &str = "DOWNSTREAM_TIMEOUT";
pub const WORKERS: &str = "WORKERS";
pub const SHUTDOWN_GRACE: &str = "SHUTDOWN_GRACE";

pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";
pub const DEFAULT_LOG_FILE: &str = "/logs/app.log";
pub const DEFAULT_ENVIRONMENT: &str = "development";
/// Local defaults: the host ports of the contract, so a local run needs no settings.
pub const DEFAULT_USER_SERVICE_URL: &str = "http://127.0.0.1:8081";
pub const DEFAULT_PRODUCT_SERVICE_URL: &str = "http://127.0.0.1:8082";
pub const DEFAULT_DOWNSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_WORKERS: usize = 2;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The settings help text, shown by `--help`.
pub const SETTINGS_HELP: &str = "    LISTEN_ADDR          address to serve on (0.0.0.0:8080)
    LOG_FILE             JSON-lines log file, created if missing (/logs/app.log)
    ENVIRONMENT          deployment environment name (development)
    USER_SERVICE_URL     order-service only: user-service base URL (http://127.0.0.1:8081)
    PRODUCT_SERVICE_URL  order-service only: product-service base URL (http://127.0.0.1:8082)
    DOWNSTREAM_TIMEOUT   order-service only: timeout of each downstream call (2s)
    WORKERS              HTTP worker threads (2)
    SHUTDOWN_GRACE       time allowed to finish requests on SIGTERM (10s)
    RUST_LOG             log filter (info)
";

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub listen: SocketAddr,
    pub log_file: PathBuf,
    pub environment: String,
    pub user_service_url: String,
    pub product_service_url: String,
    pub downstream_timeout: Duration,
    pub workers: usize,
    pub shutdown_grace: Duration,
}

impl ServiceConfig {
    pub fn from_env(_service: Service, env: &dyn Source) -> Result<ServiceConfig, ConfigErrors> {
        let mut r = Reader::new(env);
        let config = ServiceConfig {
            listen: r.socket_addr(LISTEN_ADDR, DEFAULT_LISTEN_ADDR),
            log_file: r.path(LOG_FILE, DEFAULT_LOG_FILE),
            environment: r.string(ENVIRONMENT, DEFAULT_ENVIRONMENT),
            user_service_url: trim_slash(r.url(USER_SERVICE_URL, DEFAULT_USER_SERVICE_URL)),
            product_service_url: trim_slash(
                r.url(PRODUCT_SERVICE_URL, DEFAULT_PRODUCT_SERVICE_URL),
            ),
            downstream_timeout: r.duration(DOWNSTREAM_TIMEOUT, DEFAULT_DOWNSTREAM_TIMEOUT),
            workers: r.bounded(WORKERS, DEFAULT_WORKERS, 1..=256),
            shutdown_grace: r.duration(SHUTDOWN_GRACE, DEFAULT_SHUTDOWN_GRACE),
        };
        r.finish()?;
        Ok(config)
    }
}

impl Settings for ServiceConfig {
    fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    fn log_file(&self) -> Option<&std::path::Path> {
        Some(&self.log_file)
    }
}

fn trim_slash(mut url: String) -> String {
    while url.ends_with('/') {
        url.pop();
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults() {
        let env: HashMap<&str, &str> = HashMap::new();
        let c = ServiceConfig::from_env(Service::Order, &env).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.log_file, PathBuf::from("/logs/app.log"));
        assert_eq!(c.user_service_url, "http://127.0.0.1:8081");
    }

    #[test]
    fn bad_values_are_named() {
        let env: HashMap<&str, &str> = [
            ("LISTEN_ADDR", "nowhere"),
            ("USER_SERVICE_URL", "user-service:8080"),
            ("WORKERS", "0"),
        ]
        .into();
        let err = ServiceConfig::from_env(Service::Order, &env).unwrap_err();
        let text = err.to_string();
        for var in ["LISTEN_ADDR", "USER_SERVICE_URL", "WORKERS"] {
            assert!(text.contains(var), "{text}");
        }
    }
}
