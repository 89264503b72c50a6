//! The calls about streams rather than lines: `/labels`, `/label/<name>/values`,
//! `/series`, `/index/stats`, `/index/volume` and `/index/volume_range`.
//!
//! There is no separate index: each answer comes from one scan of the records in the
//! range (narrowed by the indexed `service` and `level` when the selector names them),
//! so it is exact, and bounded by the query timeout and [`super::exec::Limits::max_streams`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value as Json};

use super::error::LokiError;
use super::exec::{Exec, StreamStats};
use super::labels::LabelSet;
use super::logql::ast::Matcher;
use super::logql::metric::Steps;
use super::logql::parse_selector;
use super::params::{self, NS};
use super::request::{authorize, slot, Params};
use super::{response, Loki};
use crate::routes::State;

/// The span of `/labels`, `/series` and `/index/*` without `start`: six hours, as in Loki.
pub const DEFAULT_SPAN: i64 = 6 * 3600 * NS;

type Streams = HashMap<LabelSet, StreamStats>;

/// The streams of the request's selectors (`query`, or each `match[]`) in its range.
async fn collect(
    req: &HttpRequest,
    body: &[u8],
    state: &State,
    loki: &Loki,
    selectors: &[&str],
    steps: Option<i64>,
) -> Result<(Streams, Params, i64, i64), LokiError> {
    authorize(req, state)?;
    let p = Params::of(req, body)?;
    let (start, end) = params::range(p.get("start"), p.get("end"), p.get("since"), DEFAULT_SPAN)?;
    let mut sets: Vec<Vec<Matcher>> = Vec::new();
    for name in selectors {
        for text in p.all(name).into_iter().filter(|t| !t.trim().is_empty()) {
            sets.push(parse_selector(text)?);
        }
    }
    if sets.is_empty() {
        sets.push(Vec::new());
    }
    let steps = match steps {
        Some(default) => {
            let step = match p.get("step") {
                Some(s) => params::duration("step", s)?,
                None => default.max(params::default_step(start, end)),
            };
            let s = Steps::range(start, end, step);
            if s.count > loki.limits.max_steps {
                return Err(LokiError::bad(format!(
                    "exceeded maximum resolution of {} points per timeseries",
                    loki.limits.max_steps
                )));
            }
            Some(s)
        }
        None => None,
    };
    let _slot = slot(loki, state).await?;
    let mut exec = Exec::new(&state.store, &loki.limits);
    let mut all = Streams::new();
    for matchers in &sets {
        for (k, v) in exec
            .streams(matchers, start, end, steps, loki.limits.max_streams)
            .await?
        {
            all.entry(k).or_insert(v);
        }
    }
    Ok((all, p, start, end))
}

fn answer(json: Json) -> HttpResponse {
    HttpResponse::Ok().json(json)
}

pub async fn labels(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    loki: web::Data<Loki>,
) -> Result<HttpResponse, LokiError> {
    let run = async {
        let (streams, ..) = collect(&req, &body, &state, &loki, &["query"], None).await?;
        let names: BTreeSet<&str> = streams.keys().flatten().map(|(k, _)| k.as_str()).collect();
        Ok(answer(response::data(json!(names))))
    };
    run.await.map_err(|e: LokiError| e.counted(&state.metrics))
}

pub async fn label_values(
    req: HttpRequest,
    body: web::Bytes,
    name: web::Path<String>,
    state: web::Data<State>,
    loki: web::Data<Loki>,
) -> Result<HttpResponse, LokiError> {
    let run = async {
        let (streams, ..) = collect(&req, &body, &state, &loki, &["query"], None).await?;
        let values: BTreeSet<&str> = streams
            .keys()
            .flatten()
            .filter(|(k, _)| *k == *name)
            .map(|(_, v)| v.as_str())
            .collect();
        Ok(answer(response::data(json!(values))))
    };
    run.await.map_err(|e: LokiError| e.counted(&state.metrics))
}

pub async fn series(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    loki: web::Data<Loki>,
) -> Result<HttpResponse, LokiError> {
    let run = async {
        authorize(&req, &state)?;
        let p = Params::of(&req, &body)?;
        if p.all("match[]")
            .iter()
            .chain(p.all("match").iter())
            .all(|m| m.trim().is_empty())
        {
            return Err(LokiError::bad(
                "at least one match[] argument must be provided",
            ));
        }
        let (streams, ..) =
            collect(&req, &body, &state, &loki, &["match[]", "match"], None).await?;
        let sets: BTreeSet<&LabelSet> = streams.keys().collect();
        let data: Vec<Json> = sets.into_iter().map(response::labels).collect();
        Ok(answer(response::data(Json::Array(data))))
    };
    run.await.map_err(|e: LokiError| e.counted(&state.metrics))
}

/// `{"streams", "chunks", "entries", "bytes"}`; there are no chunks here, so `chunks`
/// counts streams (each would be at least one chunk in Loki).
pub async fn stats(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    loki: web::Data<Loki>,
) -> Result<HttpResponse, LokiError> {
    let run = async {
        let (streams, ..) = collect(&req, &body, &state, &loki, &["query"], None).await?;
        let entries: u64 = streams.values().map(|s| s.entries).sum();
        let bytes: u64 = streams.values().map(|s| s.bytes).sum();
        Ok(answer(json!({
            "streams": streams.len(),
            "chunks": streams.len(),
            "entries": entries,
            "bytes": bytes,
        })))
    };
    run.await.map_err(|e: LokiError| e.counted(&state.metrics))
}

pub async fn volume(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    loki: web::Data<Loki>,
) -> Result<HttpResponse, LokiError> {
    volume_of(req, body, state, loki, false).await
}

pub async fn volume_range(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    loki: web::Data<Loki>,
) -> Result<HttpResponse, LokiError> {
    volume_of(req, body, state, loki, true).await
}

/// Bytes per group of streams: grouped by the labels the selector names (or
/// `targetLabels`), or by label name alone with `aggregateBy=labels`.
async fn volume_of(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    loki: web::Data<Loki>,
    range: bool,
) -> Result<HttpResponse, LokiError> {
    let run = async {
        let began = Instant::now();
        authorize(&req, &state)?;
        let p0 = Params::of(&req, &body)?;
        let selector = parse_selector(p0.required("query")?)?;
        let (streams, p, start, end) =
            collect(&req, &body, &state, &loki, &["query"], range.then_some(NS)).await?;
        let targets: Vec<String> = match p.get("targetLabels") {
            Some(t) => t
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            None => selector.iter().map(|m| m.name.clone()).collect(),
        };
        let by_labels = match p.get("aggregateBy") {
            None | Some("series") => false,
            Some("labels") => true,
            Some(other) => {
                return Err(LokiError::bad(format!(
                    "aggregateBy {other:?} is not series or labels"
                )))
            }
        };
        let limit = match p.get("limit") {
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| LokiError::bad("limit must be a positive whole number"))?,
            None => 100,
        };
        let step = match p.get("step") {
            Some(s) => params::duration("step", s)?,
            None => NS.max(params::default_step(start, end)),
        };
        let steps = Steps::range(start, end, step);
        let mut groups: BTreeMap<LabelSet, (u64, Vec<u64>)> = BTreeMap::new();
        for (set, s) in &streams {
            let keys: Vec<LabelSet> = if by_labels {
                set.iter()
                    .filter(|(k, _)| targets.is_empty() || targets.contains(k))
                    .map(|(k, _)| vec![(k.clone(), String::new())])
                    .collect()
            } else {
                vec![set
                    .iter()
                    .filter(|(k, _)| targets.contains(k))
                    .cloned()
                    .collect()]
            };
            for key in keys {
                let g = groups
                    .entry(key)
                    .or_insert_with(|| (0, vec![0; steps.count]));
                g.0 += s.bytes;
                if let Some(per) = &s.per_step {
                    for (k, n) in per.iter().enumerate() {
                        g.1[k] += n;
                    }
                }
            }
        }
        let mut ranked: Vec<(LabelSet, (u64, Vec<u64>))> = groups.into_iter().collect();
        ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(limit);
        let metric = |set: &LabelSet| {
            Json::Object(
                set.iter()
                    .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                    .collect(),
            )
        };
        let result: Vec<Json> = if range {
            ranked
                .iter()
                .map(|(set, (_, per))| {
                    let values: Vec<Json> = per
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| **v > 0)
                        .map(|(k, v)| json!([response::seconds(steps.at(k)), v.to_string()]))
                        .collect();
                    json!({"metric": metric(set), "values": values})
                })
                .collect()
        } else {
            ranked
                .iter()
                .map(|(set, (bytes, _))| json!({"metric": metric(set), "value": [response::seconds(end), bytes.to_string()]}))
                .collect()
        };
        Ok(answer(json!({
            "status": "success",
            "data": {
                "resultType": if range { "matrix" } else { "vector" },
                "result": result,
                "stats": {"summary": {"execTime": began.elapsed().as_secs_f64()}},
            }
        })))
    };
    run.await.map_err(|e: LokiError| e.counted(&state.metrics))
}
