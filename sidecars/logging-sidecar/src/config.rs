//! The sidecar's settings, read once from the environment into [`SidecarConfig`].
//!
//! Every variable's name and default lives here as a constant, so the help text, the
//! documentation and the code cannot drift apart. A bad value is collected, not fatal on
//! the spot: the caller reports them all and exits with `EXIT_CONFIG`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shared::config::{format_duration, ConfigErrors, Reader, Source};

pub const LISTEN_ADDR: &str = "LISTEN_ADDR";
pub const SERVICE_NAME: &str = "SERVICE_NAME";
pub const LOG_PATH: &str = "LOG_PATH";
pub const STATE_DIR: &str = "STATE_DIR";
pub const AGGREGATOR_URL: &str = "AGGREGATOR_URL";
pub const AGGREGATOR_TOKEN: &str = "AGGREGATOR_TOKEN";
pub const ENVIRONMENT: &str = "ENVIRONMENT";
pub const BATCH_MAX_RECORDS: &str = "BATCH_MAX_RECORDS";
pub const BATCH_MAX_BYTES: &str = "BATCH_MAX_BYTES";
pub const BATCH_LINGER: &str = "BATCH_LINGER";
pub const GZIP: &str = "GZIP";
pub const MAX_LINE_BYTES: &str = "MAX_LINE_BYTES";
pub const PARTIAL_LINE_TIMEOUT: &str = "PARTIAL_LINE_TIMEOUT";
pub const RETRY_INITIAL: &str = "RETRY_INITIAL";
pub const RETRY_MAX: &str = "RETRY_MAX";
pub const MAX_IN_FLIGHT_BATCHES: &str = "MAX_IN_FLIGHT_BATCHES";
pub const POLL_INTERVAL: &str = "POLL_INTERVAL";
pub const READ_CHUNK_BYTES: &str = "READ_CHUNK_BYTES";
pub const REQUEST_TIMEOUT: &str = "REQUEST_TIMEOUT";
pub const CHECKPOINT_INTERVAL: &str = "CHECKPOINT_INTERVAL";
pub const ROTATE_WAIT: &str = "ROTATE_WAIT";
pub const RELEASE_UNACKED_AFTER: &str = "RELEASE_UNACKED_AFTER";
pub const SHUTDOWN_GRACE: &str = "SHUTDOWN_GRACE";
pub const WATCH_MODE: &str = "WATCH_MODE";
pub const RESCAN_INTERVAL: &str = "RESCAN_INTERVAL";
pub const MAX_OPEN_FILES: &str = "MAX_OPEN_FILES";
/// Test hook: `actor:n[,actor:n]` makes `tailer`, `enricher` or `forwarder` fail while
/// handling its n-th message, to show the supervisor's restart. Unset in production.
pub const FAULT_INJECT: &str = "LOGGING_SIDECAR_FAULT";

pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:9100";
pub const DEFAULT_SERVICE_NAME: &str = "unknown-service";
pub const DEFAULT_LOG_PATH: &str = "/logs/app.log";
pub const DEFAULT_STATE_DIR: &str = "/state";
pub const DEFAULT_AGGREGATOR_URL: &str = "http://log-aggregator:8080/logs";
pub const DEFAULT_ENVIRONMENT: &str = "development";
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 5_000;
pub const DEFAULT_BATCH_MAX_BYTES: u64 = 512 << 10;
pub const DEFAULT_BATCH_LINGER: Duration = Duration::from_millis(5);
pub const DEFAULT_GZIP: bool = false;
pub const DEFAULT_MAX_LINE_BYTES: u64 = 64 << 10;
pub const DEFAULT_PARTIAL_LINE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(100);
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_IN_FLIGHT_BATCHES: usize = 2;
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(5);
pub const DEFAULT_READ_CHUNK_BYTES: u64 = 128 << 10;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
pub const DEFAULT_ROTATE_WAIT: Duration = Duration::from_secs(1);
pub const DEFAULT_RELEASE_UNACKED_AFTER: Duration = Duration::from_secs(300);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Well below the usual soft limit of file descriptors per process (1024 would leave
/// none for sockets and the checkpoint file).
pub const DEFAULT_MAX_OPEN_FILES: usize = 512;
/// The suffix of the old duration variables, still read (with a deprecation warning).
const LEGACY_MS: &str = "_MS";

/// The settings help text, shown by `--help`.
pub const SETTINGS_HELP: &str =
    "    LISTEN_ADDR               health and metrics address (0.0.0.0:9100)
    SERVICE_NAME              the service whose log is tailed (unknown-service)
    LOG_PATH                  log file or glob to follow (/logs/app.log)
    STATE_DIR                 directory of the checkpoint file (/state)
    AGGREGATOR_URL            where records are POSTed (http://log-aggregator:8080/logs)
    AGGREGATOR_TOKEN          bearer token for the aggregator (unset: none)
    ENVIRONMENT               added to every record (development)
    BATCH_MAX_RECORDS         records per POST at most (5000)
    BATCH_MAX_BYTES           NDJSON bytes per POST, about (512KiB)
    BATCH_LINGER              how long a partial batch waits for more (5ms)
    GZIP                      gzip request bodies (false)
    MAX_LINE_BYTES            longer lines are cut and marked (65536)
    PARTIAL_LINE_TIMEOUT      an unterminated last line is sent after this (5s)
    RETRY_INITIAL             first retry delay, doubled up to RETRY_MAX (100ms)
    RETRY_MAX                 longest retry delay; retries never end (5s)
    MAX_IN_FLIGHT_BATCHES     POSTs awaiting an answer at once (2)
    WATCH_MODE                events: woken by file events (inotify); poll: polling only,
                              for network file systems (events)
    POLL_INTERVAL             poll mode: how often files are checked; events mode: the
                              shortest time between two discoveries (5ms)
    RESCAN_INTERVAL           events mode: files checked this often even without events (1s)
    READ_CHUNK_BYTES          bytes read at a time, at least MAX_LINE_BYTES+1 (131072)
    REQUEST_TIMEOUT           one POST's timeout (30s)
    CHECKPOINT_INTERVAL       checkpoint file written at most this often (500ms)
    ROTATE_WAIT               a rotated-away file is read until quiet this long (1s)
    RELEASE_UNACKED_AFTER     a drained rotated file is closed even if unacknowledged (5m)
    MAX_OPEN_FILES            log files held open at most; beyond, the cheapest to close
                              are closed, their position kept (512)
    SHUTDOWN_GRACE            time to deliver what was read on SIGTERM (5s)
    RUST_LOG                  log filter (info)
  Durations are written 500ms, 2s, 5m, 1h. The old names with _MS (a number of
  milliseconds, e.g. POLL_INTERVAL_MS=5) are still read, with a deprecation warning.
";

/// How the tailer learns that files changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// Woken by file system events (inotify), with a rescan every `RESCAN_INTERVAL` in
    /// case an event is missed (a file renamed out of the watched directory, say).
    Events,
    /// Polling every `POLL_INTERVAL` only: for file systems without events (NFS, SMB,
    /// FUSE), where a write on another host raises none here.
    Poll,
}

/// Everything the sidecar needs to run, parsed once.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    pub listen: SocketAddr,
    pub service_name: String,
    pub log_path: String,
    pub state_dir: PathBuf,
    pub aggregator_url: String,
    pub aggregator_token: Option<String>,
    pub environment: String,
    pub batch_max_records: usize,
    pub batch_max_bytes: usize,
    pub batch_linger: Duration,
    pub gzip: bool,
    pub max_line_bytes: usize,
    pub partial_line_timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub max_in_flight_batches: usize,
    pub watch_mode: WatchMode,
    pub poll_interval: Duration,
    pub rescan_interval: Duration,
    pub read_chunk_bytes: usize,
    pub request_timeout: Duration,
    pub checkpoint_interval: Duration,
    pub rotate_wait: Duration,
    pub release_unacked_after: Duration,
    pub max_open_files: usize,
    pub shutdown_grace: Duration,
    pub faults: crate::fault::FaultPlan,
    /// Deprecated settings met, to be logged once logging is up.
    pub warnings: Vec<String>,
}

impl SidecarConfig {
    pub fn from_env(env: &dyn Source) -> Result<SidecarConfig, ConfigErrors> {
        let mut r = Reader::new(env);
        let mut warnings = Vec::new();
        let mut ms = |r: &mut Reader, key: &str, default: Duration, range: (u64, u64)| {
            duration(r, &mut warnings, key, default, range)
        };
        let service_name = r.string(SERVICE_NAME, DEFAULT_SERVICE_NAME);
        if !service_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            r.fail(
                SERVICE_NAME,
                &service_name,
                "use letters, digits, '-', '_' or '.'",
            );
        }
        let log_path = r.string(LOG_PATH, DEFAULT_LOG_PATH);
        if let Err(e) = glob::Pattern::new(&log_path) {
            r.fail(
                LOG_PATH,
                &log_path,
                format!("not a valid path or glob: {e}"),
            );
        }
        let token = r.optional_string(AGGREGATOR_TOKEN);
        if let Some(t) = &token {
            if !t.bytes().all(|b| b.is_ascii_graphic()) {
                r.fail(
                    AGGREGATOR_TOKEN,
                    "<hidden>",
                    "must be printable ASCII without spaces",
                );
            }
        }
        let max_bytes = r.bytes(BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_BYTES);
        if !(1024..=(256 << 20)).contains(&max_bytes) {
            r.fail(
                BATCH_MAX_BYTES,
                &max_bytes.to_string(),
                "must be between 1KiB and 256MiB",
            );
        }
        let max_line = r.bytes(MAX_LINE_BYTES, DEFAULT_MAX_LINE_BYTES);
        if !(256..=(64 << 20)).contains(&max_line) {
            r.fail(
                MAX_LINE_BYTES,
                &max_line.to_string(),
                "must be between 256 and 64MiB",
            );
        }
        let chunk = r.bytes(READ_CHUNK_BYTES, DEFAULT_READ_CHUNK_BYTES);
        if !(4096..=(64 << 20)).contains(&chunk) {
            r.fail(
                READ_CHUNK_BYTES,
                &chunk.to_string(),
                "must be between 4KiB and 64MiB",
            );
        }
        let faults = match r.optional_string(FAULT_INJECT) {
            None => crate::fault::FaultPlan::default(),
            Some(text) => crate::fault::FaultPlan::parse(&text).unwrap_or_else(|why| {
                r.fail(FAULT_INJECT, &text, why);
                crate::fault::FaultPlan::default()
            }),
        };
        let config = SidecarConfig {
            listen: r.socket_addr(LISTEN_ADDR, DEFAULT_LISTEN_ADDR),
            service_name,
            log_path,
            state_dir: r.path(STATE_DIR, DEFAULT_STATE_DIR),
            aggregator_url: r.url(AGGREGATOR_URL, DEFAULT_AGGREGATOR_URL),
            aggregator_token: token,
            environment: r.string(ENVIRONMENT, DEFAULT_ENVIRONMENT),
            batch_max_records: r.bounded(
                BATCH_MAX_RECORDS,
                DEFAULT_BATCH_MAX_RECORDS,
                1..=1_000_000,
            ),
            batch_max_bytes: max_bytes as usize,
            batch_linger: ms(&mut r, BATCH_LINGER, DEFAULT_BATCH_LINGER, (0, 60_000)),
            gzip: r.flag(GZIP, DEFAULT_GZIP),
            max_line_bytes: max_line as usize,
            partial_line_timeout: ms(
                &mut r,
                PARTIAL_LINE_TIMEOUT,
                DEFAULT_PARTIAL_LINE_TIMEOUT,
                (0, 3_600_000),
            ),
            retry_initial: ms(&mut r, RETRY_INITIAL, DEFAULT_RETRY_INITIAL, (1, 60_000)),
            retry_max: ms(&mut r, RETRY_MAX, DEFAULT_RETRY_MAX, (1, 600_000)),
            max_in_flight_batches: r.bounded(
                MAX_IN_FLIGHT_BATCHES,
                DEFAULT_MAX_IN_FLIGHT_BATCHES,
                1..=64,
            ),
            watch_mode: match r.string(WATCH_MODE, "events").trim() {
                "events" => WatchMode::Events,
                "poll" => WatchMode::Poll,
                other => {
                    r.fail(WATCH_MODE, other, "expected events or poll");
                    WatchMode::Events
                }
            },
            poll_interval: ms(&mut r, POLL_INTERVAL, DEFAULT_POLL_INTERVAL, (1, 60_000)),
            rescan_interval: ms(
                &mut r,
                RESCAN_INTERVAL,
                DEFAULT_RESCAN_INTERVAL,
                (1, 3_600_000),
            ),
            read_chunk_bytes: chunk as usize,
            request_timeout: ms(
                &mut r,
                REQUEST_TIMEOUT,
                DEFAULT_REQUEST_TIMEOUT,
                (100, 600_000),
            ),
            checkpoint_interval: ms(
                &mut r,
                CHECKPOINT_INTERVAL,
                DEFAULT_CHECKPOINT_INTERVAL,
                (1, 600_000),
            ),
            rotate_wait: ms(&mut r, ROTATE_WAIT, DEFAULT_ROTATE_WAIT, (0, 3_600_000)),
            release_unacked_after: ms(
                &mut r,
                RELEASE_UNACKED_AFTER,
                DEFAULT_RELEASE_UNACKED_AFTER,
                (0, 86_400_000),
            ),
            max_open_files: r.bounded(MAX_OPEN_FILES, DEFAULT_MAX_OPEN_FILES, 1..=1_000_000),
            shutdown_grace: ms(&mut r, SHUTDOWN_GRACE, DEFAULT_SHUTDOWN_GRACE, (0, 600_000)),
            faults,
            warnings,
        };
        r.finish()?;
        Ok(config)
    }

    /// `sidecar_forwarded_by`: who forwarded a record.
    pub fn forwarded_by(&self) -> String {
        format!("{}-logging-sidecar", self.service_name)
    }
}

/// A duration setting `key` (`5ms`, `2s`), between `range` milliseconds. The old
/// `<key>_MS` (a number of milliseconds) is still read, and a deprecation warning noted;
/// both set is an error, since which one counts would be a guess.
fn duration(
    r: &mut Reader,
    warnings: &mut Vec<String>,
    key: &str,
    default: Duration,
    (min, max): (u64, u64),
) -> Duration {
    let legacy = format!("{key}{LEGACY_MS}");
    let value = match (r.optional_string(key), r.optional_string(&legacy)) {
        (Some(_), Some(old)) => {
            r.fail(
                &legacy,
                &old,
                format!("set only {key} (written like 5ms or 2s)"),
            );
            return default;
        }
        (None, Some(_)) => {
            let ms = r.bounded(&legacy, default.as_millis() as u64, min..=max);
            warnings.push(format!(
                "{legacy} is deprecated; write {key}={} instead.",
                format_duration(Duration::from_millis(ms))
            ));
            return Duration::from_millis(ms);
        }
        (Some(_), None) => r.duration(key, default),
        (None, None) => return default,
    };
    let (lo, hi) = (Duration::from_millis(min), Duration::from_millis(max));
    if (lo..=hi).contains(&value) {
        value
    } else {
        r.fail(
            key,
            &format_duration(value),
            format!(
                "must be between {} and {}",
                format_duration(lo),
                format_duration(hi)
            ),
        );
        default
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_follow_the_contract() {
        let env: HashMap<&str, &str> = HashMap::new();
        let c = SidecarConfig::from_env(&env).unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.log_path, "/logs/app.log");
        assert_eq!(c.state_dir, PathBuf::from("/state"));
        assert_eq!(c.aggregator_url, "http://log-aggregator:8080/logs");
        assert_eq!(c.environment, "development");
        assert_eq!(c.aggregator_token, None);
        assert_eq!(c.batch_max_bytes, 512 << 10);
    }

    #[test]
    fn durations_are_written_with_units_and_the_old_ms_names_still_work() {
        let env: HashMap<&str, &str> = [
            ("POLL_INTERVAL", "20ms"),
            ("ROTATE_WAIT", "2s"),
            ("SHUTDOWN_GRACE_MS", "1500"),
            ("WATCH_MODE", "poll"),
        ]
        .into();
        let c = SidecarConfig::from_env(&env).unwrap();
        assert_eq!(c.poll_interval, Duration::from_millis(20));
        assert_eq!(c.rotate_wait, Duration::from_secs(2));
        assert_eq!(c.shutdown_grace, Duration::from_millis(1500));
        assert_eq!(c.rescan_interval, DEFAULT_RESCAN_INTERVAL);
        assert_eq!(c.watch_mode, WatchMode::Poll);
        assert_eq!(
            c.warnings,
            ["SHUTDOWN_GRACE_MS is deprecated; write SHUTDOWN_GRACE=1.5s instead."]
        );
        let env: HashMap<&str, &str> = [
            ("POLL_INTERVAL", "0ms"),
            ("ROTATE_WAIT", "2 weeks"),
            ("RETRY_MAX", "1s"),
            ("RETRY_MAX_MS", "1000"),
            ("REQUEST_TIMEOUT_MS", "5"),
            ("WATCH_MODE", "inotify-please"),
        ]
        .into();
        let text = SidecarConfig::from_env(&env).unwrap_err().to_string();
        for var in [
            "POLL_INTERVAL",
            "ROTATE_WAIT",
            "RETRY_MAX_MS",
            "REQUEST_TIMEOUT_MS",
            "WATCH_MODE",
        ] {
            assert!(text.contains(var), "{var} missing from {text}");
        }
    }

    #[test]
    fn max_open_files_is_bounded_and_named_when_bad() {
        let env: HashMap<&str, &str> = HashMap::new();
        let c = SidecarConfig::from_env(&env).unwrap();
        assert_eq!(c.max_open_files, DEFAULT_MAX_OPEN_FILES);
        let env: HashMap<&str, &str> = [("MAX_OPEN_FILES", "64")].into();
        assert_eq!(SidecarConfig::from_env(&env).unwrap().max_open_files, 64);
        for bad in ["0", "many", "-3", "2000000"] {
            let env: HashMap<&str, &str> = [("MAX_OPEN_FILES", bad)].into();
            let text = SidecarConfig::from_env(&env).unwrap_err().to_string();
            assert!(text.contains("MAX_OPEN_FILES"), "{bad}: {text}");
        }
    }

    #[test]
    fn every_bad_variable_is_named() {
        let env: HashMap<&str, &str> = [
            ("AGGREGATOR_URL", "log-aggregator:8080"),
            ("BATCH_MAX_RECORDS", "0"),
            ("MAX_LINE_BYTES", "12"),
            ("LOG_PATH", "/logs/[.log"),
            ("SERVICE_NAME", "a b"),
            ("GZIP", "perhaps"),
            ("LOGGING_SIDECAR_FAULT", "painter:1"),
        ]
        .into();
        let text = SidecarConfig::from_env(&env).unwrap_err().to_string();
        for var in [
            "AGGREGATOR_URL",
            "BATCH_MAX_RECORDS",
            "MAX_LINE_BYTES",
            "LOG_PATH",
            "SERVICE_NAME",
            "GZIP",
            "LOGGING_SIDECAR_FAULT",
        ] {
            assert!(text.contains(var), "{var} missing from {text}");
        }
    }
}
