//! The aggregator's settings, read once from the environment with documented defaults.
//!
//! Every other module receives these typed values; nothing else reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shared::config::{ConfigErrors, Reader, Source};
use shared::startup::Settings;

pub const LISTEN_ADDR: &str = "LISTEN_ADDR";
pub const DATA_DIR: &str = "DATA_DIR";
pub const AGGREGATOR_TOKEN: &str = "AGGREGATOR_TOKEN";
pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
pub const RETENTION_MAX_RECORDS: &str = "RETENTION_MAX_RECORDS";
pub const RETENTION_MAX_AGE: &str = "RETENTION_MAX_AGE";
pub const RETENTION_INTERVAL: &str = "RETENTION_INTERVAL";
pub const PAGE_SIZE_DEFAULT: &str = "PAGE_SIZE_DEFAULT";
pub const PAGE_SIZE_MAX: &str = "PAGE_SIZE_MAX";
pub const SYNC_MODE: &str = "SYNC_MODE";
pub const READER_THREADS: &str = "READER_THREADS";
pub const WORKERS: &str = "WORKERS";
pub const SHUTDOWN_GRACE: &str = "SHUTDOWN_GRACE";
pub const MAX_RECORDS_PER_REQUEST: &str = "MAX_RECORDS_PER_REQUEST";
pub const BODY_READ_TIMEOUT: &str = "BODY_READ_TIMEOUT";
pub const INGEST_MAX_REQUESTS: &str = "INGEST_MAX_REQUESTS";
pub const INGEST_MAX_REQUESTS_PER_CLIENT: &str = "INGEST_MAX_REQUESTS_PER_CLIENT";
pub const INGEST_MEMORY_BUDGET: &str = "INGEST_MEMORY_BUDGET";
pub const INGEST_SLOTS: &str = "INGEST_SLOTS";
pub const QUERY_TIMEOUT: &str = "QUERY_TIMEOUT";
pub const QUERY_MAX_TERMS: &str = "QUERY_MAX_TERMS";
pub const MAX_CONNECTIONS: &str = "MAX_CONNECTIONS";
pub const STORE: &str = "STORE";
pub const FLUSH_RECORDS: &str = "FLUSH_RECORDS";
pub const CLICKHOUSE_URL: &str = "CLICKHOUSE_URL";
pub const CLICKHOUSE_DATABASE: &str = "CLICKHOUSE_DATABASE";
pub const CLICKHOUSE_TABLE: &str = "CLICKHOUSE_TABLE";
pub const CLICKHOUSE_USER: &str = "CLICKHOUSE_USER";
pub const CLICKHOUSE_PASSWORD: &str = "CLICKHOUSE_PASSWORD";
pub const CLICKHOUSE_TIMEOUT: &str = "CLICKHOUSE_TIMEOUT";

pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";
pub const DEFAULT_DATA_DIR: &str = "/data";
/// Large enough for a sidecar batch of several thousand records, small enough that a
/// request can never exhaust memory; applies to the body before and after gzip.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 << 20;
pub const DEFAULT_RETENTION_MAX_RECORDS: u64 = 10_000_000;
pub const DEFAULT_RETENTION_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const DEFAULT_PAGE_SIZE_MAX: usize = 1000;
/// Hard ceiling for `PAGE_SIZE_MAX`, so one answer stays a bounded amount of memory.
pub const PAGE_SIZE_CEILING: usize = 10_000;
pub const DEFAULT_READER_THREADS: usize = 2;
pub const DEFAULT_WORKERS: usize = 2;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// A sidecar sends at most 5,000 records per batch; 100,000 leaves room for other
/// senders while keeping one request's records a bounded amount of memory.
pub const DEFAULT_MAX_RECORDS_PER_REQUEST: usize = 100_000;
/// A whole body of `MAX_BODY_BYTES` (16 MiB) arrives in that time at 560 KB/s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_INGEST_MAX_REQUESTS: usize = 64;
/// Three local sidecars with two batches in flight each, from one address, fit well.
pub const DEFAULT_INGEST_MAX_REQUESTS_PER_CLIENT: usize = 16;
/// With the connection buffers (`MAX_CONNECTIONS` × 64 KiB), ingest in flight stays
/// under 512 MiB; see docs/log-aggregator.md, "Memory".
pub const DEFAULT_INGEST_MEMORY_BUDGET: u64 = 256 << 20;
pub const DEFAULT_INGEST_SLOTS: usize = 16;
/// The text search's p99 is tens of milliseconds on a million records; a query that
/// takes 10 s is one to narrow, not to wait for.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_QUERY_MAX_TERMS: usize = 16;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_CLICKHOUSE_DATABASE: &str = "default";
pub const DEFAULT_CLICKHOUSE_TABLE: &str = "logs";
pub const DEFAULT_CLICKHOUSE_USER: &str = "default";
/// An insert of a full batch takes milliseconds on a healthy server; 10 s is a server
/// that is stuck, and the sidecar is better told (503) and retries.
pub const DEFAULT_CLICKHOUSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings help text, shown by `--help`.
pub const SETTINGS_HELP: &str = "    LISTEN_ADDR            address to serve on (0.0.0.0:8080)
    STORE                  embedded: the log store (segments and a log, in DATA_DIR;
                           a SQLite store of earlier versions found there is imported);
                           clickhouse: a ClickHouse server (CLICKHOUSE_URL), shared by
                           any number of aggregators
    CLICKHOUSE_URL         STORE=clickhouse: the server's HTTP interface, such as
                           http://clickhouse:8123 (required then)
    CLICKHOUSE_DATABASE    database of the table, created if missing (default)
    CLICKHOUSE_TABLE       table of the records, created if missing (logs)
    CLICKHOUSE_USER        user for ClickHouse (default)
    CLICKHOUSE_PASSWORD    that user's password (empty)
    CLICKHOUSE_TIMEOUT     time an insert or a health check may take; then 503 (10s)
    DATA_DIR               directory of the store, created if missing (/data)
    FLUSH_RECORDS          embedded store: records kept in memory (and in the log)
                           before they are written to a segment (32768)
    AGGREGATOR_TOKEN       bearer token required for POST /logs, GET /logs, /logs/count
                           and /logs/clear (unset: open)
    MAX_BODY_BYTES         largest request body, before and after gzip (16MiB)
    RETENTION_MAX_RECORDS  oldest records beyond this count are deleted (10000000; 0: no limit)
    RETENTION_MAX_AGE      records whose time is older are deleted (168h; 0: no limit)
    RETENTION_INTERVAL     how often retention runs (10s)
    PAGE_SIZE_DEFAULT      GET /logs page size without limit= (100)
    PAGE_SIZE_MAX          largest limit= accepted by GET /logs (1000; at most 10000)
    SYNC_MODE              normal: an acknowledged batch survives a process crash;
                           full: also a power loss, at the cost of an fsync per batch (normal)
    READER_THREADS         threads answering queries (2)
    WORKERS                HTTP worker threads (2)
    SHUTDOWN_GRACE         time allowed to finish requests on SIGTERM (30s)
    MAX_RECORDS_PER_REQUEST  records one POST /logs may hold; more is a 413 (100000)
    BODY_READ_TIMEOUT      time a request body may take to arrive; then 408 (30s)
    INGEST_MAX_REQUESTS    POST /logs under way at once, bodies being read included;
                           more is a 503 (64)
    INGEST_MAX_REQUESTS_PER_CLIENT  the same from one client address; more is a 429 (16)
    INGEST_MEMORY_BUDGET   memory of all ingest requests together: bodies, decompressed
                           bodies and parsed records; past it a 503 (256MiB)
    INGEST_SLOTS           read bodies decoded, parsed and stored at once (16)
    QUERY_TIMEOUT          time a query may take; then a 503 naming it (10s)
    QUERY_MAX_TERMS        words a q= search may have once repeats are folded (16)
    MAX_CONNECTIONS        open connections at once, all workers together (1024)
    RUST_LOG               log filter (info)
";

/// How hard a commit pushes data to the disk before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// The write-ahead log is written at each commit but not synced: a committed batch
    /// survives `kill -9` (it is in the OS page cache), not a power loss.
    Normal,
    /// The log is synced (`fdatasync`) at each group commit: a committed batch survives
    /// a power loss too.
    Full,
}

impl std::str::FromStr for SyncMode {
    type Err = String;

    fn from_str(s: &str) -> Result<SyncMode, String> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(SyncMode::Normal),
            "full" => Ok(SyncMode::Full),
            _ => Err("expected normal or full".to_owned()),
        }
    }
}

/// Why `STORE=sqlite` is refused: the store is gone, but its files are not lost.
const SQLITE_REMOVED: &str = "the SQLite store was removed: the default store, embedded, \
imports a DATA_DIR that holds one (logs.db) on its first start with every record, so \
unset STORE or set it to embedded (or clickhouse)";

/// Which store keeps the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The log store: a write-ahead log and Parquet segments (the default).
    Embedded,
    /// A ClickHouse server, shared by any number of aggregators (see
    /// [`crate::clickhouse`]).
    ClickHouse,
}

impl std::str::FromStr for StoreKind {
    type Err = String;

    fn from_str(s: &str) -> Result<StoreKind, String> {
        match s.to_ascii_lowercase().as_str() {
            "embedded" => Ok(StoreKind::Embedded),
            "clickhouse" => Ok(StoreKind::ClickHouse),
            "sqlite" => Err(SQLITE_REMOVED.to_owned()),
            _ => Err("expected embedded or clickhouse".to_owned()),
        }
    }
}

/// Where the ClickHouse store is (`STORE=clickhouse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseConfig {
    /// The HTTP interface, without a trailing `/`.
    pub url: String,
    pub database: String,
    pub table: String,
    pub user: String,
    pub password: String,
    pub timeout: Duration,
}

/// When old records are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `None`: no bound on the number of records.
    pub max_records: Option<u64>,
    /// `None`: no bound on age.
    pub max_age: Option<Duration>,
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    pub listen: SocketAddr,
    pub store: StoreKind,
    /// Set when `store` is [`StoreKind::ClickHouse`].
    pub clickhouse: Option<ClickHouseConfig>,
    pub flush_records: usize,
    pub data_dir: PathBuf,
    pub token: Option<String>,
    pub max_body_bytes: usize,
    pub retention: Retention,
    pub page_size_default: usize,
    pub page_size_max: usize,
    pub sync_mode: SyncMode,
    pub reader_threads: usize,
    pub workers: usize,
    pub shutdown_grace: Duration,
    pub limits: Limits,
}

/// What one client may use of the aggregator, each a setting with a safe default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_records_per_request: usize,
    pub body_read_timeout: Duration,
    pub ingest_max_requests: usize,
    pub ingest_max_requests_per_client: usize,
    pub ingest_memory_budget_bytes: usize,
    pub ingest_slots: usize,
    pub query_timeout: Duration,
    pub query_max_terms: usize,
    pub max_connections: usize,
}

impl Settings for AggregatorConfig {
    fn listen_addr(&self) -> SocketAddr {
        self.listen
    }
}

impl AggregatorConfig {
    pub fn from_env(env: &dyn Source) -> Result<AggregatorConfig, ConfigErrors> {
        let mut r = Reader::new(env);
        let listen = r.socket_addr(LISTEN_ADDR, DEFAULT_LISTEN_ADDR);
        let data_dir = r.path(DATA_DIR, DEFAULT_DATA_DIR);
        let token = r.optional_string(AGGREGATOR_TOKEN);
        if let Some(t) = &token {
            if t.trim() != t || t.chars().any(|c| c.is_control()) {
                r.fail(
                    AGGREGATOR_TOKEN,
                    "<hidden>",
                    "must not contain spaces at either end or control characters",
                );
            }
        }
        let max_body = r.bytes(MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES);
        if !(1024..=(1u64 << 30)).contains(&max_body) {
            r.fail(
                MAX_BODY_BYTES,
                &max_body.to_string(),
                "must be between 1KiB and 1GiB",
            );
        }
        let max_records = r.parse(RETENTION_MAX_RECORDS, DEFAULT_RETENTION_MAX_RECORDS);
        let max_age = r.duration(RETENTION_MAX_AGE, DEFAULT_RETENTION_MAX_AGE);
        let interval = r.duration(RETENTION_INTERVAL, DEFAULT_RETENTION_INTERVAL);
        if interval < Duration::from_millis(10) {
            r.fail(
                RETENTION_INTERVAL,
                &format!("{interval:?}"),
                "must be at least 10ms",
            );
        }
        let page_size_max = r.bounded(PAGE_SIZE_MAX, DEFAULT_PAGE_SIZE_MAX, 1..=PAGE_SIZE_CEILING);
        let page_size_default = r.bounded(
            PAGE_SIZE_DEFAULT,
            DEFAULT_PAGE_SIZE.min(page_size_max),
            1..=PAGE_SIZE_CEILING,
        );
        if page_size_default > page_size_max {
            r.fail(
                PAGE_SIZE_DEFAULT,
                &page_size_default.to_string(),
                format!("must not exceed PAGE_SIZE_MAX ({page_size_max})"),
            );
        }
        let limits = read_limits(&mut r, max_body);
        let store = r.parse(STORE, StoreKind::Embedded);
        let clickhouse = (store == StoreKind::ClickHouse).then(|| read_clickhouse(&mut r));
        let config = AggregatorConfig {
            listen,
            store,
            clickhouse,
            flush_records: r.bounded(
                FLUSH_RECORDS,
                crate::embedded::engine::FLUSH_ROWS,
                1..=(1 << 24),
            ),
            data_dir,
            token,
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
            retention: Retention {
                max_records: (max_records > 0).then_some(max_records),
                max_age: (!max_age.is_zero()).then_some(max_age),
                interval,
            },
            page_size_default,
            page_size_max,
            sync_mode: r.parse(SYNC_MODE, SyncMode::Normal),
            reader_threads: r.bounded(READER_THREADS, DEFAULT_READER_THREADS, 1..=64),
            workers: r.bounded(WORKERS, DEFAULT_WORKERS, 1..=256),
            shutdown_grace: r.duration(SHUTDOWN_GRACE, DEFAULT_SHUTDOWN_GRACE),
            limits,
        };
        r.finish()?;
        Ok(config)
    }
}

/// The ClickHouse settings; names become SQL identifiers, so they are checked here.
fn read_clickhouse(r: &mut Reader<'_>) -> ClickHouseConfig {
    let url = match r.optional_string(CLICKHOUSE_URL) {
        None => {
            r.fail(CLICKHOUSE_URL, "", "required with STORE=clickhouse");
            String::new()
        }
        // Plain HTTP only: the aggregator is built without TLS.
        Some(_) => r
            .url(CLICKHOUSE_URL, "http://127.0.0.1:8123")
            .trim_end_matches('/')
            .to_owned(),
    };
    if url.starts_with("https:") {
        r.fail(
            CLICKHOUSE_URL,
            &url,
            "https is not supported; use http:// (on a private network or through a TLS proxy)",
        );
    }
    let mut name = |key: &str, default: &str| {
        let v = r.string(key, default);
        let ok = v.len() <= 128
            && v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            r.fail(
                key,
                &v,
                "expected a name of letters, digits and _ (not starting with a digit)",
            );
        }
        v
    };
    let database = name(CLICKHOUSE_DATABASE, DEFAULT_CLICKHOUSE_DATABASE);
    let table = name(CLICKHOUSE_TABLE, DEFAULT_CLICKHOUSE_TABLE);
    let user = r.string(CLICKHOUSE_USER, DEFAULT_CLICKHOUSE_USER);
    let password = r.optional_string(CLICKHOUSE_PASSWORD).unwrap_or_default();
    let timeout = r.duration(CLICKHOUSE_TIMEOUT, DEFAULT_CLICKHOUSE_TIMEOUT);
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&timeout) {
        r.fail(
            CLICKHOUSE_TIMEOUT,
            &format!("{timeout:?}"),
            "must be between 100ms and 1h",
        );
    }
    ClickHouseConfig {
        url,
        database,
        table,
        user,
        password,
        timeout,
    }
}

fn read_limits(r: &mut Reader<'_>, max_body: u64) -> Limits {
    let max_records_per_request = r.bounded(
        MAX_RECORDS_PER_REQUEST,
        DEFAULT_MAX_RECORDS_PER_REQUEST,
        1..=10_000_000,
    );
    let body_read_timeout = r.duration(BODY_READ_TIMEOUT, DEFAULT_BODY_READ_TIMEOUT);
    if body_read_timeout < Duration::from_millis(10) {
        r.fail(
            BODY_READ_TIMEOUT,
            &format!("{body_read_timeout:?}"),
            "must be at least 10ms",
        );
    }
    let ingest_max_requests =
        r.bounded(INGEST_MAX_REQUESTS, DEFAULT_INGEST_MAX_REQUESTS, 1..=65_536);
    let ingest_max_requests_per_client = r.bounded(
        INGEST_MAX_REQUESTS_PER_CLIENT,
        DEFAULT_INGEST_MAX_REQUESTS_PER_CLIENT.min(ingest_max_requests),
        1..=65_536,
    );
    if ingest_max_requests_per_client > ingest_max_requests {
        r.fail(
            INGEST_MAX_REQUESTS_PER_CLIENT,
            &ingest_max_requests_per_client.to_string(),
            format!("must not exceed INGEST_MAX_REQUESTS ({ingest_max_requests})"),
        );
    }
    let budget = r.bytes(INGEST_MEMORY_BUDGET, DEFAULT_INGEST_MEMORY_BUDGET);
    // A body of the largest size must fit, with room for its records.
    if budget < max_body.saturating_mul(2) {
        r.fail(
            INGEST_MEMORY_BUDGET,
            &budget.to_string(),
            format!("must be at least twice MAX_BODY_BYTES ({max_body})"),
        );
    }
    let query_timeout = r.duration(QUERY_TIMEOUT, DEFAULT_QUERY_TIMEOUT);
    if query_timeout < Duration::from_millis(10) {
        r.fail(
            QUERY_TIMEOUT,
            &format!("{query_timeout:?}"),
            "must be at least 10ms",
        );
    }
    Limits {
        max_records_per_request,
        body_read_timeout,
        ingest_max_requests,
        ingest_max_requests_per_client,
        ingest_memory_budget_bytes: usize::try_from(budget).unwrap_or(usize::MAX),
        ingest_slots: r.bounded(INGEST_SLOTS, DEFAULT_INGEST_SLOTS, 1..=4096),
        query_timeout,
        query_max_terms: r.bounded(QUERY_MAX_TERMS, DEFAULT_QUERY_MAX_TERMS, 1..=256),
        max_connections: r.bounded(MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS, 1..=1_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults() {
        let env: HashMap<&str, &str> = HashMap::new();
        let c = AggregatorConfig::from_env(&env).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.data_dir, PathBuf::from("/data"));
        assert_eq!(c.token, None);
        assert_eq!(c.max_body_bytes, 16 << 20);
        assert_eq!(c.retention.max_records, Some(10_000_000));
        assert_eq!(c.page_size_default, 100);
        assert_eq!(c.page_size_max, 1000);
        assert_eq!(c.sync_mode, SyncMode::Normal);
        assert_eq!(c.limits.max_records_per_request, 100_000);
        assert_eq!(c.limits.ingest_memory_budget_bytes, 256 << 20);
        assert_eq!(c.limits.query_timeout, Duration::from_secs(10));
    }

    #[test]
    fn limits_that_cannot_work_are_named() {
        let env: HashMap<&str, &str> = [
            ("INGEST_MAX_REQUESTS", "4"),
            ("INGEST_MAX_REQUESTS_PER_CLIENT", "8"),
            ("INGEST_MEMORY_BUDGET", "20MiB"),
            ("QUERY_TIMEOUT", "1ms"),
            ("MAX_RECORDS_PER_REQUEST", "0"),
        ]
        .into();
        let errors = AggregatorConfig::from_env(&env).unwrap_err();
        let vars: Vec<_> = errors.0.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "MAX_RECORDS_PER_REQUEST",
                "INGEST_MAX_REQUESTS_PER_CLIENT",
                "INGEST_MEMORY_BUDGET",
                "QUERY_TIMEOUT"
            ]
        );
        let env: HashMap<&str, &str> = [("INGEST_MAX_REQUESTS", "4")].into();
        let c = AggregatorConfig::from_env(&env).unwrap();
        assert_eq!(c.limits.ingest_max_requests_per_client, 4);
    }

    #[test]
    fn the_removed_sqlite_store_is_refused_with_the_way_to_upgrade() {
        let env: HashMap<&str, &str> = [("STORE", "sqlite")].into();
        let errors = AggregatorConfig::from_env(&env).unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].var, "STORE");
        assert!(errors.0[0].reason.contains("removed"), "{errors}");
        assert!(errors.0[0].reason.contains("imports"), "{errors}");
        let env: HashMap<&str, &str> = [("STORE", "lmdb")].into();
        let errors = AggregatorConfig::from_env(&env).unwrap_err();
        assert_eq!(errors.0[0].reason, "expected embedded or clickhouse");
    }

    #[test]
    fn clickhouse_settings_are_read_and_named() {
        let env: HashMap<&str, &str> = [("STORE", "clickhouse")].into();
        let errors = AggregatorConfig::from_env(&env).unwrap_err();
        assert_eq!(errors.0[0].var, "CLICKHOUSE_URL");
        let env: HashMap<&str, &str> = [
            ("STORE", "ClickHouse"),
            ("CLICKHOUSE_URL", "http://ch:8123/"),
            ("CLICKHOUSE_PASSWORD", "s3cret"),
        ]
        .into();
        let c = AggregatorConfig::from_env(&env).unwrap();
        let ch = c.clickhouse.unwrap();
        assert_eq!(ch.url, "http://ch:8123");
        assert_eq!(
            (ch.database.as_str(), ch.table.as_str()),
            ("default", "logs")
        );
        assert_eq!(
            (ch.user.as_str(), ch.password.as_str()),
            ("default", "s3cret")
        );
        assert_eq!(ch.timeout, Duration::from_secs(10));
        let env: HashMap<&str, &str> = [
            ("STORE", "clickhouse"),
            ("CLICKHOUSE_URL", "https://ch"),
            ("CLICKHOUSE_DATABASE", "a-b"),
            ("CLICKHOUSE_TABLE", "1x"),
            ("CLICKHOUSE_TIMEOUT", "1ms"),
        ]
        .into();
        let errors = AggregatorConfig::from_env(&env).unwrap_err();
        let vars: Vec<_> = errors.0.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "CLICKHOUSE_URL",
                "CLICKHOUSE_DATABASE",
                "CLICKHOUSE_TABLE",
                "CLICKHOUSE_TIMEOUT"
            ]
        );
        let env: HashMap<&str, &str> = [("CLICKHOUSE_URL", "not a url")].into();
        assert_eq!(AggregatorConfig::from_env(&env).unwrap().clickhouse, None);
    }

    #[test]
    fn zero_disables_retention_and_bad_values_are_named() {
        let env: HashMap<&str, &str> = [
            ("RETENTION_MAX_RECORDS", "0"),
            ("RETENTION_MAX_AGE", "0"),
            ("SYNC_MODE", "full"),
        ]
        .into();
        let c = AggregatorConfig::from_env(&env).unwrap();
        assert_eq!(c.retention.max_records, None);
        assert_eq!(c.retention.max_age, None);
        assert_eq!(c.sync_mode, SyncMode::Full);

        let env: HashMap<&str, &str> = [
            ("MAX_BODY_BYTES", "12"),
            ("PAGE_SIZE_DEFAULT", "500"),
            ("PAGE_SIZE_MAX", "200"),
            ("SYNC_MODE", "sometimes"),
            ("AGGREGATOR_TOKEN", " padded"),
        ]
        .into();
        let errors = AggregatorConfig::from_env(&env).unwrap_err();
        let vars: Vec<_> = errors.0.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "AGGREGATOR_TOKEN",
                "MAX_BODY_BYTES",
                "PAGE_SIZE_DEFAULT",
                "SYNC_MODE"
            ]
        );
        assert!(!errors.to_string().contains("padded"));
    }
}
