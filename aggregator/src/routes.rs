//! The HTTP endpoints. Handlers check the request, then ask the store through its one
//! interface ([`Store`]) and shape the answer; they never learn what backend it is.

use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use serde_json::json;
use shared::http::ApiError;
use shared::wire::{AggregatorHealth, ClearResponse, IngestResponse, LogCount};
use tokio::sync::Semaphore;

use crate::auth::{self, AuthError};
use crate::body::{self, BodyError};
use crate::metrics::{self, Metrics};
use crate::page;
use crate::query::{Cursor, LogParams};
use crate::record::Received;
use crate::store::{Store, StoreError};

/// The program's name, as `/health` reports it.
pub const SERVICE: &str = "log-aggregator";
/// Bodies being read or parsed at once; bounds ingest memory to about this many times
/// the body limit (twice that for gzip).
pub const INGEST_SLOTS: usize = 16;
/// How long a request may wait for an ingest slot before it is told to retry.
pub const INGEST_SLOT_WAIT: Duration = Duration::from_secs(30);
/// How long the store may work on one read before it stops it.
pub const QUERY_TIME_LIMIT: Duration = Duration::from_secs(30);

/// What every handler shares.
pub struct State {
    pub store: Store,
    pub metrics: Metrics,
    pub token: Option<String>,
    pub max_body_bytes: usize,
    pub page_size_default: usize,
    pub page_size_max: usize,
    pub ingest_slots: Semaphore,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/health", web::get().to(health))
        .route("/logs", web::post().to(post_logs))
        .route("/logs", web::get().to(get_logs))
        .route("/logs/count", web::get().to(count))
        .route("/logs/clear", web::post().to(clear));
}

/// A refused request: the JSON error, plus the challenge header of a 401.
#[derive(Debug)]
pub struct Refusal {
    error: ApiError,
    challenge: Option<&'static str>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        Refusal {
            error,
            challenge: None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        self.error.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = self.error.error_response();
        if let Some(challenge) = self.challenge {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        res
    }
}

type Answer = Result<HttpResponse, Refusal>;

impl State {
    fn reject(&self, reason: &str, error: ApiError) -> Refusal {
        self.metrics.reject(reason);
        error.into()
    }

    fn authorize(&self, req: &HttpRequest) -> Result<(), Refusal> {
        auth::check(req.headers(), self.token.as_deref()).map_err(|e| {
            self.metrics.reject(metrics::REASON_UNAUTHORIZED);
            Refusal {
                error: ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()),
                challenge: Some(match e {
                    AuthError::Missing => "Bearer",
                    AuthError::Wrong => "Bearer error=\"invalid_token\"",
                }),
            }
        })
    }

    fn unavailable(&self, what: &str) -> Refusal {
        self.reject(
            metrics::REASON_UNAVAILABLE,
            ApiError::unavailable(format!("the {what} is not running; retry later")),
        )
    }

    fn store_failed(&self, e: StoreError) -> Refusal {
        match e {
            StoreError::Unavailable(what) => self.unavailable(&format!("store {what}")),
            StoreError::Timeout(_) => {
                self.reject(metrics::REASON_STORE, ApiError::unavailable(e.to_string()))
            }
            StoreError::Failed(_) => {
                log::error!(error = e.to_string().as_str(); "A store operation failed.");
                self.reject(
                    metrics::REASON_STORE,
                    ApiError::internal(format!("store error: {e}")),
                )
            }
        }
    }
}

fn body_error(state: &State, e: BodyError) -> Refusal {
    let status = match e {
        BodyError::UnsupportedType(_) | BodyError::UnsupportedEncoding(_) => {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
        BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    state.reject(e.reason(), ApiError::new(status, e.to_string()))
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers()
        .get(name)
        .map(|v| v.to_str().unwrap_or("(not text)"))
}

/// `POST /logs`: answered only after the batch is committed.
async fn post_logs(req: HttpRequest, payload: web::Payload, state: web::Data<State>) -> Answer {
    ingest(req, payload, &state).await
}

async fn ingest(req: HttpRequest, mut payload: web::Payload, state: &State) -> Answer {
    state.authorize(&req)?;
    let format = body::format_of(header_str(&req, header::CONTENT_TYPE))
        .map_err(|e| body_error(state, e))?;
    let gzip = body::is_gzip(header_str(&req, header::CONTENT_ENCODING))
        .map_err(|e| body_error(state, e))?;
    let limit = state.max_body_bytes;
    let too_large = BodyError::TooLarge {
        limit,
        decompressed: false,
    };
    let declared = header_str(&req, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(body_error(state, too_large));
    }
    let _slot = match tokio::time::timeout(INGEST_SLOT_WAIT, state.ingest_slots.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => return Err(state.unavailable("ingest queue")),
    };
    let mut raw = web::BytesMut::with_capacity(declared.map_or(64 * 1024, |n| n as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| body_error(state, BodyError::Read(e.to_string())))?;
        if raw.len() + chunk.len() > limit {
            return Err(body_error(state, too_large));
        }
        raw.extend_from_slice(&chunk);
    }
    let decoded;
    let bytes: &[u8] = if gzip {
        decoded = body::gunzip(&raw, limit).map_err(|e| body_error(state, e))?;
        &decoded
    } else {
        &raw
    };
    let records =
        body::parse_batch(bytes, format, &Received::now()).map_err(|e| body_error(state, e))?;
    drop(raw);
    let count = records.len();
    let done = state
        .store
        .ingest(records)
        .await
        .map_err(|e| state.store_failed(e))?;
    state.metrics.records_ingested.inc_by(done.stored);
    state.metrics.records_duplicate.inc_by(done.duplicates);
    state.metrics.batch_records.observe(count as f64);
    Ok(HttpResponse::Ok().json(IngestResponse {
        status: "success".to_owned(),
        accepted: done.stored,
        duplicates: done.duplicates,
    }))
}

/// `GET /logs`: one page, newest first unless `order=asc`.
async fn get_logs(req: HttpRequest, state: web::Data<State>) -> Answer {
    logs_page(req, &state).await
}

async fn logs_page(req: HttpRequest, state: &State) -> Answer {
    state.authorize(&req)?;
    let params = web::Query::<LogParams>::from_query(req.query_string()).map_err(|e| {
        state.reject(
            metrics::REASON_BAD_QUERY,
            ApiError::bad_request(format!("invalid query string: {e}")),
        )
    })?;
    let query = params
        .to_query(state.page_size_default, state.page_size_max)
        .map_err(|e| {
            state.reject(
                metrics::REASON_BAD_QUERY,
                ApiError::bad_request(e.to_string()),
            )
        })?;
    let order = query.order;
    let page = state
        .store
        .query(query, Instant::now() + QUERY_TIME_LIMIT)
        .await
        .map_err(|e| state.store_failed(e))?;
    // The stored texts are JSON already: the page is assembled, not re-serialised.
    let size: usize = page.logs.iter().map(|l| l.len() + 1).sum();
    let mut out = String::with_capacity(size + 96);
    out.push_str("{\"total\":");
    out.push_str(&page.total.to_string());
    out.push_str(",\"logs\":[");
    for (i, log) in page.logs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(log);
    }
    out.push_str("],\"next_cursor\":");
    match page.last {
        Some((ts_us, id)) => {
            let cursor = Cursor { order, ts_us, id }.encode();
            out.push_str(&serde_json::Value::from(cursor).to_string());
        }
        None => out.push_str("null"),
    }
    out.push('}');
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(out))
}

/// `GET /logs/count`.
async fn count(req: HttpRequest, state: web::Data<State>) -> Answer {
    state.authorize(&req)?;
    let c = state
        .store
        .count(Instant::now() + QUERY_TIME_LIMIT)
        .await
        .map_err(|e| state.store_failed(e))?;
    Ok(HttpResponse::Ok().json(LogCount {
        total_logs: c.total,
        by_service: c.by_service,
        by_level: c.by_level,
    }))
}

/// `POST /logs/clear`.
async fn clear(req: HttpRequest, state: web::Data<State>) -> Answer {
    state.authorize(&req)?;
    let n = state
        .store
        .clear()
        .await
        .map_err(|e| state.store_failed(e))?;
    log::info!(cleared = n; "The store was cleared.");
    Ok(HttpResponse::Ok().json(ClearResponse {
        status: "success".to_owned(),
        cleared: n,
    }))
}

/// `GET /health`: answered from the store's own state, without I/O; 503 while the
/// writer cannot write, so that a supervisor or a load balancer sees it.
async fn health(state: web::Data<State>) -> HttpResponse {
    let health = state.store.health();
    let (status, word) = if health.writable {
        (StatusCode::OK, "healthy")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    };
    HttpResponse::build(status).json(AggregatorHealth {
        status: word.to_owned(),
        service: SERVICE.to_owned(),
        logs_stored: health.stored,
        problems: health.problems,
    })
}

/// `GET /`: a JSON index for scripts, a small search page for a browser.
async fn index(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        return HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(page::HTML);
    }
    HttpResponse::Ok().json(json!({
        "service": SERVICE,
        "version": env!("CARGO_PKG_VERSION"),
        "auth": if state.token.is_some() { "bearer token required for /logs endpoints" } else { "open" },
        "endpoints": [
            {"method": "POST", "path": "/logs", "description": "store logs: a JSON object, an array of objects (application/json) or NDJSON (application/x-ndjson); gzip accepted; answers {status, accepted, duplicates} once durable"},
            {"method": "GET", "path": "/logs", "description": "query logs: service, level, request_id, since, until (RFC 3339), q (text), limit, order (asc|desc), cursor; answers {total, logs, next_cursor}"},
            {"method": "GET", "path": "/logs/count", "description": "records stored: {total_logs, by_service, by_level}"},
            {"method": "POST", "path": "/logs/clear", "description": "delete every record: {status, cleared}"},
            {"method": "GET", "path": "/health", "description": "{status, service, logs_stored}"},
            {"method": "GET", "path": "/metrics", "description": "Prometheus metrics"},
        ],
        "limits": {
            "max_body_bytes": state.max_body_bytes,
            "page_size_default": state.page_size_default,
            "page_size_max": state.page_size_max,
        },
    }))
}
