//! `GET /loki/api/v1/tail`: a WebSocket that sends the entries of a log query as they
//! are committed, after the newest `limit` entries since `start`.
//!
//! New entries come from the store's live feed of committed records
//! ([`crate::store::Store::subscribe`]), so an entry reaches the tail when its push is
//! acknowledged, with no polling. The feed is subscribed to before the look-back is read,
//! so nothing committed in between is missed, and records the look-back already sent are
//! not sent again. On SIGTERM every tail is closed (`1001`), so open tails do not hold
//! up the stop. A tail that falls more than the feed's buffer behind is closed with a
//! reason saying so (it is never silently thinned); the client reconnects.

use std::collections::HashSet;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use futures_util::StreamExt;
use serde_json::{json, Value as Json};
use tokio::sync::broadcast::error::RecvError;

use super::error::LokiError;
use super::exec::{piped, selects, Exec, Streams};
use super::logql::ast::{Expr, LogExpr};
use super::logql::parse;
use super::params::{self, NS};
use super::request::{authorize, Params};
use super::stored::View;
use super::{response, Loki};
use crate::query::Order;
use crate::routes::State;
use crate::store::{Committed, RecordId};

/// Loki's bound on `delay_for`, in seconds.
pub const MAX_DELAY_FOR_S: u64 = 5;
/// Look-back of a tail without `start`: an hour, as in Loki.
pub const DEFAULT_LOOKBACK: i64 = 3600 * NS;

pub async fn tail(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<State>,
    loki: web::Data<Loki>,
) -> Result<HttpResponse, LokiError> {
    open(req, body, &state, &loki)
        .await
        .map_err(|e| e.counted(&state.metrics))
}

async fn open(
    req: HttpRequest,
    body: web::Payload,
    state: &State,
    loki: &Loki,
) -> Result<HttpResponse, LokiError> {
    authorize(&req, state)?;
    let p = Params::of(&req, &[])?;
    let Expr::Log(expr) = parse(p.required("query")?)? else {
        return Err(LokiError::bad("tail takes a log query, not a metric query"));
    };
    let limit = params::limit(p.get("limit"), loki.limits.max_entries)?;
    if let Some(d) = p.get("delay_for") {
        let ok = d.parse::<u64>().is_ok_and(|d| d <= MAX_DELAY_FOR_S);
        if !ok {
            return Err(LokiError::bad(format!(
                "delay_for must be a whole number of seconds from 0 to {MAX_DELAY_FOR_S}"
            )));
        }
    }
    let now = params::now_ns();
    let start = params::time("start", p.get("start"), now - DEFAULT_LOOKBACK)?;
    let permit = loki.tails.clone().try_acquire_owned().map_err(|_| {
        LokiError::new(
            429,
            "too_many_tails",
            format!(
                "more than {} tails are open; close one and retry",
                super::MAX_TAILS
            ),
        )
    })?;
    let mut closing = state.hub.closing();
    if *closing.borrow() {
        return Err(LokiError::unavailable(
            "live tail (the aggregator is stopping)",
        ));
    }
    let mut feed = state.store.subscribe();
    let (lookback, seen) = look_back(state, loki, &expr, start, now, limit).await?;
    let (answer, mut session, mut incoming) = actix_ws::handle(&req, body)
        .map_err(|e| LokiError::bad(format!("not a WebSocket request: {e}")))?;
    actix_web::rt::spawn(async move {
        let _permit = permit;
        if !lookback.is_empty() && session.text(frame(lookback).to_string()).await.is_err() {
            return;
        }
        let reason = loop {
            tokio::select! {
                msg = incoming.next() => match msg {
                    Some(Ok(Message::Ping(bytes))) => {
                        if session.pong(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
                // The stop waits for open connections: a tail ends at the signal.
                _ = closing.wait_for(|stopping| *stopping) => break CloseReason {
                    code: CloseCode::Away,
                    description: Some("the aggregator is stopping".to_owned()),
                },
                batch = feed.recv() => match batch {
                    Ok(committed) => {
                        let streams = matching(&expr, &committed, &seen);
                        if !streams.is_empty() && session.text(frame(streams).to_string()).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(missed)) => break CloseReason {
                        code: CloseCode::Again,
                        description: Some(format!("this tail fell {missed} commits behind the live feed and would miss entries; reconnect")),
                    },
                    Err(RecvError::Closed) => break CloseReason {
                        code: CloseCode::Away,
                        description: Some("the aggregator is stopping".to_owned()),
                    },
                },
            }
        };
        let _ = session.close(Some(reason)).await;
    });
    Ok(answer)
}

/// The newest `limit` entries in `[start, end)`, and the ids of the records read.
async fn look_back(
    state: &State,
    loki: &Loki,
    expr: &LogExpr,
    start: i64,
    end: i64,
    limit: usize,
) -> Result<(Streams, HashSet<RecordId>), LokiError> {
    let mut exec = Exec::new(&state.store, &loki.limits);
    let mut streams = Streams::new();
    let mut seen = HashSet::new();
    let mut taken = 0;
    exec.each(&expr.matchers, start, end, Order::Desc, |view, id| {
        seen.insert(id);
        let (ts, labels, line) = piped(expr, view);
        if let (Some(line), Some(labels)) = (line, labels) {
            streams
                .entry(labels)
                .or_default()
                .push((ts, line.into_owned()));
            taken += 1;
        }
        Ok(taken < limit)
    })
    .await?;
    for entries in streams.values_mut() {
        entries.sort_by_key(|e| e.0);
    }
    Ok((streams, seen))
}

/// The entries of one commit that the query keeps.
fn matching(expr: &LogExpr, committed: &Committed, seen: &HashSet<RecordId>) -> Streams {
    let mut streams = Streams::new();
    for c in committed.iter() {
        if seen.contains(&c.id) {
            continue;
        }
        let Some(view) = View::of(&c.record.body, c.record.ts_us) else {
            continue;
        };
        if !selects(&expr.matchers, &view) {
            continue;
        }
        if let (ts, Some(labels), Some(line)) = piped(expr, view) {
            streams
                .entry(labels)
                .or_default()
                .push((ts, line.into_owned()));
        }
    }
    streams
}

/// One message of the tail, in Loki's shape.
fn frame(streams: Streams) -> Json {
    let streams: Vec<Json> = streams
        .into_iter()
        .map(|(set, entries)| {
            let values: Vec<Json> = entries
                .into_iter()
                .map(|(ts, line)| json!([ts.to_string(), line]))
                .collect();
            json!({"stream": response::labels(&set), "values": values})
        })
        .collect();
    json!({"streams": streams, "dropped_entries": null})
}
