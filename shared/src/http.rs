//! What every HTTP server of the project puts in front of its handlers.
//!
//! [`observe`] gives each request an id (the caller's `X-Request-Id` when it sends a
//! sane one), times it, logs it as one structured record and counts it in
//! [`HttpMetrics`]. [`ApiError`] is the one JSON error shape, and the extractor configs
//! below turn actix's own extraction failures into it, so no endpoint answers in plain
//! text. [`allow_only`] makes a wrong method on a known path a 405 with `Allow`.
//!
//! Metric labels come only from bounded sets, whatever a client sends: the method is one
//! of the nine standard ones or `other` ([`method_label`]), the route is the pattern the
//! request matched (`/users/{id}`, or `unmatched`), never its path, and the status is
//! a three-digit code the server chose. actix-web accepts any token as a method, so a
//! label taken as sent would let one client grow `/metrics` without bound.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use serde_json::json;

/// The header that carries a request's id across services.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id kept as is; longer or odd ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the request being handled, set by [`observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The caller's id when it is short printable ASCII, a fresh one otherwise.
    pub fn from_header(value: Option<&HeaderValue>) -> RequestId {
        value
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= MAX_REQUEST_ID_LEN
                    && v.bytes().all(|b| b.is_ascii_graphic())
            })
            .map(|v| RequestId(v.to_owned()))
            .unwrap_or_else(RequestId::generate)
    }

    pub fn generate() -> RequestId {
        RequestId(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId::from_header(req.headers().get(REQUEST_ID)));
        std::future::ready(Ok(id))
    }
}

/// Per-route request counter and latency histogram, plus the build info gauge.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// Registers the HTTP metrics and `<component>_info{version}` in `registry`.
    pub fn register(registry: &Registry, component: &str) -> prometheus::Result<HttpMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route and status.",
            ),
            &["method", "route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from receiving a request to its response, by route.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )?;
        let info = IntGauge::with_opts(
            Opts::new(
                format!("{}_info", metric_prefix(component)),
                "Always 1; the labels say which build is running.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        info.set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(info))?;
        Ok(HttpMetrics { requests, duration })
    }

    /// Counts one request; `method` and `route` must come from bounded sets
    /// ([`method_label`], a matched pattern).
    fn observe(&self, method: &'static str, route: &str, status: StatusCode, seconds: f64) {
        self.requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[method, route])
            .observe(seconds);
    }
}

/// The method as a metric label: one of the standard methods, or `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// A component name made fit for a metric name: `user-service` → `user_service`.
pub fn metric_prefix(component: &str) -> String {
    component
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Middleware: request id, timing, one log record and the metrics for every request.
///
/// Install with `actix_web::middleware::from_fn(observe)` and register
/// `web::Data<HttpMetrics>` as app data (without it the request is still logged).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let id = RequestId::from_header(req.headers().get(REQUEST_ID));
    req.extensions_mut().insert(id.clone());
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    // Handlers' and extractors' errors arrive here already turned into responses; an
    // `Err` can only come from an inner middleware, and is logged before it goes on.
    let method = req.method().clone();
    let path = req.path().to_owned();
    let result = next.call(req).await;
    let (status, route) = match &result {
        Ok(res) => (res.status(), res.request().match_pattern()),
        Err(err) => (err.as_response_error().status_code(), None),
    };
    let route = route.as_deref().unwrap_or("unmatched");
    let elapsed = start.elapsed();
    if let Some(m) = metrics {
        m.observe(method_label(&method), route, status, elapsed.as_secs_f64());
    }
    let status = status.as_u16();
    let duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
    // 503 means "not now" (not ready, a dependency down): the caller may retry, and the
    // cause is logged where it is known. Other 5xx are bugs an operator must look at.
    let level = if status >= 500 && status != 503 {
        log::Level::Error
    } else if status >= 400 {
        log::Level::Warn
    } else {
        log::Level::Info
    };
    log::log!(
        target: "request",
        level,
        method = method.as_str(),
        path = path.as_str(),
        status = status,
        duration_ms = duration_ms,
        request_id = id.0.as_str();
        "{} {} {}", method, path, status
    );
    let mut res = result?;
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(res)
}

/// `GET /metrics`: the registry in the Prometheus text format 0.0.4.
pub async fn metrics_endpoint(registry: web::Data<Registry>) -> HttpResponse {
    render_metrics(&registry)
}

/// The registry's families as a text exposition response.
pub fn render_metrics(registry: &Registry) -> HttpResponse {
    match TextEncoder::new().encode_to_string(&registry.gather()) {
        Ok(body) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
            .body(body),
        Err(e) => ApiError::internal(format!("cannot encode metrics: {e}")).error_response(),
    }
}

/// The one error shape: `{"error": "...", "status": 404}` plus optional fields.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            extra: serde_json::Map::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Adds a field to the error body, such as the dependency that failed.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> ApiError {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({ "error": self.message, "status": self.status.as_u16() });
        if let Some(obj) = body.as_object_mut() {
            obj.extend(self.extra.clone());
        }
        HttpResponse::build(self.status).json(body)
    }
}

/// The default service: an unknown route is a JSON 404.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// A resource that answers a method it has no route for with 405 and an `Allow` header
/// listing `allowed`, instead of falling through to the 404 of an unknown path.
///
/// `web::resource("/logs").route(web::get().to(..)).route(web::post().to(..))` then
/// `allow_only(.., &[Method::GET, Method::POST])`.
pub fn allow_only(resource: actix_web::Resource, allowed: &[Method]) -> actix_web::Resource {
    let allow: String = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    resource.default_service(web::to(move |req: HttpRequest| {
        let allow = allow.clone();
        async move { method_not_allowed(&req, &allow) }
    }))
}

/// The 405 answer: a JSON error naming the allowed methods, and the `Allow` header.
pub fn method_not_allowed(req: &HttpRequest, allow: &str) -> HttpResponse {
    let mut res = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} is not allowed on {}; allowed: {allow}",
            req.method(),
            req.path()
        ),
    )
    .with("allow", allow)
    .error_response();
    if let Ok(value) = HeaderValue::from_str(allow) {
        res.headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    res
}

/// JSON bodies: a wrong content type is 415, too large 413, anything else 400.
pub fn json_config(limit_bytes: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit_bytes)
        .error_handler(|err, _req| {
            let status = match &err {
                JsonPayloadError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            ApiError::new(status, format!("invalid JSON body: {err}")).into()
        })
}

/// Path parameters that do not parse (`/users/abc`) are a 400.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req| {
        ApiError::bad_request(format!("invalid path parameter: {err}")).into()
    })
}

/// Query strings that do not parse are a 400.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::bad_request(format!("invalid query string: {err}")).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{middleware::from_fn, test, App};

    #[test]
    async fn request_ids_are_kept_only_when_sane() {
        let good = HeaderValue::from_static("abc-123");
        assert_eq!(RequestId::from_header(Some(&good)).0, "abc-123");
        let spaced = HeaderValue::from_static("a b");
        assert_ne!(RequestId::from_header(Some(&spaced)).0, "a b");
        let long = HeaderValue::from_str(&"x".repeat(200)).unwrap();
        assert_eq!(RequestId::from_header(Some(&long)).0.len(), 32);
        assert_eq!(RequestId::from_header(None).0.len(), 32);
    }

    #[actix_web::test]
    async fn middleware_sets_the_id_counts_and_answers_json_404() {
        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry, "unit-test").unwrap();
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(metrics))
                .app_data(web::Data::new(registry.clone()))
                .app_data(path_config())
                .wrap(from_fn(observe))
                .route(
                    "/echo/{n}",
                    web::get().to(|n: web::Path<u32>, id: RequestId| async move {
                        HttpResponse::Ok().json(json!({"n": *n, "id": id.0}))
                    }),
                )
                .route("/metrics", web::get().to(metrics_endpoint))
                .default_service(web::to(not_found)),
        )
        .await;

        let req = test::TestRequest::get()
            .uri("/echo/7")
            .insert_header((REQUEST_ID, "rid-1"))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.headers().get(REQUEST_ID).unwrap(), "rid-1");
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body, json!({"n": 7, "id": "rid-1"}));

        let res =
            test::call_service(&app, test::TestRequest::get().uri("/echo/x").to_request()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(res.headers().contains_key(REQUEST_ID));
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["status"], 400);

        let res =
            test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"], "no route for GET /nope");

        let res =
            test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
        let text = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="/echo/{n}",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#)
        );
        assert!(text.contains(r#"unit_test_info{version=""#));
    }

    #[actix_web::test]
    async fn labels_stay_bounded_whatever_the_method_and_path() {
        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry, "unit-test").unwrap();
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(metrics))
                .wrap(from_fn(observe))
                .service(allow_only(
                    web::resource("/thing/{id}").route(web::get().to(HttpResponse::Ok)),
                    &[Method::GET],
                ))
                .default_service(web::to(not_found)),
        )
        .await;
        for i in 0..2_000 {
            let method = Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
            let uri = if i % 2 == 0 {
                format!("/thing/{i}")
            } else {
                format!("/nothing/{i}")
            };
            let res = test::call_service(
                &app,
                test::TestRequest::default()
                    .method(method)
                    .uri(&uri)
                    .to_request(),
            )
            .await;
            let expected = if i % 2 == 0 {
                StatusCode::METHOD_NOT_ALLOWED
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(res.status(), expected, "{uri}");
            if i % 2 == 0 {
                assert_eq!(res.headers().get("allow").unwrap(), "GET");
            }
        }
        let families = registry.gather();
        let requests = families
            .iter()
            .find(|f| f.name() == "http_requests_total")
            .unwrap();
        let mut labels: Vec<String> = requests
            .get_metric()
            .iter()
            .map(|m| {
                m.get_label()
                    .iter()
                    .map(|l| format!("{}={}", l.name(), l.value()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        labels.sort();
        assert_eq!(
            labels,
            [
                "method=other,route=/thing/{id},status=405",
                "method=other,route=unmatched,status=404"
            ]
        );
    }

    #[test]
    async fn standard_methods_keep_their_name() {
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other");
    }
}
