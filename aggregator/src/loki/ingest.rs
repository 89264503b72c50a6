//! `POST /loki/api/v1/push`: entries become records and go through the same writer as
//! `POST /logs`, answered `204` only once they are committed.
//!
//! Exact deduplication. Each entry's `event_id` is derived from its stream, time and
//! line ([`entry::event_id`]), so a re-sent entry meets its stored twin in the store's
//! unique index. A hash could make two different entries meet too; so whenever the
//! writer reports duplicates, the bodies stored under the batch's ids are read back and
//! compared: an id held by the same entry (a re-send, or the entry itself) is done; an
//! id held by a different entry is a collision, and the entry is stored under the next
//! attempt's id (`...#1`). An entry is thus skipped only when an identical one is stored.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::entry::{self, PushStream, MAX_ID_ATTEMPTS};
use super::error::LokiError;
use super::push::{self, PushError};
use super::request::{authorize, header};
use super::stored::View;
use super::Loki;
use crate::record::Received;
use crate::routes::{State, INGEST_SLOT_WAIT, QUERY_TIME_LIMIT};

pub async fn push(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
    loki: web::Data<Loki>,
) -> Result<HttpResponse, LokiError> {
    run(&req, payload, &state, &loki)
        .await
        .map_err(|e| e.counted(&state.metrics))
}

fn refused(e: PushError) -> LokiError {
    LokiError::new(e.status(), e.reason(), e.to_string())
}

async fn run(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &State,
    loki: &Loki,
) -> Result<HttpResponse, LokiError> {
    authorize(req, state)?;
    let encoding = push::encoding_of(header(req, header::CONTENT_TYPE)).map_err(refused)?;
    let compression =
        push::compression_of(header(req, header::CONTENT_ENCODING)).map_err(refused)?;
    let limit = state.max_body_bytes;
    let too_large = || {
        LokiError::new(
            413,
            "too_large",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = header(req, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let _slot = match tokio::time::timeout(INGEST_SLOT_WAIT, state.ingest_slots.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => return Err(LokiError::unavailable("ingest queue")),
    };
    let mut raw = web::BytesMut::with_capacity(declared.map_or(64 * 1024, |n| n as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            LokiError::new(400, "read", format!("cannot read the request body: {e}"))
        })?;
        if raw.len() + chunk.len() > limit {
            return Err(too_large());
        }
        raw.extend_from_slice(&chunk);
    }
    if raw.is_empty() {
        return Err(LokiError::new(400, "json", "empty request body"));
    }
    let body = push::decompress(&raw, compression, limit).map_err(refused)?;
    let streams = push::decode(&body, encoding, limit).map_err(refused)?;
    drop(body);
    drop(raw);
    let total: usize = streams.iter().map(|s| s.entries.len()).sum();
    if total > 0 {
        let stored = store(&streams, state, loki).await?;
        state.metrics.records_ingested.inc_by(stored);
        state
            .metrics
            .records_duplicate
            .inc_by(total as u64 - stored);
        state.metrics.batch_records.observe(total as f64);
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Stores every entry once; answers how many were newly stored.
async fn store(streams: &[PushStream], state: &State, loki: &Loki) -> Result<u64, LokiError> {
    let received = Received::now();
    // (stream, entry, attempt) of the entries still to settle.
    let mut pending: Vec<(usize, usize, u32)> = streams
        .iter()
        .enumerate()
        .flat_map(|(s, stream)| (0..stream.entries.len()).map(move |e| (s, e, 0)))
        .collect();
    let prepared: Vec<_> = streams.iter().map(PushStream::prepare).collect();
    let mut stored = 0;
    loop {
        let records: Vec<_> = pending
            .iter()
            .map(|&(s, e, a)| entry::to_record(&prepared[s], &streams[s].entries[e], &received, a))
            .collect();
        let done = state.store.ingest(records).await.map_err(LokiError::from)?;
        stored += done.stored;
        if done.duplicates == 0 {
            return Ok(stored);
        }
        // Rare (a re-send): the ids are worked out again rather than kept for every push.
        let ids = pending
            .iter()
            .map(|&(s, e, a)| prepared[s].event_id(&streams[s].entries[e], a))
            .collect();
        let deadline = std::time::Instant::now() + QUERY_TIME_LIMIT;
        let bodies = state
            .store
            .bodies(ids, deadline)
            .await
            .map_err(LokiError::from)?;
        let mut next = Vec::new();
        for (&(s, e, attempt), body) in pending.iter().zip(bodies) {
            let stream = &streams[s];
            let entry = &stream.entries[e];
            match body {
                // Gone since (retention or a clear): stored again under the same id.
                None => next.push((s, e, attempt)),
                Some(body) if same(&body, stream, e) => {}
                Some(_) => {
                    if attempt + 1 >= MAX_ID_ATTEMPTS {
                        return Err(LokiError::new(
                            500,
                            crate::metrics::REASON_STORE,
                            format!("entry at {} of stream {:?}: {MAX_ID_ATTEMPTS} key collisions in a row", entry.ts_ns, stream.labels),
                        ));
                    }
                    loki.collisions.inc();
                    next.push((s, e, attempt + 1));
                }
            }
        }
        if next.is_empty() {
            return Ok(stored);
        }
        pending = next;
    }
}

/// Whether `body` holds entry `e` of `stream`: same stream labels, time and line.
fn same(body: &str, stream: &PushStream, e: usize) -> bool {
    let entry = &stream.entries[e];
    let Some(view) = View::of(body, 0) else {
        return false;
    };
    View::pushed(body)
        && view.ts_ns == entry.ts_ns
        && view.line == entry.line.as_str()
        && view.labels.len() == stream.labels.len()
        && view
            .labels
            .iter()
            .zip(&stream.labels)
            .all(|((k, v), (k2, v2))| k == k2 && v == v2)
}
