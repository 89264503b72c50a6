//! `POST /logs`, from the request's headers to the store's acknowledgement, with every
//! bound a client could otherwise push against.
//!
//! In order:
//! 1. token, content type and encoding, a declared length over `MAX_BODY_BYTES` (413);
//! 2. admission: at most `INGEST_MAX_REQUESTS` requests under way, and
//!    `INGEST_MAX_REQUESTS_PER_CLIENT` from one address (503 / 429, `Retry-After`);
//! 3. the body, read within `BODY_READ_TIMEOUT` (408), each buffer growth first taken
//!    from the ingest memory budget (503 when it is spent);
//! 4. only then an ingest slot (`INGEST_SLOTS`): a client that sends its body slowly
//!    holds no slot, so it cannot block the others' ingestion;
//! 5. gunzip and parsing, within the budget and `MAX_RECORDS_PER_REQUEST` (413), on the
//!    blocking pool for a gzip body or one of 1 MiB or more ([`INLINE_DECODE_MAX_BYTES`]);
//! 6. the store, awaited in a task of its own that holds the admission, the memory and
//!    the slot until the batch is durable: a client that disconnects frees nothing that
//!    its batch still holds.

use std::time::Instant;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use shared::http::ApiError;
use shared::wire::IngestResponse;

use crate::admission::{Refused, Reservation};
use crate::batch::{self, Within};
use crate::body::{self, BodyError};
use crate::metrics;
use crate::record::Received;
use crate::routes::{until, Answer, Refusal, State, TimedOut};

/// How long a request whose body has been read may wait for an ingest slot before it is
/// told to retry.
pub const INGEST_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `POST /logs`: answered only after the batch is committed.
pub async fn post_logs(req: HttpRequest, payload: web::Payload, state: web::Data<State>) -> Answer {
    let state = state.into_inner();
    ingest(&req, payload, &state).await
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers()
        .get(name)
        .map(|v| v.to_str().unwrap_or("(not text)"))
}

/// The status a refused body is answered with, whatever the API it came to.
pub fn body_status(e: &BodyError) -> StatusCode {
    match e {
        BodyError::UnsupportedType(_) | BodyError::UnsupportedEncoding(_) => {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
        BodyError::TooLarge { .. } | BodyError::TooManyRecords { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        BodyError::ReadTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
        BodyError::OverBudget { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The refusal of a body, with its status, counted by reason.
pub fn body_error(state: &State, e: BodyError) -> Refusal {
    let status = body_status(&e);
    let refusal = state.reject(e.reason(), ApiError::new(status, e.to_string()));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        refusal.retry_after(1)
    } else {
        refusal
    }
}

/// The reason counted and the status answered for a request refused admission.
pub fn admission_refusal(e: &Refused) -> (&'static str, StatusCode) {
    match e {
        Refused::Overall { .. } => (metrics::REASON_BUSY, StatusCode::SERVICE_UNAVAILABLE),
        Refused::PerClient { .. } => (metrics::REASON_CLIENT_BUSY, StatusCode::TOO_MANY_REQUESTS),
    }
}

fn refused(state: &State, e: Refused) -> Refusal {
    let (reason, status) = admission_refusal(&e);
    state
        .reject(reason, ApiError::new(status, e.to_string()))
        .retry_after(1)
}

async fn ingest(req: &HttpRequest, mut payload: web::Payload, state: &State) -> Answer {
    state.authorize(req)?;
    let format =
        body::format_of(header_str(req, header::CONTENT_TYPE)).map_err(|e| body_error(state, e))?;
    let gzip = body::is_gzip(header_str(req, header::CONTENT_ENCODING))
        .map_err(|e| body_error(state, e))?;
    let limit = state.max_body_bytes;
    let declared = header_str(req, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let too_large = BodyError::TooLarge {
            limit,
            decompressed: false,
        };
        return Err(body_error(state, too_large));
    }
    let admitted = state
        .admission
        .enter(req.peer_addr().map(|a| a.ip()))
        .map_err(|e| refused(state, e))?;
    let mut memory = state.budget.reservation();
    let deadline = Instant::now() + state.limits.body_read_timeout;
    let raw = read_body(&mut payload, limit, &mut memory, deadline, state)
        .await
        .map_err(|e| body_error(state, e))?;

    let Some(slot) = ingest_slot(state).await else {
        let busy = ApiError::unavailable(slots_busy(state));
        return Err(state
            .reject(metrics::REASON_UNAVAILABLE, busy)
            .retry_after(1));
    };
    let max_records = state.limits.max_records_per_request;
    let inline = !gzip && raw.len() < INLINE_DECODE_MAX_BYTES;
    let decoded = decode_off_worker(inline, move || {
        let records = decode(&raw, gzip, format, limit, max_records, &mut memory);
        // The records hold what they need from here on: the texts go back to the budget.
        memory.shrink(raw.capacity());
        (records, memory)
    })
    .await;
    let Some((records, memory)) = decoded else {
        return Err(state.unavailable("body decoder"));
    };
    let records = records.map_err(|e| body_error(state, e))?;
    let count = records.len();

    let stored = state.store.ingest(records);
    let committed = actix_rt::spawn(async move {
        let answer = stored.await;
        drop((slot, memory, admitted));
        answer
    });
    let done = match committed.await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(state.store_failed(e)),
        Err(_) => return Err(state.unavailable("store writer")),
    };
    state.metrics.records_ingested.inc_by(done.stored);
    state.metrics.records_duplicate.inc_by(done.duplicates);
    state.metrics.batch_records.observe(count as f64);
    Ok(HttpResponse::Ok().json(IngestResponse {
        status: "success".to_owned(),
        accepted: done.stored,
        duplicates: done.duplicates,
    }))
}

/// Bodies from this size on, and every gzip body (it may expand to `MAX_BODY_BYTES`),
/// are decoded on the blocking pool, so that a large or hostile body never holds up the
/// other connections of its worker. Smaller ones, such as a logging sidecar's batches
/// (512 KiB by default), are decoded in place: a millisecond or two of the worker costs
/// less than the hand-over, which took 15–25 % off the sidecar's end-to-end throughput
/// when every body went to the pool.
pub const INLINE_DECODE_MAX_BYTES: usize = 1 << 20;

/// Runs `decode` in place when `inline`, else on the blocking pool; `None` when the pool
/// could not run it.
pub async fn decode_off_worker<T: Send + 'static>(
    inline: bool,
    decode: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if inline {
        Some(decode())
    } else {
        web::block(decode).await.ok()
    }
}

/// A body, gunzipped if it says so, parsed into records within `max_records` and the
/// request's memory allowance.
fn decode(
    raw: &[u8],
    gzip: bool,
    format: body::Format,
    limit: usize,
    max_records: usize,
    memory: &mut Reservation,
) -> Result<Vec<crate::record::Record>, BodyError> {
    let decoded;
    let text: &[u8] = if gzip {
        decoded = body::gunzip_within(raw, limit, memory)?;
        &decoded
    } else {
        raw
    };
    let within = Within {
        max_records,
        allowance: memory,
    };
    batch::parse_batch_within(text, format, &Received::now(), within)
}

/// An ingest slot, waited for up to [`INGEST_SLOT_WAIT`].
pub async fn ingest_slot(state: &State) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let wait = state.ingest_slots.clone().acquire_owned();
    match until(Instant::now() + INGEST_SLOT_WAIT, wait).await {
        Ok(Ok(permit)) => Some(permit),
        _ => None,
    }
}

/// What a request that got no ingest slot is told.
pub fn slots_busy(state: &State) -> String {
    format!(
        "all {} ingest slots stayed busy for {}; retry later",
        state.limits.ingest_slots,
        shared::config::format_duration(INGEST_SLOT_WAIT)
    )
}

/// Reads the whole body by `deadline`, at most `limit` bytes, growing its buffer only
/// with what `memory` can take from the budget.
pub async fn read_body(
    payload: &mut web::Payload,
    limit: usize,
    memory: &mut Reservation,
    deadline: Instant,
    state: &State,
) -> Result<Vec<u8>, BodyError> {
    let mut raw = Vec::new();
    loop {
        let chunk = match until(deadline, payload.next()).await {
            Ok(None) => return Ok(raw),
            Ok(Some(chunk)) => chunk.map_err(|e| BodyError::Read(e.to_string()))?,
            Err(TimedOut) => {
                return Err(BodyError::ReadTimeout {
                    timeout: shared::config::format_duration(state.limits.body_read_timeout),
                })
            }
        };
        if raw.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge {
                limit,
                decompressed: false,
            });
        }
        body::make_room(&mut raw, chunk.len(), limit, memory)?;
        raw.extend_from_slice(&chunk);
    }
}
