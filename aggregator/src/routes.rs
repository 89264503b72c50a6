//! The HTTP endpoints. Handlers check the request, then ask the store through its one
//! interface ([`Store`]) and shape the answer; they never learn what backend it is.
//! `POST /logs` lives in [`crate::ingest`].
//!
//! [`endpoints`] is the one list of what the server answers: [`routes`] registers it
//! (a wrong method on a known path is a 405 with `Allow`), and a test checks it against
//! the OpenAPI description served at `/openapi.json`. A new endpoint is one line here
//! and one path in `openapi.json`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError, Route};
use serde_json::json;
use shared::http::{self, ApiError};
use shared::wire::{AggregatorHealth, ClearResponse, LogCount};
use tokio::sync::Semaphore;

use crate::admission::{Admission, MemoryBudget};
use crate::auth::{self, AuthError};
use crate::config::Limits;
use crate::console;
use crate::ingest::post_logs;
use crate::metrics::{self, Metrics};
use crate::page;
use crate::query::{Cursor, LogParams, LogQuery};
use crate::store::{Store, StoreError};

/// The program's name, as `/health` reports it.
pub const SERVICE: &str = "log-aggregator";
/// The OpenAPI 3 description of every endpoint, served at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What every handler shares.
pub struct State {
    pub store: Store,
    pub metrics: Metrics,
    pub token: Option<String>,
    pub max_body_bytes: usize,
    pub page_size_default: usize,
    pub page_size_max: usize,
    pub limits: Limits,
    /// `POST /logs` under way, overall and per client.
    pub admission: Arc<Admission>,
    /// Memory all `POST /logs` together may hold.
    pub budget: Arc<MemoryBudget>,
    /// Read bodies being decoded, parsed and stored at once.
    pub ingest_slots: Arc<Semaphore>,
    /// The live feed and recent records behind `GET /logs/tail`.
    pub hub: Arc<crate::console::hub::Hub>,
    /// `GET /logs/tail` streams open at once.
    pub tails: Arc<Semaphore>,
}

impl State {
    /// The shared state of a server with these settings.
    pub fn new(store: Store, metrics: Metrics, config: &crate::config::AggregatorConfig) -> State {
        let limits = config.limits.clone();
        State {
            store,
            metrics: metrics.clone(),
            token: config.token.clone(),
            max_body_bytes: config.max_body_bytes,
            page_size_default: config.page_size_default,
            page_size_max: config.page_size_max,
            admission: Admission::new(
                limits.ingest_max_requests,
                limits.ingest_max_requests_per_client,
                metrics.ingest_requests.clone(),
            ),
            budget: MemoryBudget::new(
                limits.ingest_memory_budget_bytes,
                metrics.ingest_memory.clone(),
            ),
            ingest_slots: Arc::new(Semaphore::new(limits.ingest_slots)),
            hub: Arc::default(),
            tails: Arc::new(Semaphore::new(crate::console::tail::MAX_TAILS)),
            limits,
        }
    }
}

/// One endpoint: its path, its method, and the handler that answers it.
pub struct Endpoint {
    pub path: &'static str,
    pub method: Method,
    pub route: Route,
}

pub fn endpoint(path: &'static str, method: Method, route: Route) -> Endpoint {
    Endpoint {
        path,
        method,
        route,
    }
}

/// Every endpoint the server answers, in the order of the OpenAPI description.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint("/", Method::GET, web::get().to(index)),
        endpoint("/health", Method::GET, web::get().to(health)),
        endpoint(
            "/metrics",
            Method::GET,
            web::get().to(http::metrics_endpoint),
        ),
        endpoint("/openapi.json", Method::GET, web::get().to(openapi)),
        endpoint("/logs", Method::POST, web::post().to(post_logs)),
        endpoint("/logs", Method::GET, web::get().to(get_logs)),
        endpoint("/logs/count", Method::GET, web::get().to(count)),
        endpoint(
            "/logs/volume",
            Method::GET,
            web::get().to(console::volume::volume),
        ),
        endpoint(
            "/logs/tail",
            Method::GET,
            web::get().to(console::tail::tail),
        ),
        endpoint("/logs/clear", Method::POST, web::post().to(clear)),
    ]
}

/// Registers [`endpoints`].
pub fn routes(cfg: &mut web::ServiceConfig) {
    register(cfg, endpoints());
}

/// Registers `endpoints`, one resource per path, each answering its other methods with
/// 405 and `Allow`.
pub fn register(cfg: &mut web::ServiceConfig, endpoints: Vec<Endpoint>) {
    let mut paths: Vec<(&'static str, Vec<Method>, Vec<Route>)> = Vec::new();
    for e in endpoints {
        match paths.iter_mut().find(|(p, _, _)| *p == e.path) {
            Some((_, methods, routes)) => {
                methods.push(e.method);
                routes.push(e.route);
            }
            None => paths.push((e.path, vec![e.method], vec![e.route])),
        }
    }
    for (path, methods, routes) in paths {
        let allow = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let resource = routes
            .into_iter()
            .fold(web::resource(path), |r, route| r.route(route))
            .default_service(web::to(move |req: HttpRequest, state: web::Data<State>| {
                state.metrics.reject(metrics::REASON_METHOD);
                let res = http::method_not_allowed(&req, &allow);
                async move { res }
            }));
        cfg.service(resource);
    }
}

/// A refused request: the JSON error, plus the challenge header of a 401 or the
/// `Retry-After` of a 429 or 503.
#[derive(Debug)]
pub struct Refusal {
    error: ApiError,
    challenge: Option<&'static str>,
    retry_after_s: Option<u32>,
}

impl Refusal {
    /// Tells the client when to try again.
    pub fn retry_after(mut self, seconds: u32) -> Refusal {
        self.retry_after_s = Some(seconds);
        self
    }
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        Refusal {
            error,
            challenge: None,
            retry_after_s: None,
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
        if let Some(seconds) = self.retry_after_s {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        res
    }
}

pub type Answer = Result<HttpResponse, Refusal>;

/// The deadline passed before the answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// Waits for `answer` until `deadline`, then stops waiting.
pub async fn until<T>(deadline: Instant, answer: impl Future<Output = T>) -> Result<T, TimedOut> {
    tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), answer)
        .await
        .map_err(|_| TimedOut)
}

impl State {
    pub fn reject(&self, reason: &str, error: ApiError) -> Refusal {
        self.metrics.reject(reason);
        error.into()
    }

    pub fn authorize(&self, req: &HttpRequest) -> Result<(), Refusal> {
        auth::check(req.headers(), self.token.as_deref()).map_err(|e| {
            self.metrics.reject(metrics::REASON_UNAUTHORIZED);
            Refusal {
                error: ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()),
                challenge: Some(match e {
                    AuthError::Missing => "Bearer",
                    AuthError::Wrong => "Bearer error=\"invalid_token\"",
                }),
                retry_after_s: None,
            }
        })
    }

    /// The filters of `GET /logs` in `req`'s query string (shared by the endpoints that
    /// take them), with a page of `default_limit` records and at most `max_limit`.
    pub fn log_query(
        &self,
        req: &HttpRequest,
        default_limit: usize,
        max_limit: usize,
    ) -> Result<LogQuery, Refusal> {
        let bad = |message: String| {
            self.reject(metrics::REASON_BAD_QUERY, ApiError::bad_request(message))
        };
        let params = web::Query::<LogParams>::from_query(req.query_string())
            .map_err(|e| bad(format!("invalid query string: {e}")))?;
        params
            .to_query_within(default_limit, max_limit, self.limits.query_max_terms)
            .map_err(|e| bad(e.to_string()))
    }

    pub fn unavailable(&self, what: &str) -> Refusal {
        self.reject(
            metrics::REASON_UNAVAILABLE,
            ApiError::unavailable(format!("the {what} is not running; retry later")),
        )
        .retry_after(1)
    }

    fn query_timed_out(&self) -> Refusal {
        let limit = self.limits.query_timeout;
        self.reject(
            metrics::REASON_QUERY_TIMEOUT,
            ApiError::unavailable(format!(
                "the query did not finish within {} (QUERY_TIMEOUT); narrow it with service, level, since and until, or fewer words in q",
                shared::config::format_duration(limit)
            ))
            .with("timeout_ms", limit.as_millis() as u64),
        )
    }

    pub fn store_failed(&self, e: StoreError) -> Refusal {
        match e {
            StoreError::Unavailable(what) => self.unavailable(&format!("store {what}")),
            StoreError::Timeout(_) => self.query_timed_out(),
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

/// `GET /logs`: one page, newest first unless `order=asc`.
async fn get_logs(req: HttpRequest, state: web::Data<State>) -> Answer {
    logs_page(req, &state).await
}

async fn logs_page(req: HttpRequest, state: &State) -> Answer {
    state.authorize(&req)?;
    let query = state.log_query(&req, state.page_size_default, state.page_size_max)?;
    let order = query.order;
    // The store stops the work at the deadline; the wait stops there too, whatever the
    // backend does.
    let deadline = Instant::now() + state.limits.query_timeout;
    let page = match until(deadline, state.store.query(query, deadline)).await {
        Ok(Ok(page)) => page,
        Ok(Err(e)) => return Err(state.store_failed(e)),
        Err(TimedOut) => return Err(state.query_timed_out()),
    };
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
    let deadline = Instant::now() + state.limits.query_timeout;
    match until(deadline, state.store.count(deadline)).await {
        Ok(Ok(c)) => Ok(HttpResponse::Ok().json(LogCount {
            total_logs: c.total,
            by_service: c.by_service,
            by_level: c.by_level,
        })),
        Ok(Err(e)) => Err(state.store_failed(e)),
        Err(TimedOut) => Err(state.query_timed_out()),
    }
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

/// `GET /openapi.json`: the OpenAPI 3 description of this API.
async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
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
            {"method": "GET", "path": "/logs/volume", "description": "records per time bucket over the filters of GET /logs, with step (e.g. 1m) and by (level|service); also the facets and per-service request rate, 4xx/5xx and latency p50/p99 of the same records"},
            {"method": "GET", "path": "/logs/tail", "description": "Server-Sent Events: each new record matching the filters of GET /logs, as it is acknowledged; resumable with Last-Event-ID"},
            {"method": "POST", "path": "/logs/clear", "description": "delete every record: {status, cleared}"},
            {"method": "GET", "path": "/health", "description": "{status, service, logs_stored}"},
            {"method": "GET", "path": "/metrics", "description": "Prometheus metrics"},
            {"method": "GET", "path": "/openapi.json", "description": "the OpenAPI 3 description of this API"},
            {"method": "POST", "path": "/loki/api/v1/push", "description": "Loki push (protobuf + snappy, or JSON): each entry becomes a record; answers 204 once durable"},
            {"method": "GET|POST", "path": "/loki/api/v1/query_range, /query, /labels, /label/{name}/values, /series, /index/stats, /index/volume, /index/volume_range", "description": "Loki queries in LogQL (the subset in docs/loki.md), for Grafana and logcli"},
            {"method": "GET", "path": "/loki/api/v1/tail", "description": "Loki live tail (WebSocket)"},
            {"method": "GET", "path": "/ready, /loki/api/v1/status/buildinfo", "description": "Loki readiness and build information"},
        ],
        "limits": {
            "max_body_bytes": state.max_body_bytes,
            "max_records_per_request": state.limits.max_records_per_request,
            "page_size_default": state.page_size_default,
            "page_size_max": state.page_size_max,
            "query_max_terms": state.limits.query_max_terms,
            "query_timeout_ms": state.limits.query_timeout.as_millis() as u64,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Every (path, method) the OpenAPI description lists.
    fn described() -> Vec<(String, String)> {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
        let mut ops = Vec::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if [
                    "get", "put", "post", "delete", "options", "head", "patch", "trace",
                ]
                .contains(&method.as_str())
                {
                    ops.push((path.clone(), method.to_uppercase()));
                }
            }
        }
        ops.sort();
        ops
    }

    #[actix_web::test]
    async fn the_openapi_description_lists_exactly_the_registered_routes() {
        let mut registered: Vec<(String, String)> = endpoints()
            .into_iter()
            .chain(crate::loki::endpoints())
            .map(|e| (e.path.to_owned(), e.method.as_str().to_owned()))
            .collect();
        registered.sort();
        assert_eq!(registered, described());
        // Every operation answers with a schema for its success and names its errors'.
        let spec: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        for (path, method) in described() {
            let op = &spec["paths"][&path][method.to_lowercase()];
            let answers = op["responses"].as_object().unwrap();
            assert!(
                ["200", "204", "101"]
                    .iter()
                    .any(|c| answers.contains_key(*c)),
                "{method} {path}"
            );
            assert!(op["operationId"].is_string(), "{method} {path}");
        }
    }

    #[actix_web::test]
    async fn waiting_stops_at_the_deadline() {
        let never = std::future::pending::<()>();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(until(soon, never).await, Err(TimedOut));
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(until(later, async { 7 }).await, Ok(7));
        // A deadline already past still takes an answer that is ready.
        assert_eq!(until(Instant::now(), async { 8 }).await, Ok(8));
    }
}
