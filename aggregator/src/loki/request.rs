//! What every Loki handler does first: the bearer token, the parameters (query string,
//! and the form body of a POST), a place among the queries running at once.

use actix_web::http::header::{self, CONTENT_TYPE};
use actix_web::{web, HttpRequest};
use tokio::sync::SemaphorePermit;

use super::error::LokiError;
use super::Loki;
use crate::auth::{self, AuthError};
use crate::metrics;
use crate::routes::State;

/// A request's parameters, in order; a name may repeat (`match[]`).
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The query string, then a form-encoded body.
    pub fn of(req: &HttpRequest, body: &[u8]) -> Result<Params, LokiError> {
        let mut pairs = pairs(req.query_string())?;
        let form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form && !body.is_empty() {
            let text = std::str::from_utf8(body)
                .map_err(|_| LokiError::bad("the form body is not UTF-8"))?;
            pairs.extend(self::pairs(text)?);
        }
        Ok(Params(pairs))
    }

    /// The last value of `name`, when not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn required(&self, name: &'static str) -> Result<&str, LokiError> {
        self.get(name)
            .ok_or_else(|| LokiError::bad(format!("missing parameter {name:?}")))
    }
}

fn pairs(text: &str) -> Result<Vec<(String, String)>, LokiError> {
    web::Query::<Vec<(String, String)>>::from_query(text)
        .map(web::Query::into_inner)
        .map_err(|e| LokiError::bad(format!("invalid query string: {e}")))
}

/// The same bearer token as every other endpoint.
pub fn authorize(req: &HttpRequest, state: &State) -> Result<(), LokiError> {
    auth::check(req.headers(), state.token.as_deref()).map_err(|e| {
        state.metrics.reject(metrics::REASON_UNAUTHORIZED);
        let message = match e {
            AuthError::Missing => e.to_string(),
            AuthError::Wrong => e.to_string(),
        };
        LokiError::new(401, metrics::REASON_UNAUTHORIZED, message)
    })
}

/// A place among the queries that may run at once; waits up to the query timeout.
pub async fn slot<'a>(loki: &'a Loki, state: &State) -> Result<SemaphorePermit<'a>, LokiError> {
    match tokio::time::timeout(loki.limits.timeout, loki.queries.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(
            LokiError::new(429, "too_many_queries", "too many outstanding requests")
                .counted(&state.metrics),
        ),
    }
}

/// A header's value as text.
pub fn header(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers()
        .get(name)
        .map(|v| v.to_str().unwrap_or("(not text)"))
}
