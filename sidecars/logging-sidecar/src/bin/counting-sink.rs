//! `counting-sink`: a stand-in for the log aggregator, for tests and benchmarks.
//!
//! `POST /logs` takes NDJSON (gzip or not) like the aggregator and answers like it. In
//! `record` mode (the default) it keeps each record once by `event_id`, counting
//! duplicates, so a test can compare what arrived with what was written; in `count`
//! mode it only counts lines, so a benchmark measures the sidecar and not the sink.
//! With `SINK_LATENCY_FIELD=<name>` it also reads that integer field (microseconds since
//! the Unix epoch, stamped by the writer) from each record and keeps the delay from then
//! to arrival. `POST /control` makes it fail or stall on demand, to play an aggregator
//! that is down or slow, or refuse (400) any body holding a given text, to play one
//! whose record rules are stricter than the sidecar's. `/stats` also reports the largest
//! batch seen, in records and in (decompressed) bytes.
//!
//! Settings: `LISTEN_ADDR` (127.0.0.1:9200), `SINK_MODE` (record | count),
//! `SINK_TOKEN` (a bearer token to require), `SINK_LATENCY_FIELD` (unset).
//! Endpoints: `POST /logs`, `GET /stats`, `GET /records` (NDJSON, arrival order),
//! `GET /latency`,
//! `POST /control {"fail_status": 503 | null, "stall_ms": 0, "refuse_containing": "…"}`,
//! `GET /health`.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;
use serde_json::json;
use shared::config::{ProcessEnv, Reader, EXIT_CONFIG};

/// Largest body taken, well above the sidecar's largest batch.
const MAX_BODY_BYTES: usize = 256 << 20;

#[derive(Default)]
struct Sink {
    record_mode: bool,
    latency_field: Option<String>,
    token: Option<String>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    received: u64,
    duplicates: u64,
    batches: u64,
    bytes: u64,
    refused: u64,
    ids: HashSet<String>,
    records: Vec<u8>,
    latencies_us: Vec<u64>,
    fail_status: Option<u16>,
    stall_ms: u64,
    refuse_containing: Option<String>,
    max_batch_records: u64,
    max_batch_bytes: u64,
}

#[derive(Deserialize)]
struct Control {
    fail_status: Option<u16>,
    #[serde(default)]
    stall_ms: u64,
    /// A body holding this text is refused with 400, as an aggregator with stricter
    /// record rules would.
    #[serde(default)]
    refuse_containing: Option<String>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The integer after `"<field>":` in `line`, found without parsing the whole record.
fn field_u64(line: &[u8], needle: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(line, needle)? + needle.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

async fn ingest(req: HttpRequest, body: web::Bytes, sink: web::Data<Sink>) -> HttpResponse {
    if let Some(token) = &sink.token {
        let expected = format!("Bearer {token}");
        if req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(&expected)
        {
            return HttpResponse::Unauthorized()
                .json(json!({"error": "missing or wrong bearer token", "status": 401}));
        }
    }
    let (fail, stall, refuse) = {
        let st = sink.state.lock().unwrap_or_else(|e| e.into_inner());
        (st.fail_status, st.stall_ms, st.refuse_containing.clone())
    };
    if let Some(text) = refuse {
        if memchr::memmem::find(&body, text.as_bytes()).is_some() {
            sink.state.lock().unwrap_or_else(|e| e.into_inner()).refused += 1;
            return HttpResponse::BadRequest()
                .json(json!({"error": "a record is refused on demand", "status": 400}));
        }
    }
    if stall > 0 {
        actix_rt::time::sleep(Duration::from_millis(stall)).await;
    }
    if let Some(status) = fail {
        sink.state.lock().unwrap_or_else(|e| e.into_inner()).refused += 1;
        let status = actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
        return HttpResponse::build(status)
            .json(json!({"error": "failing on demand", "status": status.as_u16()}));
    }
    let arrived = now_us();
    let needle = sink
        .latency_field
        .as_ref()
        .map(|f| format!("\"{f}\":").into_bytes());
    let mut st = sink.state.lock().unwrap_or_else(|e| e.into_inner());
    st.batches += 1;
    st.bytes += body.len() as u64;
    let batch_records = memchr::memchr_iter(b'\n', &body).count() as u64;
    st.max_batch_records = st.max_batch_records.max(batch_records);
    st.max_batch_bytes = st.max_batch_bytes.max(body.len() as u64);
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    if !sink.record_mode && needle.is_none() {
        // Counting only: as cheap as the sink can be, so the sidecar is what is measured.
        let lines = memchr::memchr_iter(b'\n', &body).count() as u64;
        let unterminated = u64::from(body.last().is_some_and(|b| *b != b'\n'));
        st.received += lines + unterminated;
        let accepted = lines + unterminated;
        return HttpResponse::Ok()
            .json(json!({"status": "success", "accepted": accepted, "duplicates": 0}));
    }
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(needle) = &needle {
            if let Some(written) = field_u64(line, needle) {
                st.latencies_us.push(arrived.saturating_sub(written));
            }
        }
        if !sink.record_mode {
            accepted += 1;
            continue;
        }
        let value: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                return HttpResponse::BadRequest()
                    .json(json!({"error": format!("line {}: {e}", n + 1), "status": 400}))
            }
        };
        let Some(id) = value.get("event_id").and_then(|v| v.as_str()) else {
            return HttpResponse::BadRequest()
                .json(json!({"error": format!("line {}: no event_id", n + 1), "status": 400}));
        };
        if st.ids.insert(id.to_owned()) {
            accepted += 1;
            st.records.extend_from_slice(line);
            st.records.push(b'\n');
        } else {
            duplicates += 1;
        }
    }
    st.received += accepted + duplicates;
    st.duplicates += duplicates;
    HttpResponse::Ok()
        .json(json!({"status": "success", "accepted": accepted, "duplicates": duplicates}))
}

async fn stats(sink: web::Data<Sink>) -> HttpResponse {
    let st = sink.state.lock().unwrap_or_else(|e| e.into_inner());
    let unique = if sink.record_mode {
        st.ids.len() as u64
    } else {
        st.received
    };
    HttpResponse::Ok().json(json!({
        "received": st.received, "unique": unique, "duplicates": st.duplicates,
        "batches": st.batches, "bytes": st.bytes, "refused": st.refused,
        "max_batch_records": st.max_batch_records, "max_batch_bytes": st.max_batch_bytes,
    }))
}

async fn records(sink: web::Data<Sink>) -> HttpResponse {
    let st = sink.state.lock().unwrap_or_else(|e| e.into_inner());
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .body(st.records.clone())
}

async fn latency(sink: web::Data<Sink>) -> HttpResponse {
    let mut v = sink
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .latencies_us
        .clone();
    v.sort_unstable();
    let pct = |p: f64| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64 / 1000.0
    };
    HttpResponse::Ok().json(json!({
        "count": v.len(), "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
    }))
}

async fn control(body: web::Json<Control>, sink: web::Data<Sink>) -> HttpResponse {
    let mut st = sink.state.lock().unwrap_or_else(|e| e.into_inner());
    st.fail_status = body.fail_status;
    st.stall_ms = body.stall_ms;
    st.refuse_containing = body.refuse_containing.clone();
    HttpResponse::Ok().json(json!({"fail_status": st.fail_status, "stall_ms": st.stall_ms}))
}

fn main() -> ExitCode {
    let mut r = Reader::new(&ProcessEnv);
    let listen = r.socket_addr("LISTEN_ADDR", "127.0.0.1:9200");
    let mode = r.string("SINK_MODE", "record");
    if mode != "record" && mode != "count" {
        r.fail("SINK_MODE", &mode, "expected record or count");
    }
    let sink = Sink {
        record_mode: mode == "record",
        latency_field: r.optional_string("SINK_LATENCY_FIELD"),
        token: r.optional_string("SINK_TOKEN"),
        state: Mutex::default(),
    };
    if let Err(e) = r.finish() {
        e.report("counting-sink");
        return ExitCode::from(EXIT_CONFIG);
    }
    let sink = web::Data::new(sink);
    let result = actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(sink.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .route("/logs", web::post().to(ingest))
                .route("/stats", web::get().to(stats))
                .route("/records", web::get().to(records))
                .route("/latency", web::get().to(latency))
                .route("/control", web::post().to(control))
                .route(
                    "/health",
                    web::get()
                        .to(|| async { HttpResponse::Ok().json(json!({"status": "healthy"})) }),
                )
        })
        .workers(1)
        .bind(listen)?;
        eprintln!("counting-sink: listening on http://{listen} ({mode} mode).");
        server.run().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("counting-sink: {e}");
            ExitCode::FAILURE
        }
    }
}
