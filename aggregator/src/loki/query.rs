//! `GET|POST /loki/api/v1/query_range` and `/loki/api/v1/query`.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};

use super::error::LokiError;
use super::exec::Exec;
use super::logql::ast::Expr;
use super::logql::metric::Steps;
use super::logql::parse;
use super::params::{self, Direction, NS};
use super::request::{authorize, slot, Params};
use super::{response, Loki};
use crate::routes::State;

/// The span of a range query without `start`: an hour, as in Loki.
pub const DEFAULT_SPAN: i64 = 3600 * NS;

pub async fn query_range(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    loki: web::Data<Loki>,
) -> Result<HttpResponse, LokiError> {
    run_range(&req, &body, &state, &loki)
        .await
        .map_err(|e| e.counted(&state.metrics))
}

async fn run_range(
    req: &HttpRequest,
    body: &[u8],
    state: &State,
    loki: &Loki,
) -> Result<HttpResponse, LokiError> {
    authorize(req, state)?;
    let p = Params::of(req, body)?;
    let expr = parse(p.required("query")?)?;
    let (start, end) = params::range(p.get("start"), p.get("end"), p.get("since"), DEFAULT_SPAN)?;
    if p.get("interval").is_some() {
        return Err(LokiError::bad(
            "the interval parameter is not supported by this aggregator; leave it out",
        ));
    }
    let _slot = slot(loki, state).await?;
    let began = Instant::now();
    let mut exec = Exec::new(&state.store, &loki.limits);
    let answer = match expr {
        Expr::Log(log) => {
            let limit = params::limit(p.get("limit"), loki.limits.max_entries)?;
            let direction = Direction::parse(p.get("direction"))?;
            let streams = exec.logs(&log, start, end, direction, limit).await?;
            response::streams(
                streams,
                direction,
                &exec.stats,
                began.elapsed().as_secs_f64(),
            )
        }
        Expr::Metric(m) => {
            let step = match p.get("step") {
                Some(s) => params::duration("step", s)?,
                None => params::default_step(start, end),
            };
            let steps = Steps::range(start, end, step);
            if steps.count > loki.limits.max_steps {
                return Err(LokiError::bad(format!(
                    "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                    loki.limits.max_steps
                )));
            }
            let value = exec.metric(&m, steps, &loki.limits).await?;
            response::matrix(value, steps, &exec.stats, began.elapsed().as_secs_f64())
        }
    };
    Ok(HttpResponse::Ok().json(answer))
}

pub async fn query(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    loki: web::Data<Loki>,
) -> Result<HttpResponse, LokiError> {
    run_instant(&req, &body, &state, &loki)
        .await
        .map_err(|e| e.counted(&state.metrics))
}

async fn run_instant(
    req: &HttpRequest,
    body: &[u8],
    state: &State,
    loki: &Loki,
) -> Result<HttpResponse, LokiError> {
    authorize(req, state)?;
    let p = Params::of(req, body)?;
    let expr = parse(p.required("query")?)?;
    let at = params::time("time", p.get("time"), params::now_ns())?;
    let Expr::Metric(m) = expr else {
        return Err(LokiError::bad(
            "log queries are not supported as an instant query type, please change your query to a range query type",
        ));
    };
    let _slot = slot(loki, state).await?;
    let began = Instant::now();
    let mut exec = Exec::new(&state.store, &loki.limits);
    let steps = Steps::instant(at);
    let value = exec.metric(&m, steps, &loki.limits).await?;
    Ok(HttpResponse::Ok().json(response::instant(
        value,
        at,
        &exec.stats,
        began.elapsed().as_secs_f64(),
    )))
}
