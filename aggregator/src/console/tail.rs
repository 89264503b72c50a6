//! `GET /logs/tail`: Server-Sent Events, one `log` event per new record matching the
//! filters of `GET /logs`, sent as its commit is acknowledged.
//!
//! Each event's id is `<epoch>-<record id>`; a client that reconnects with
//! `Last-Event-ID` gets the matching records it missed from the hub's ring, then the
//! live ones. When they cannot all be given (the ring moved on, the aggregator
//! restarted, or the client read too slowly), the stream says so with a `skipped`
//! event and goes on from the present: it is never silently thinned, and a slow client
//! costs no memory beyond the hub's bounded channel, since the stream is only read as
//! fast as the client takes it. On SIGTERM every stream ends at once, so open tails do
//! not hold up the stop.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use shared::http::ApiError;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::OwnedSemaphorePermit;

use super::hub::{event_id, parse_event_id, Event, Hub, Resume};
use crate::embedded::filter::Filter;
use crate::metrics;
use crate::routes::{Answer, State};
use crate::store::{CommittedRecord, RecordId};

/// Tails open at once; one more is answered 429.
pub const MAX_TAILS: usize = 64;
/// A comment line this often keeps proxies from closing an idle stream, and finds
/// clients that went away.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// `GET /logs/tail`.
pub async fn tail(req: HttpRequest, state: web::Data<State>) -> Answer {
    state.authorize(&req)?;
    let query = state.log_query(&req, 1, 1)?;
    let permit = state.tails.clone().try_acquire_owned().map_err(|_| {
        state
            .reject(
                metrics::REASON_BUSY,
                ApiError::new(
                    actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                    format!("more than {MAX_TAILS} tails are open; close one and retry"),
                ),
            )
            .retry_after(1)
    })?;
    let hub = state.hub.clone();
    if hub.is_closed() {
        return Err(state.unavailable("live tail (the aggregator is stopping)"));
    }
    hub.start(&state.store);
    let last = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let mut first = String::from("retry: 1000\n\n");
    let (rx, resume) = match last.map(|l| parse_event_id(hub.epoch, l)) {
        None => hub.join(None),
        Some(Some(id)) => hub.join(Some(id)),
        Some(None) => {
            let joined = hub.join(None);
            (joined.0, Resume::Lost)
        }
    };
    let mut tail = Tail {
        filter: Filter::new(&query),
        rx,
        hub,
        seen: None,
        scratch: Vec::new(),
        _permit: permit,
    };
    match resume {
        Resume::From(records) => tail.write(&records, &mut first),
        Resume::Lost => skipped(
            &mut first,
            "the records since Last-Event-ID are no longer held; query GET /logs for them",
        ),
    }
    let stream =
        futures_util::stream::unfold((tail, Some(first)), |(mut tail, pending)| async move {
            if let Some(text) = pending {
                return Some((Ok::<_, actix_web::Error>(Bytes::from(text)), (tail, None)));
            }
            let text = tail.next().await?;
            Some((Ok(Bytes::from(text)), (tail, None)))
        });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

/// One client's stream.
struct Tail {
    filter: Filter,
    rx: broadcast::Receiver<Event>,
    hub: Arc<Hub>,
    /// The last record id looked at (sent or not), so none is looked at twice.
    seen: Option<RecordId>,
    scratch: Vec<String>,
    _permit: OwnedSemaphorePermit,
}

impl Tail {
    /// The next text to send; `None` ends the stream.
    async fn next(&mut self) -> Option<String> {
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            let mut out = String::new();
            tokio::select! {
                event = self.rx.recv() => match event {
                    Ok(Event::Records(committed)) => self.write(&committed, &mut out),
                    Ok(Event::Closing) => return None,
                    Ok(Event::Gap) => skipped(&mut out, "the aggregator's live feed fell behind and lost records; query GET /logs for them"),
                    Err(RecvError::Lagged(_)) => match self.seen.map(|id| self.hub.catch_up(id)) {
                        Some(Resume::From(records)) => self.write(&records, &mut out),
                        _ => skipped(&mut out, "this client read too slowly and missed records; query GET /logs for them"),
                    },
                    Err(RecvError::Closed) => return None,
                },
                _ = keepalive.tick() => out.push_str(": keepalive\n\n"),
            }
            if !out.is_empty() {
                return Some(out);
            }
        }
    }

    /// The events of the records that match and were not looked at yet.
    fn write(&mut self, records: &[CommittedRecord], out: &mut String) {
        for c in records {
            if self.seen.is_some_and(|s| c.id <= s) {
                continue;
            }
            self.seen = Some(c.id);
            let r = &c.record;
            if !(self.filter.time_ok(r.ts_us)
                && self
                    .filter
                    .labels_ok(r.service.as_deref(), r.level.as_deref())
                && self.filter.request_ok(r.request_id.as_deref())
                && self.filter.text_ok(r.message.as_deref(), &mut self.scratch))
            {
                continue;
            }
            out.push_str("id: ");
            out.push_str(&event_id(self.hub.epoch, c.id));
            out.push_str("\nevent: log\n");
            data(out, &r.body);
        }
    }
}

/// `data:` lines of a text; a line break inside it (JSON allows them between tokens)
/// starts another `data:` line, which the client joins back with a line break.
fn data(out: &mut String, text: &str) {
    for line in text.split(['\n', '\r']) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
}

fn skipped(out: &mut String, why: &str) {
    out.push_str("event: skipped\n");
    data(out, &serde_json::json!({ "reason": why }).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_become_data_lines() {
        let mut out = String::new();
        data(&mut out, "{\"a\":\n1}");
        assert_eq!(out, "data: {\"a\":\ndata: 1}\n\n");
        let mut out = String::new();
        skipped(&mut out, "why");
        assert_eq!(out, "event: skipped\ndata: {\"reason\":\"why\"}\n\n");
    }
}
