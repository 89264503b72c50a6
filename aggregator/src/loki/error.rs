//! Errors of the Loki endpoints, answered as Loki answers them: the status code and the
//! message as plain text (`parse error at line 1, col 5: ...`), which Grafana and
//! `logcli` show as they are.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::logql::metric::EvalError;
use super::logql::ParseError;
use super::params::ParamError;
use crate::metrics::{self, Metrics};
use crate::store::StoreError;

/// Loki's words for a query that ran out of time.
pub const DEADLINE: &str = "request timed out, decrease the duration of the request or add more label matchers (prefer exact match over regex match) to reduce the amount of data processed";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiError {
    pub status: StatusCode,
    pub message: String,
    /// The label of `aggregator_requests_rejected_total{reason}`.
    pub reason: &'static str,
}

impl LokiError {
    pub fn new(status: u16, reason: &'static str, message: impl Into<String>) -> LokiError {
        LokiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
            reason,
        }
    }

    pub fn bad(message: impl Into<String>) -> LokiError {
        LokiError::new(400, metrics::REASON_BAD_QUERY, message)
    }

    pub fn timeout() -> LokiError {
        LokiError::new(504, "timeout", DEADLINE)
    }

    pub fn unavailable(what: &str) -> LokiError {
        LokiError::new(
            503,
            metrics::REASON_UNAVAILABLE,
            format!("the {what} is not running; retry later"),
        )
    }

    pub fn store(e: impl std::fmt::Display) -> LokiError {
        log::error!(error = e.to_string().as_str(); "A store operation failed.");
        LokiError::new(500, metrics::REASON_STORE, format!("store error: {e}"))
    }

    /// Counts the refusal and hands it on.
    pub fn counted(self, m: &Metrics) -> LokiError {
        m.reject(self.reason);
        self
    }
}

impl std::fmt::Display for LokiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for LokiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status)
            .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(self.message.clone());
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl From<StoreError> for LokiError {
    fn from(e: StoreError) -> LokiError {
        match e {
            StoreError::Timeout(_) => LokiError::timeout(),
            StoreError::Unavailable(what) => LokiError::unavailable(&format!("store {what}")),
            StoreError::Failed(_) => LokiError::store(e),
        }
    }
}

impl From<ParseError> for LokiError {
    fn from(e: ParseError) -> LokiError {
        LokiError::bad(e.to_string())
    }
}

impl From<ParamError> for LokiError {
    fn from(e: ParamError) -> LokiError {
        LokiError::bad(e.to_string())
    }
}

impl From<EvalError> for LokiError {
    fn from(e: EvalError) -> LokiError {
        LokiError::bad(e.to_string())
    }
}
