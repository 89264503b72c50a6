//! Statements sent to ClickHouse's HTTP interface, and its answers sorted into the
//! errors the store reports.
//!
//! One `awc` client per thread (the workers and the main thread each keep theirs, with
//! its own connection pool), because the futures of the store run on the thread that
//! awaits them. Every statement carries its own time limit twice: as the client's
//! timeout, and as ClickHouse's `max_execution_time` for reads, so that the server
//! stops the work too rather than finishing a query nobody waits for.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::ClickHouseConfig;
use crate::store::StoreError;

/// Largest answer read from ClickHouse: a page is at most `PAGE_SIZE_CEILING` records,
/// cut at 16 MiB of bodies, and its neighbours.
pub const MAX_ANSWER_BYTES: usize = 256 << 20;
/// ClickHouse closes idle HTTP connections after 3 s (`keep_alive_timeout`); reusing one
/// it is closing would fail a statement, so the pool lets them go sooner.
pub const CONN_KEEP_ALIVE: Duration = Duration::from_secs(2);
/// Largest statement text (ClickHouse's `max_query_size`, 256 KiB by default, is too
/// small for the look-up of a batch's event ids).
pub const MAX_QUERY_BYTES: usize = 64 << 20;
/// ClickHouse's error code for a query stopped at `max_execution_time`.
const TIMEOUT_EXCEEDED: u32 = 159;

thread_local! {
    static CLIENT: awc::Client = awc::Client::builder()
        .connector(awc::Connector::new().conn_keep_alive(CONN_KEEP_ALIVE))
        .disable_redirects()
        .disable_timeout()
        .finish();
}

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChError {
    /// No answer: the server is down, unreachable, or did not answer in time.
    #[error("ClickHouse at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The statement ran past its time limit (the server stopped it, or the client
    /// stopped waiting).
    #[error("ClickHouse stopped the statement after {0:?}")]
    Timeout(Duration),
    /// ClickHouse answered with an error.
    #[error("ClickHouse refused a statement (code {code}): {message}")]
    Refused { code: u32, message: String },
    /// The answer could not be read.
    #[error("ClickHouse's answer could not be read: {0}")]
    Answer(String),
}

impl ChError {
    /// Whether the server itself is the problem (as opposed to one statement).
    pub fn is_down(&self) -> bool {
        matches!(self, ChError::Unreachable { .. })
    }

    /// As the store reports it: a server that does not answer is `Unavailable` (503,
    /// the sender retries), a read past its deadline is `Timeout`.
    pub fn into_store(self) -> StoreError {
        match self {
            ChError::Unreachable { .. } => StoreError::Unavailable("ClickHouse server"),
            ChError::Timeout(d) => StoreError::Timeout(d),
            e => StoreError::Failed(e.to_string()),
        }
    }
}

/// How one statement is sent.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// Sent in the URL (`INSERT ... FORMAT RowBinary`, whose rows are the body), or
    /// `None` when the body is the statement.
    pub query: Option<&'a str>,
    pub body: Bytes,
    /// ClickHouse settings, such as `("max_execution_time", "2")`; each must exist in
    /// the server's version, or the server refuses the statement.
    pub settings: Vec<(&'static str, String)>,
    pub deadline: Instant,
}

/// Where and as whom statements are sent.
#[derive(Debug, Clone)]
pub struct Server {
    pub url: String,
    user: String,
    password: String,
}

impl Server {
    pub fn new(config: &ClickHouseConfig) -> Server {
        Server {
            url: config.url.clone(),
            user: config.user.clone(),
            password: config.password.clone(),
        }
    }

    /// A read (its text as the body), stopped at `deadline` by the server and the client.
    pub async fn select(&self, sql: String, deadline: Instant) -> Result<Bytes, ChError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ChError::Timeout(left));
        }
        // Whole seconds (what 18.16 accepts), rounded up: the client's timeout is the
        // exact one.
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        self.send(Call {
            query: None,
            body: Bytes::from(sql),
            settings: vec![
                ("max_execution_time", seconds.to_string()),
                ("max_query_size", MAX_QUERY_BYTES.to_string()),
                // `FINAL` merges rows before `WHERE` filters them; a condition moved to
                // `PREWHERE` would filter first, and could show a duplicate.
                ("optimize_move_to_prewhere", "0".to_owned()),
            ],
            deadline,
        })
        .await
    }

    /// A statement without rows to send or read back (DDL, `ALTER`, `TRUNCATE`).
    pub async fn execute(&self, sql: String, timeout: Duration) -> Result<Bytes, ChError> {
        self.send(Call {
            query: None,
            body: Bytes::from(sql),
            settings: vec![("max_query_size", MAX_QUERY_BYTES.to_string())],
            deadline: Instant::now() + timeout,
        })
        .await
    }

    /// Sends one statement and returns the answer's body once the server has finished
    /// it (`wait_end_of_query`: an error part-way is a status, not a cut answer).
    ///
    /// A pooled connection the server closed (it restarted) fails the first write on
    /// it; such a failure, unlike a refused connection, is tried once more on a new one.
    /// Retrying is safe for every statement: an insert that did reach the server is
    /// found by the look-up or hidden by the reads (see [`super`]).
    pub async fn send(&self, call: Call<'_>) -> Result<Bytes, ChError> {
        match self.send_once(&call).await {
            Err(Attempt::Stale(_)) => match self.send_once(&call).await {
                Err(Attempt::Stale(e)) => Err(e),
                other => other.map_err(Attempt::into_error),
            },
            other => other.map_err(Attempt::into_error),
        }
    }

    async fn send_once(&self, call: &Call<'_>) -> Result<Bytes, Attempt> {
        let left = call.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Attempt::Failed(ChError::Timeout(left)));
        }
        // Every statement names its table with its database, so none is set here (and
        // `CREATE DATABASE` works before the database exists).
        let mut params: Vec<(&str, &str)> = vec![("wait_end_of_query", "1")];
        if let Some(q) = call.query {
            params.push(("query", q));
        }
        for (k, v) in &call.settings {
            params.push((k, v));
        }
        let request = CLIENT
            .with(|c| c.post(format!("{}/", self.url)))
            .basic_auth(&self.user, &self.password)
            .timeout(left)
            .query(&params)
            .map_err(|e| {
                Attempt::Failed(ChError::Answer(format!("cannot encode the statement: {e}")))
            })?;
        let unreachable = |reason: String| ChError::Unreachable {
            url: self.url.clone(),
            reason,
        };
        let mut answer = match request.send_body(call.body.clone()).await {
            Ok(a) => a,
            Err(awc::error::SendRequestError::Timeout) => {
                return Err(Attempt::Failed(ChError::Timeout(left)))
            }
            Err(e @ awc::error::SendRequestError::Connect(_)) => {
                return Err(Attempt::Failed(unreachable(e.to_string())))
            }
            Err(e) => return Err(Attempt::Stale(unreachable(e.to_string()))),
        };
        let status = answer.status();
        let body = match answer.body().limit(MAX_ANSWER_BYTES).await {
            Ok(b) => b,
            Err(awc::error::PayloadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(Attempt::Failed(ChError::Timeout(left)))
            }
            Err(e) => {
                return Err(Attempt::Failed(unreachable(format!(
                    "the answer was cut: {e}"
                ))))
            }
        };
        if status.is_success() {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body).trim().to_owned();
        let code = error_code(&text).unwrap_or(0);
        if code == TIMEOUT_EXCEEDED {
            return Err(Attempt::Failed(ChError::Timeout(left)));
        }
        if status.is_server_error() && code == 0 {
            // Not ClickHouse's own error: a proxy in front of a server that is down.
            return Err(Attempt::Failed(unreachable(format!("{status}: {text}"))));
        }
        Err(Attempt::Failed(ChError::Refused {
            code,
            message: text,
        }))
    }
}

/// How one attempt failed: for good, or on a connection that may have been stale.
enum Attempt {
    Failed(ChError),
    Stale(ChError),
}

impl Attempt {
    fn into_error(self) -> ChError {
        match self {
            Attempt::Failed(e) | Attempt::Stale(e) => e,
        }
    }
}

/// The `N` of `Code: N, e.displayText() = ...` (every version writes it so).
fn error_code(text: &str) -> Option<u32> {
    let rest = text.strip_prefix("Code: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_both_generations_of_messages() {
        assert_eq!(
            error_code("Code: 159, e.displayText() = DB::Exception: Timeout exceeded"),
            Some(159)
        );
        assert_eq!(
            error_code("Code: 60. DB::Exception: Table default.x does not exist. (UNKNOWN_TABLE)"),
            Some(60)
        );
        assert_eq!(error_code("Bad Gateway"), None);
        assert_eq!(
            ChError::Timeout(Duration::from_secs(1)).into_store(),
            StoreError::Timeout(Duration::from_secs(1))
        );
        assert!(matches!(
            ChError::Unreachable {
                url: "u".into(),
                reason: "r".into()
            }
            .into_store(),
            StoreError::Unavailable(_)
        ));
    }
}
