//! `GET /logs/volume`: records per time bucket over the filters of `GET /logs`, with
//! the facets and the service overview of the same records, in one pass.
//!
//! The pass reads the range with [`Store::scan`] (narrowed by the indexed service and
//! level), then applies `request_id` and `q` exactly as `GET /logs` does, so the
//! buckets add up to the `total` that `GET /logs` answers for the same filters. It is
//! generic over the store: any backend that scans serves it. The whole pass stops at
//! the query deadline (`QUERY_TIMEOUT`), as a query does.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shared::http::ApiError;

use super::tally::{auto_step_us, By, Grid, Seen, Tally, EARLIEST_US, LATEST_US, MAX_BUCKETS};
use crate::embedded::filter::Filter;
use crate::metrics;
use crate::query::{LogParams, LogQuery, Order};
use crate::record;
use crate::routes::{Answer, Refusal, State};
use crate::store::{ScanQuery, Store, StoreError};

/// Rows read per scan call.
const SCAN_PAGE: usize = 2000;
/// The range of a histogram without `since` or records: the last hour.
const DEFAULT_SPAN_US: i64 = 3_600_000_000;

/// The query string: the filters of `GET /logs`, `step` and `by`.
#[derive(Debug, Default, Deserialize)]
pub struct VolumeParams {
    #[serde(flatten)]
    pub logs: LogParams,
    pub step: Option<String>,
    pub by: Option<String>,
}

/// `GET /logs/volume`.
pub async fn volume(req: HttpRequest, state: web::Data<State>) -> Answer {
    state.authorize(&req)?;
    let bad = |msg: String| state.reject(metrics::REASON_BAD_QUERY, ApiError::bad_request(msg));
    let params = web::Query::<VolumeParams>::from_query(req.query_string())
        .map_err(|e| bad(format!("invalid query string: {e}")))?
        .into_inner();
    let by = By::parse(params.by.as_deref())
        .ok_or_else(|| bad("invalid by: it must be level or service".to_owned()))?;
    let step_us = match params.step.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            if !step_shaped(s) {
                return Err(bad(format!(
                    "invalid step: {s:?} is not a duration such as 500ms, 10s, 1.5m or 1h"
                )));
            }
            let d = shared::config::parse_duration(s)
                .map_err(|e| bad(format!("invalid step: {s:?}: {e}")))?;
            let us = d.as_micros() as i64;
            if us < 1000 {
                return Err(bad(format!("invalid step: {s:?} is under 1ms")));
            }
            Some(us)
        }
    };
    let query = params
        .logs
        .to_query_within(1, 1, state.limits.query_max_terms)
        .map_err(|e| bad(e.to_string()))?;
    let deadline = Instant::now() + state.limits.query_timeout;
    let until_us = query
        .until_us
        .unwrap_or_else(|| Utc::now().timestamp_micros() + 1);
    let since_us = match query.since_us {
        Some(s) => s,
        None => oldest(&state.store, &query, until_us, deadline)
            .await
            .map_err(|e| state.store_failed(e))?
            .unwrap_or(until_us.saturating_sub(DEFAULT_SPAN_US)),
    };
    // Times RFC 3339 can write; records cannot lie outside them.
    let since_us = since_us.clamp(EARLIEST_US, LATEST_US);
    let until_us = until_us.clamp(EARLIEST_US, LATEST_US);
    let step_us = step_us.unwrap_or_else(|| auto_step_us(since_us, until_us));
    let grid = Grid::new(since_us, until_us, step_us).ok_or_else(|| {
        bad(format!(
            "invalid step: the range needs more than {MAX_BUCKETS} buckets of it; pass a larger step or a shorter range"
        ))
    })?;
    let mut tally = Tally::new(grid, by);
    count(
        &state.store,
        &query,
        since_us,
        until_us,
        deadline,
        &mut tally,
    )
    .await
    .map_err(|e| -> Refusal { state.store_failed(e) })?;
    tally.finish(since_us, until_us);
    Ok(HttpResponse::Ok().json(answer(&tally, since_us, until_us)))
}

/// Digits, optionally `.` and digits, optionally a unit (`ms`, `s`, `m`, `h`): the
/// shape the OpenAPI description gives `step`.
fn step_shaped(s: &str) -> bool {
    let number = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[number.len()..];
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (number, None),
    };
    let digits = |d: &str| (1..=9).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && frac.map_or(true, digits) && ["", "ms", "s", "m", "h"].contains(&unit)
}

/// The time of the oldest record before `until_us` of the query's service and level
/// (the start of a range without `since`).
async fn oldest(
    store: &Store,
    query: &LogQuery,
    until_us: i64,
    deadline: Instant,
) -> Result<Option<i64>, StoreError> {
    let page = store
        .scan(
            ScanQuery {
                service: query.service.clone(),
                level: query.level.clone(),
                since_us: i64::MIN,
                until_us,
                order: Order::Asc,
                after: None,
                limit: 1,
            },
            deadline,
        )
        .await?;
    Ok(page.rows.first().map(|r| r.ts_us))
}

/// Reads `[since, until)` and counts the records the query matches.
async fn count(
    store: &Store,
    query: &LogQuery,
    since_us: i64,
    until_us: i64,
    deadline: Instant,
    tally: &mut Tally,
) -> Result<(), StoreError> {
    let filter = Filter::new(query);
    let mut scratch = Vec::new();
    let mut after = None;
    loop {
        if Instant::now() >= deadline {
            return Err(StoreError::Timeout(std::time::Duration::ZERO));
        }
        let page = store
            .scan(
                ScanQuery {
                    service: query.service.clone(),
                    level: query.level.clone(),
                    since_us,
                    until_us,
                    order: Order::Asc,
                    after,
                    limit: SCAN_PAGE,
                },
                deadline,
            )
            .await?;
        for row in &page.rows {
            after = Some((row.ts_us, row.id));
            let Some(fields) = record::indexed(&row.body) else {
                continue;
            };
            if !filter.request_ok(fields.request_id.as_deref())
                || !filter.text_ok(fields.message.as_deref(), &mut scratch)
            {
                continue;
            }
            let request = Request::of(&row.body);
            tally.add(Seen {
                ts_us: row.ts_us,
                service: fields.service.as_deref(),
                level: fields.level.as_deref(),
                status: request.status,
                duration_ms: request.duration_ms,
            });
        }
        if !page.more || page.rows.is_empty() {
            return Ok(());
        }
    }
}

/// The request fields the services write on each request record.
#[derive(Debug, Default, PartialEq)]
pub struct Request {
    pub status: Option<f64>,
    pub duration_ms: Option<f64>,
}

impl Request {
    /// Numbers, or numbers written as strings; anything else is absent.
    pub fn of(body: &str) -> Request {
        #[derive(Deserialize)]
        struct Raw {
            status: Option<Value>,
            duration_ms: Option<Value>,
        }
        let number = |v: Option<Value>| match v? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        match serde_json::from_str::<Raw>(body) {
            Ok(raw) => Request {
                status: number(raw.status),
                duration_ms: number(raw.duration_ms),
            },
            Err(_) => Request::default(),
        }
    }
}

fn rfc3339(us: i64) -> Value {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .into()
}

/// The JSON answer.
pub fn answer(t: &Tally, since_us: i64, until_us: i64) -> Value {
    let buckets: Vec<Value> = t
        .buckets
        .iter()
        .enumerate()
        .map(|(i, counts)| {
            let start = t.grid.start_us + i as i64 * t.grid.step_us;
            let total: u64 = counts.0.values().sum();
            json!({"time": rfc3339(start), "total": total, "counts": counts})
        })
        .collect();
    let services: Map<String, Value> = t
        .overview
        .iter()
        .map(|(name, s)| (name.clone(), json!(s)))
        .collect();
    json!({
        "since": rfc3339(since_us),
        "until": rfc3339(until_us),
        "step": shared::config::format_duration(std::time::Duration::from_micros(t.grid.step_us as u64)),
        "step_ms": t.grid.step_us / 1000,
        "by": t.by.name(),
        "total": t.total,
        "buckets": buckets,
        "facets": {"service": t.services, "level": t.levels},
        "services": services,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_have_the_described_shape() {
        for ok in ["1", "10s", "1.5m", "500ms", "0.5", "2h", "999999999s"] {
            assert!(step_shaped(ok), "{ok}");
        }
        for bad in [
            "",
            "1.",
            ".5",
            "1d",
            "s",
            "1 s",
            "-1s",
            "1e3",
            "1.5.5s",
            "1234567890",
        ] {
            assert!(!step_shaped(bad), "{bad}");
        }
    }

    #[test]
    fn request_fields_are_read_as_numbers() {
        assert_eq!(
            Request::of(r#"{"status":503,"duration_ms":12.5,"x":[1]}"#),
            Request {
                status: Some(503.0),
                duration_ms: Some(12.5)
            }
        );
        assert_eq!(
            Request::of(r#"{"status":"404","duration_ms":"fast"}"#),
            Request {
                status: Some(404.0),
                duration_ms: None
            }
        );
        assert_eq!(Request::of(r#"{"status":null}"#), Request::default());
        assert_eq!(Request::of("not json"), Request::default());
    }
}
