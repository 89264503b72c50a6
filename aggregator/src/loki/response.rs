//! The JSON shapes of Loki's answers: `streams`, `matrix`, `vector` and `scalar`
//! results, nanosecond timestamps as strings for log lines, Unix seconds as numbers for
//! samples, sample values as strings (`"0.5"`, `"NaN"`, `"+Inf"`).

use serde_json::{json, Map, Number, Value as Json};

use super::exec::{Stats, Streams};
use super::labels::LabelSet;
use super::logql::metric::{Series, Steps, Value};
use super::params::Direction;

/// A label set as a JSON object.
pub fn labels(set: &LabelSet) -> Json {
    Json::Object(
        set.iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// Seconds since the epoch, as a number: whole when it is, else to the millisecond.
pub fn seconds(ns: i64) -> Json {
    if ns % 1_000_000_000 == 0 {
        Json::Number(Number::from(ns / 1_000_000_000))
    } else {
        let s = (ns as f64 / 1e6).round() / 1e3;
        Number::from_f64(s).map_or(Json::Null, Json::Number)
    }
}

/// A sample value as Prometheus and Loki write it.
pub fn sample(v: f64) -> Json {
    Json::String(if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    })
}

fn stats(stats: &Stats, seconds: f64) -> Json {
    let per_s = |n: u64| {
        if seconds > 0.0 {
            (n as f64 / seconds) as u64
        } else {
            n
        }
    };
    json!({
        "summary": {
            "bytesProcessedPerSecond": per_s(stats.bytes),
            "linesProcessedPerSecond": per_s(stats.lines),
            "totalBytesProcessed": stats.bytes,
            "totalLinesProcessed": stats.lines,
            "execTime": seconds,
            "queueTime": 0,
        }
    })
}

fn success(result_type: &str, result: Json, s: &Stats, secs: f64) -> Json {
    json!({
        "status": "success",
        "data": {
            "resultType": result_type,
            "result": result,
            "stats": stats(s, secs),
        }
    })
}

/// A log query's answer; streams in label order, entries in the query's direction.
pub fn streams(streams: Streams, _direction: Direction, s: &Stats, secs: f64) -> Json {
    let result: Vec<Json> = streams
        .into_iter()
        .map(|(set, entries)| {
            let values: Vec<Json> = entries
                .into_iter()
                .map(|(ts, line)| {
                    Json::Array(vec![Json::String(ts.to_string()), Json::String(line)])
                })
                .collect();
            json!({"stream": labels(&set), "values": values})
        })
        .collect();
    success("streams", Json::Array(result), s, secs)
}

/// A range query's answer: a matrix (a scalar becomes one unlabelled series).
pub fn matrix(value: Value, steps: Steps, s: &Stats, secs: f64) -> Json {
    let series = match value {
        Value::Matrix(m) => m,
        Value::Scalar(v) => vec![Series {
            labels: Vec::new(),
            points: v.into_iter().map(Some).collect(),
        }],
    };
    let result: Vec<Json> = series
        .into_iter()
        .map(|s| {
            let values: Vec<Json> = s
                .points
                .iter()
                .enumerate()
                .filter_map(|(k, p)| p.map(|v| Json::Array(vec![seconds(steps.at(k)), sample(v)])))
                .collect();
            json!({"metric": labels(&s.labels), "values": values})
        })
        .collect();
    success("matrix", Json::Array(result), s, secs)
}

/// An instant query's answer: a vector, or a scalar.
pub fn instant(value: Value, at: i64, s: &Stats, secs: f64) -> Json {
    match value {
        Value::Scalar(v) => success(
            "scalar",
            Json::Array(vec![
                seconds(at),
                sample(v.first().copied().unwrap_or(f64::NAN)),
            ]),
            s,
            secs,
        ),
        Value::Matrix(m) => {
            let result: Vec<Json> = m
                .into_iter()
                .filter_map(|s| {
                    let v = s.points.first().copied().flatten()?;
                    Some(json!({"metric": labels(&s.labels), "value": [seconds(at), sample(v)]}))
                })
                .collect();
            success("vector", Json::Array(result), s, secs)
        }
    }
}

/// `{"status":"success","data":...}` of `/labels`, `/label/<name>/values` and `/series`.
pub fn data(data: Json) -> Json {
    json!({"status": "success", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_loki_writes_them() {
        assert_eq!(seconds(1_588_889_221_000_000_000), json!(1588889221));
        assert_eq!(seconds(1_588_889_221_500_000_000), json!(1588889221.5));
        assert_eq!(sample(2.0), json!("2"));
        assert_eq!(sample(1267.1266666666666), json!("1267.1266666666666"));
        assert_eq!(sample(f64::NAN), json!("NaN"));
        assert_eq!(sample(f64::NEG_INFINITY), json!("-Inf"));
    }
}
