//! `POST /loki/api/v1/push`: entries become records and go through the same writer as
//! `POST /logs`, answered `204` only once they are committed.
//!
//! Exact deduplication. Each entry's `event_id` is derived from its stream, time and
//! line ([`entry::event_id`]), so a re-sent entry meets its stored twin in the store's
//! unique index. A hash could make two different entries meet too; so whenever the
//! writer reports duplicates, the records of the batch's time span are read back and
//! compared: an entry found stored as itself (a re-send, or the entry itself) is done;
//! one that is not found had its id held by a different record (a collision), and is
//! stored under the next attempt's id (`...#1`). An entry is thus skipped only when an
//! identical one is stored.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::entry::{self, PushStream, MAX_ID_ATTEMPTS};
use super::error::LokiError;
use super::push::{self, Compression, Encoding, PushError};
use super::request::{authorize, header};
use super::stored::View;
use super::Loki;
use crate::batch;
use crate::body::{self, Allowance, BodyError};
use crate::ingest::{
    admission_refusal, body_status, decode_off_worker, ingest_slot, read_body, slots_busy,
    INLINE_DECODE_MAX_BYTES,
};
use crate::query::Order;
use crate::record::Received;
use crate::routes::State;
use crate::store::ScanQuery;

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

fn body_refused(e: BodyError) -> LokiError {
    LokiError::new(body_status(&e).as_u16(), e.reason(), e.to_string())
}

/// The same bounds as `POST /logs` (crate::ingest), in the same order: admission, the
/// body within `BODY_READ_TIMEOUT` and the memory budget, then an ingest slot, then
/// decoding within the budget and `MAX_RECORDS_PER_REQUEST`; the store is awaited in a
/// task that holds all of them until the batch is settled.
async fn run(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &web::Data<State>,
    loki: &web::Data<Loki>,
) -> Result<HttpResponse, LokiError> {
    authorize(req, state)?;
    let encoding = push::encoding_of(header(req, header::CONTENT_TYPE)).map_err(refused)?;
    let compression =
        push::compression_of(header(req, header::CONTENT_ENCODING)).map_err(refused)?;
    let limit = state.max_body_bytes;
    let too_large = BodyError::TooLarge {
        limit,
        decompressed: false,
    };
    let declared = header(req, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(body_refused(too_large));
    }
    let admitted = state
        .admission
        .enter(req.peer_addr().map(|a| a.ip()))
        .map_err(|e| {
            let (reason, status) = admission_refusal(&e);
            LokiError::new(status.as_u16(), reason, e.to_string())
        })?;
    let mut memory = state.budget.reservation();
    let deadline = Instant::now() + state.limits.body_read_timeout;
    let raw = read_body(&mut payload, limit, &mut memory, deadline, state)
        .await
        .map_err(body_refused)?;
    if raw.is_empty() {
        return Err(LokiError::new(400, "json", "empty request body"));
    }
    let Some(slot) = ingest_slot(state).await else {
        return Err(LokiError::new(
            503,
            crate::metrics::REASON_UNAVAILABLE,
            slots_busy(state),
        ));
    };
    // Decoded in place only when small and not gzip or deflate (`INLINE_DECODE_MAX_BYTES`).
    let max_records = state.limits.max_records_per_request;
    let inline = compression == Compression::None && raw.len() < INLINE_DECODE_MAX_BYTES;
    let decoded = decode_off_worker(inline, move || {
        let streams = decode(&raw, compression, encoding, limit, max_records, &mut memory);
        (streams, memory)
    })
    .await;
    let Some((streams, memory)) = decoded else {
        return Err(LokiError::unavailable("body decoder"));
    };
    let streams = streams?;
    let total: usize = streams.iter().map(|s| s.entries.len()).sum();
    if total == 0 {
        return Ok(HttpResponse::NoContent().finish());
    }
    let (task_state, task_loki) = (state.clone(), loki.clone());
    let settled = actix_rt::spawn(async move {
        let stored = store(&streams, &task_state, &task_loki).await;
        drop((slot, memory, admitted));
        stored
    });
    let stored = match settled.await {
        Ok(stored) => stored?,
        Err(_) => return Err(LokiError::unavailable("store writer")),
    };
    state.metrics.records_ingested.inc_by(stored);
    state
        .metrics
        .records_duplicate
        .inc_by(total as u64 - stored);
    state.metrics.batch_records.observe(total as f64);
    Ok(HttpResponse::NoContent().finish())
}

/// A push body, decompressed and decoded into streams within `max_records` and the
/// request's memory allowance, which then holds what the entries need.
fn decode(
    raw: &[u8],
    compression: Compression,
    encoding: Encoding,
    limit: usize,
    max_records: usize,
    memory: &mut crate::admission::Reservation,
) -> Result<Vec<PushStream>, LokiError> {
    let body = match compression {
        // Grown within the budget as it is decompressed.
        Compression::Gzip => {
            Cow::Owned(body::gunzip_within(raw, limit, memory).map_err(body_refused)?)
        }
        other => {
            let body = push::decompress(raw, other, limit).map_err(refused)?;
            if let Cow::Owned(ref b) = body {
                memory.take(b.capacity()).map_err(body_refused)?;
            }
            body
        }
    };
    if encoding == Encoding::Protobuf {
        // Snappy says how large the message is before it is decompressed.
        if let Ok(len) = snap::raw::decompress_len(&body) {
            memory.take(len.min(limit)).map_err(body_refused)?;
        }
    }
    let streams = push::decode(&body, encoding, limit).map_err(refused)?;
    let total: usize = streams.iter().map(|s| s.entries.len()).sum();
    if total > max_records {
        return Err(body_refused(BodyError::TooManyRecords {
            limit: max_records,
        }));
    }
    // What the entries and the records made of them hold, once the texts are gone.
    let held: usize = streams
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| 2 * batch::record_cost(e.line.len()))
        .sum();
    memory.give_back(memory.bytes());
    drop(body);
    memory.take(held).map_err(body_refused)?;
    Ok(streams)
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
        // Rare (a re-send): which of these entries are stored as themselves?
        let found = present(streams, &pending, state).await?;
        let mut next = Vec::new();
        for (&(s, e, attempt), here) in pending.iter().zip(found) {
            if here {
                continue;
            }
            // Its id is held by a different record (a collision, or a record sent to
            // `POST /logs` under that id), or the holder went meanwhile: the next id.
            if attempt + 1 >= MAX_ID_ATTEMPTS {
                let stream = &streams[s];
                return Err(LokiError::new(
                    500,
                    crate::metrics::REASON_STORE,
                    format!(
                        "entry at {} of stream {:?}: {MAX_ID_ATTEMPTS} key collisions in a row",
                        stream.entries[e].ts_ns, stream.labels
                    ),
                ));
            }
            loki.collisions.inc();
            next.push((s, e, attempt + 1));
        }
        if next.is_empty() {
            return Ok(stored);
        }
        pending = next;
    }
}

/// For each pending entry, whether a record identical to it (same stream labels, time
/// and line) is stored: one scan of the entries' time span, comparing only records at
/// the time of a pending entry.
async fn present(
    streams: &[PushStream],
    pending: &[(usize, usize, u32)],
    state: &State,
) -> Result<Vec<bool>, LokiError> {
    let mut at: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, &(s, e, _)) in pending.iter().enumerate() {
        at.entry(streams[s].entries[e].ts_ns).or_default().push(i);
    }
    let lo = at.keys().min().copied().unwrap_or(0);
    let hi = at.keys().max().copied().unwrap_or(0);
    let mut found = vec![false; pending.len()];
    let deadline = std::time::Instant::now() + state.limits.query_timeout;
    let mut q = ScanQuery {
        service: None,
        level: None,
        since_us: lo.div_euclid(1000),
        until_us: hi.div_euclid(1000) + 1,
        order: Order::Asc,
        after: None,
        limit: 1000,
    };
    loop {
        let page = state
            .store
            .scan(q.clone(), deadline)
            .await
            .map_err(LokiError::from)?;
        for row in &page.rows {
            if !View::pushed(&row.body) {
                continue;
            }
            let Some(view) = View::of(&row.body, row.ts_us) else {
                continue;
            };
            for &i in at.get(&view.ts_ns).into_iter().flatten() {
                let (s, e, _) = pending[i];
                if !found[i] && same(&view, &streams[s], e) {
                    found[i] = true;
                }
            }
        }
        match (page.more, page.rows.last()) {
            (true, Some(last)) => q.after = Some((last.ts_us, last.id)),
            _ => return Ok(found),
        }
    }
}

/// Whether `view` is entry `e` of `stream`: same stream labels, time and line.
fn same(view: &View<'_>, stream: &PushStream, e: usize) -> bool {
    let entry = &stream.entries[e];
    view.ts_ns == entry.ts_ns
        && view.line == entry.line.as_str()
        && view.labels.len() == stream.labels.len()
        && view
            .labels
            .iter()
            .zip(&stream.labels)
            .all(|((k, v), (k2, v2))| k == k2 && v == v2)
}
