//! Loki's query API over a known data set, against the real binary.
//!
//! - `logql_table`: log and metric queries with their exact expected results, over
//!   pushed streams (JSON lines, logfmt lines, text with structured metadata) and
//!   records sent to `POST /logs` as a sidecar sends them.
//! - `labels_series_and_index_calls`: `/labels`, `/label/<name>/values`, `/series`,
//!   `/index/stats`, `/index/volume(_range)`, `/ready`, buildinfo.
//! - `answers_have_the_shapes_of_lokis_documented_examples`: each answer's structure
//!   (keys and value types) against the examples of Loki's HTTP API reference.
//! - `errors_are_lokis_plain_text`: unsupported parts named, syntax errors located.

mod common;

use awc::http::StatusCode;
use common::loki::{json_push, query, send};
use common::{post_ndjson, Aggregator};
use serde_json::{json, Value};

const S: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * S;

fn ts(offset_s: i64) -> String {
    (T0 + offset_s * S).to_string()
}

/// Seconds since the epoch of `T0 + offset_s`, as a JSON number.
fn secs(offset_s: i64) -> Value {
    json!(T0 / S + offset_s)
}

async fn loaded() -> (tempfile::TempDir, Aggregator) {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[]).await;
    load(&agg).await;
    (dir, agg)
}

/// Stores the records every query of this file is checked against.
async fn load(agg: &Aggregator) {
    let body = json_push(&[
        (
            json!({"app": "shop", "env": "prod"}),
            &[
                (
                    T0 + S,
                    r#"{"level":"info","status":200,"path":"/cart","duration_ms":12}"#,
                    &[],
                ),
                (
                    T0 + 2 * S,
                    r#"{"level":"error","status":503,"path":"/pay","duration_ms":340}"#,
                    &[],
                ),
                (
                    T0 + 3 * S,
                    r#"{"level":"info","status":200,"path":"/cart","duration_ms":8}"#,
                    &[],
                ),
                (
                    T0 + 61 * S,
                    r#"{"level":"warn","status":404,"path":"/x","duration_ms":3}"#,
                    &[],
                ),
            ],
        ),
        (
            json!({"app": "shop", "env": "dev"}),
            &[
                (
                    T0 + 5 * S,
                    r#"level=info msg="GET /cart" status=200 took=15ms"#,
                    &[],
                ),
                (
                    T0 + 65 * S,
                    r#"level=error msg="payment failed" status=500 took=1.5s"#,
                    &[],
                ),
            ],
        ),
        (
            json!({"app": "billing", "env": "prod"}),
            &[
                (T0 + 10 * S, "invoice 42 created", &[("trace_id", "abc")]),
                (
                    T0 + 70 * S,
                    "invoice 43 failed: card declined",
                    &[("trace_id", "def")],
                ),
            ],
        ),
    ]);
    let (status, text) = send(
        &agg.url("/loki/api/v1/push"),
        &[("Content-Type", "application/json")],
        body.into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let native = |offset: i64, level: &str, message: &str| {
        json!({
            "timestamp": chrono::DateTime::from_timestamp_nanos(T0 + offset * S).to_rfc3339(),
            "service": "user-service", "level": level, "message": message,
            "environment": "test", "sidecar_forwarded_by": "user-service-logging-sidecar",
            "event_id": format!("user-service:0000000000000001:{offset:x}-{:x}", offset + 1),
        })
    };
    let (status, _) = post_ndjson(
        &agg.url("/logs"),
        &[
            native(20, "INFO", "GET /users/1 200"),
            native(80, "ERROR", "GET /users/9 500"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

async fn range(agg: &Aggregator, q: &str, extra: &[(&str, &str)]) -> Value {
    let (start, end) = (ts(0), ts(120));
    let mut params = vec![
        ("query", q),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("direction", "forward"),
    ];
    params.extend_from_slice(extra);
    let (status, v, text) = query(&agg.base, "/loki/api/v1/query_range", &params, &[]).await;
    assert_eq!(status, StatusCode::OK, "{q}: {text}");
    assert_eq!(v["status"], "success");
    v["data"].clone()
}

/// Streams as `{labels: [[ts, line]...]}`, independent of order.
fn streams(data: &Value) -> Value {
    assert_eq!(data["resultType"], "streams", "{data}");
    let mut out = serde_json::Map::new();
    for s in data["result"].as_array().unwrap() {
        out.insert(s["stream"].to_string(), s["values"].clone());
    }
    Value::Object(out)
}

fn matrix(data: &Value) -> Value {
    assert_eq!(data["resultType"], "matrix", "{data}");
    let mut out = serde_json::Map::new();
    for s in data["result"].as_array().unwrap() {
        out.insert(s["metric"].to_string(), s["values"].clone());
    }
    Value::Object(out)
}

fn key(labels: Value) -> String {
    // serde_json's objects are sorted, as the aggregator sorts labels.
    labels.to_string()
}

/// A log query, its extra parameters, and the streams expected.
type LogCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, Value);

#[actix_rt::test]
async fn logql_table() {
    let (_dir, agg) = loaded().await;
    logql_table_on(&agg).await;
}

/// The same table of queries on the ClickHouse store (`STORE=clickhouse`), whose scans
/// read ClickHouse.
#[actix_rt::test]
async fn logql_table_on_clickhouse() {
    if !common::clickhouse::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ch = common::clickhouse::ClickHouse::start(&dir.path().join("clickhouse")).await;
    let mut env = ch.env("loki");
    // The records are from 2023: kept whatever their age.
    env.push(("RETENTION_MAX_AGE", "0".to_owned()));
    let agg = Aggregator::start(dir.path(), &common::clickhouse::pairs(&env)).await;
    load(&agg).await;
    logql_table_on(&agg).await;
}

async fn logql_table_on(agg: &Aggregator) {
    let prod = key(json!({"app": "shop", "env": "prod"}));
    let dev = key(json!({"app": "shop", "env": "dev"}));
    let line = |o: i64, l: &str| json!([ts(o), l]);
    let cart1 = r#"{"level":"info","status":200,"path":"/cart","duration_ms":12}"#;
    let pay = r#"{"level":"error","status":503,"path":"/pay","duration_ms":340}"#;
    let cart3 = r#"{"level":"info","status":200,"path":"/cart","duration_ms":8}"#;
    let x404 = r#"{"level":"warn","status":404,"path":"/x","duration_ms":3}"#;
    let dev5 = r#"level=info msg="GET /cart" status=200 took=15ms"#;
    let dev65 = r#"level=error msg="payment failed" status=500 took=1.5s"#;

    // Log queries: (query, extra parameters, expected streams).
    let log_cases: Vec<LogCase<'_>> = vec![
        (
            r#"{app="shop"}"#,
            vec![],
            json!({&prod: [line(1, cart1), line(2, pay), line(3, cart3), line(61, x404)], &dev: [line(5, dev5), line(65, dev65)]}),
        ),
        (
            r#"{app="shop", env="prod"} |= "cart""#,
            vec![],
            json!({&prod: [line(1, cart1), line(3, cart3)]}),
        ),
        (
            r#"{app="shop"} != "cart""#,
            vec![],
            json!({&prod: [line(2, pay), line(61, x404)], &dev: [line(65, dev65)]}),
        ),
        (
            r#"{app=~"shop|billing"} |~ "fail(ed)?""#,
            vec![],
            json!({
                &dev: [line(65, dev65)],
                key(json!({"app": "billing", "env": "prod", "trace_id": "def"})): [line(70, "invoice 43 failed: card declined")],
            }),
        ),
        (
            r#"{app="shop", env="prod"} | json | status >= 500"#,
            vec![],
            json!({key(json!({"app": "shop", "env": "prod", "duration_ms": "340", "level": "error", "path": "/pay", "status": "503"})): [line(2, pay)]}),
        ),
        (
            r#"{app="shop", env="prod"} | json | status >= 500 or level = "warn" | keep app, path"#,
            vec![],
            json!({
                key(json!({"app": "shop", "path": "/pay"})): [line(2, pay)],
                key(json!({"app": "shop", "path": "/x"})): [line(61, x404)],
            }),
        ),
        (
            r#"{app="shop", env="dev"} | logfmt | took > 1s"#,
            vec![],
            json!({key(json!({"app": "shop", "env": "dev", "level": "error", "msg": "payment failed", "status": "500", "took": "1.5s"})): [line(65, dev65)]}),
        ),
        (
            r#"{app="shop", env="prod"} | json | duration_ms < 10 | line_format "{{.path}} {{.status}}" | drop level, duration_ms, path, status"#,
            vec![],
            json!({&prod: [line(3, "/cart 200"), line(61, "/x 404")]}),
        ),
        (
            r#"{app="billing"} | trace_id="def""#,
            vec![],
            json!({key(json!({"app": "billing", "env": "prod", "trace_id": "def"})): [line(70, "invoice 43 failed: card declined")]}),
        ),
        (
            r#"{app="shop"}"#,
            vec![("direction", "backward"), ("limit", "2")],
            json!({&prod: [line(61, x404)], &dev: [line(65, dev65)]}),
        ),
        (r#"{app="shop"} |= "nothing matches""#, vec![], json!({})),
    ];
    for (q, extra, want) in log_cases {
        assert_eq!(streams(&range(agg, q, &extra).await), want, "{q}");
    }

    // Our own records: streams of service, level, environment and forwarding sidecar;
    // the line is the stored record.
    let data = range(agg, r#"{service="user-service", level="ERROR"}"#, &[]).await;
    let result = data["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{data}");
    assert_eq!(
        result[0]["stream"],
        json!({"environment": "test", "level": "ERROR", "service": "user-service", "sidecar_forwarded_by": "user-service-logging-sidecar"})
    );
    assert_eq!(result[0]["values"][0][0], ts(80));
    let record: Value = serde_json::from_str(result[0]["values"][0][1].as_str().unwrap()).unwrap();
    assert_eq!(record["message"], "GET /users/9 500");
    let data = range(
        agg,
        r#"{service="user-service"} | json | status_code = "" | message =~ "GET /users/1.*""#,
        &[],
    )
    .await;
    assert_eq!(
        data["result"][0]["values"].as_array().unwrap().len(),
        1,
        "{data}"
    );

    // Metric queries at steps of 60 s from T0+60 to T0+120: (query, expected matrix).
    let step = |o: i64, v: &str| json!([secs(o), v]);
    let any = r#"{app=~".+"}"#;
    let metric_cases: Vec<(String, Value)> = vec![
        (
            r#"count_over_time({app="shop"}[1m])"#.into(),
            json!({&prod: [step(60, "3"), step(120, "1")], &dev: [step(60, "1"), step(120, "1")]}),
        ),
        (
            format!("sum by (env) (count_over_time({any}[1m]))"),
            json!({key(json!({"env": "prod"})): [step(60, "4"), step(120, "2")], key(json!({"env": "dev"})): [step(60, "1"), step(120, "1")]}),
        ),
        (
            r#"sum(rate({app="shop"}[1m]))"#.into(),
            json!({"{}": [step(60, &(4.0f64 / 60.0).to_string()), step(120, &(2.0f64 / 60.0).to_string())]}),
        ),
        (
            r#"bytes_over_time({app="billing"}[2m])"#.into(),
            json!({key(json!({"app": "billing", "env": "prod", "trace_id": "abc"})): [step(60, "18"), step(120, "18")],
                   key(json!({"app": "billing", "env": "prod", "trace_id": "def"})): [step(120, "32")]}),
        ),
        (
            r#"sum by (app) (bytes_rate({app="billing"}[2m]))"#.into(),
            json!({key(json!({"app": "billing"})): [step(60, &(18.0f64 / 120.0).to_string()), step(120, &(50.0f64 / 120.0).to_string())]}),
        ),
        (
            format!("topk(1, sum by (env) (count_over_time({any}[1m])))"),
            json!({key(json!({"env": "prod"})): [step(60, "4"), step(120, "2")]}),
        ),
        (
            r#"sum by (level) (count_over_time({app="shop"} | json | drop __error__, __error_details__ [2m]))"#.into(),
            json!({
                key(json!({"level": "info"})): [step(60, "2"), step(120, "2")],
                key(json!({"level": "error"})): [step(60, "1"), step(120, "1")],
                key(json!({"level": "warn"})): [step(120, "1")],
                "{}": [step(60, "1"), step(120, "2")],
            }),
        ),
        (
            format!(r#"count(sum by (app, env) (count_over_time({any}[2m])))"#),
            json!({"{}": [step(60, "3"), step(120, "3")]}),
        ),
        (
            r#"avg by (app) (sum by (app, env) (count_over_time({app="shop"}[2m])))"#.into(),
            json!({key(json!({"app": "shop"})): [step(60, "2"), step(120, "3")]}),
        ),
        (
            r#"max(sum by (env) (count_over_time({app="shop"}[2m]))) - min(sum by (env) (count_over_time({app="shop"}[2m])))"#.into(),
            json!({"{}": [step(60, "2"), step(120, "2")]}),
        ),
        (
            r#"sum(count_over_time({app="shop"}[2m])) / 8"#.into(),
            json!({"{}": [step(60, "0.5"), step(120, "0.75")]}),
        ),
        (
            r#"sum(count_over_time({app="shop", env="dev"} | logfmt | status >= 500 [1m] offset 1m))"#.into(),
            json!({}),
        ),
        (
            r#"sum(count_over_time({app="shop", env="dev"} | logfmt | status >= 500 [1m] offset 1s))"#.into(),
            json!({"{}": [step(120, "1")]}),
        ),
    ];
    for (q, want) in metric_cases {
        let params = [
            ("query", q.as_str()),
            ("start", &ts(60)),
            ("end", &ts(120)),
            ("step", "60s"),
        ];
        let (status, v, text) = query(&agg.base, "/loki/api/v1/query_range", &params, &[]).await;
        assert_eq!(status, StatusCode::OK, "{q}: {text}");
        assert_eq!(matrix(&v["data"]), want, "{q}");
    }

    // Instant queries.
    let (status, v, text) = query(
        &agg.base,
        "/loki/api/v1/query",
        &[
            (
                "query",
                r#"sum by (env) (count_over_time({app="shop"}[2m]))"#,
            ),
            ("time", &ts(120)),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(
        v["data"]["result"],
        json!([{"metric": {"env": "dev"}, "value": [secs(120), "2"]}, {"metric": {"env": "prod"}, "value": [secs(120), "4"]}])
    );
    // Grafana's data-source check.
    let (status, v, text) = query(
        &agg.base,
        "/loki/api/v1/query",
        &[
            ("direction", "backward"),
            ("query", "vector(1)+vector(1)"),
            ("time", "4000000000"),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        v["data"]["result"],
        json!([{"metric": {}, "value": [4000000000u64, "2"]}])
    );
    let (_, v, _) = query(
        &agg.base,
        "/loki/api/v1/query",
        &[("query", "1 + 2 * 3"), ("time", "10")],
        &[],
    )
    .await;
    assert_eq!(
        v["data"],
        json!({"resultType": "scalar", "result": [10, "7"], "stats": v["data"]["stats"]})
    );

    // A metric query whose pipeline fails on some lines says so, as Loki does.
    let params = [
        (
            "query",
            r#"sum by (level) (count_over_time({app="shop"} | json [2m]))"#,
        ),
        ("start", &ts(60)),
        ("end", &ts(120)),
        ("step", "60s"),
    ];
    let (status, _, text) = query(&agg.base, "/loki/api/v1/query_range", &params, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.starts_with("pipeline error: 'JSONParserErr'"),
        "{text}"
    );
}

#[actix_rt::test]
async fn labels_series_and_index_calls() {
    let (_dir, agg) = loaded().await;
    let span = [("start", ts(0)), ("end", ts(120))];
    let span: Vec<(&str, &str)> = span.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let get = |path: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let mut params = span.clone();
        params.extend(extra);
        let base = agg.base.clone();
        async move {
            let (status, v, text) = query(&base, path, &params, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}: {text}");
            v
        }
    };
    assert_eq!(
        get("/loki/api/v1/labels", vec![]).await,
        json!({"status": "success", "data": ["app", "env", "environment", "level", "service", "sidecar_forwarded_by"]})
    );
    assert_eq!(
        get("/loki/api/v1/labels", vec![("query", r#"{app="billing"}"#)]).await["data"],
        json!(["app", "env"])
    );
    assert_eq!(
        get("/loki/api/v1/label/app/values", vec![]).await["data"],
        json!(["billing", "shop"])
    );
    assert_eq!(
        get("/loki/api/v1/label/level/values", vec![]).await["data"],
        json!(["ERROR", "INFO"])
    );
    assert_eq!(
        get(
            "/loki/api/v1/label/env/values",
            vec![("query", r#"{app="shop"}"#)]
        )
        .await["data"],
        json!(["dev", "prod"])
    );
    assert_eq!(
        get(
            "/loki/api/v1/series",
            vec![
                ("match[]", r#"{app="shop"}"#),
                ("match[]", r#"{app="billing"}"#)
            ]
        )
        .await["data"],
        json!([{"app": "billing", "env": "prod"}, {"app": "shop", "env": "dev"}, {"app": "shop", "env": "prod"}])
    );
    let shop_bytes: usize = [
        r#"{"level":"info","status":200,"path":"/cart","duration_ms":12}"#,
        r#"{"level":"error","status":503,"path":"/pay","duration_ms":340}"#,
        r#"{"level":"info","status":200,"path":"/cart","duration_ms":8}"#,
        r#"{"level":"warn","status":404,"path":"/x","duration_ms":3}"#,
        r#"level=info msg="GET /cart" status=200 took=15ms"#,
        r#"level=error msg="payment failed" status=500 took=1.5s"#,
    ]
    .iter()
    .map(|l| l.len())
    .sum();
    assert_eq!(
        get(
            "/loki/api/v1/index/stats",
            vec![("query", r#"{app="shop"}"#)]
        )
        .await,
        json!({"streams": 2, "chunks": 2, "entries": 6, "bytes": shop_bytes})
    );
    let v = get(
        "/loki/api/v1/index/volume",
        vec![("query", r#"{app=~".+"}"#)],
    )
    .await;
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(
        v["data"]["result"],
        json!([
            {"metric": {"app": "shop"}, "value": [secs(120), shop_bytes.to_string()]},
            {"metric": {"app": "billing"}, "value": [secs(120), "50"]},
        ])
    );
    let v = get(
        "/loki/api/v1/index/volume_range",
        vec![("query", r#"{app="billing"}"#), ("step", "60s")],
    )
    .await;
    assert_eq!(
        v["data"]["result"],
        json!([{"metric": {"app": "billing"}, "values": [[secs(60), "18"], [secs(120), "32"]]}])
    );
    let (status, _, text) = query(&agg.base, "/ready", &[], &[]).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "ready"));
    let (_, v, _) = query(&agg.base, "/loki/api/v1/status/buildinfo", &[], &[]).await;
    assert!(v["version"].is_string());
    // A POST with a form body is the same call.
    let form = format!(
        "query={}&start={}&end={}",
        common::loki::encode(r#"{app="billing"}"#),
        ts(0),
        ts(120)
    );
    let (status, text) = send(
        &agg.url("/loki/api/v1/labels"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["data"],
        json!(["app", "env"])
    );
}

/// `data` as a list of label sets, whatever their names.
fn label_list(mut v: Value) -> Value {
    let all_labels = v["data"].as_array().is_some_and(|a| {
        a.iter().all(|x| {
            x.as_object()
                .is_some_and(|o| o.values().all(Value::is_string))
        })
    });
    assert!(all_labels, "{v}");
    v["data"] = json!(["labels"]);
    v
}

/// A call over the data set's two minutes; its JSON answer.
async fn windowed(base: &str, path: &str, mut params: Vec<(&str, &str)>) -> Value {
    let (start, end) = (ts(0), ts(120));
    params.push(("start", &start));
    params.push(("end", &end));
    let (status, v, text) = query(base, path, &params, &[]).await;
    assert_eq!(status, StatusCode::OK, "{path}: {text}");
    v
}

/// A value's structure: object keys with their shapes, an array's first element, and
/// the type of anything else. Objects of labels (`stream`, `metric`) are any strings.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "stats")
                .map(|(k, v)| {
                    let s = if k == "stream" || k == "metric" {
                        json!("labels")
                    } else {
                        shape(v)
                    };
                    (k.clone(), s)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

#[actix_rt::test]
async fn answers_have_the_shapes_of_lokis_documented_examples() {
    let (_dir, agg) = loaded().await;
    // The examples of Loki's HTTP API reference (docs/sources/reference/loki-http-api.md).
    let streams_doc = json!({"status": "success", "data": {"resultType": "streams", "result": [
        {"stream": {"filename": "/var/log/myproject.log", "job": "varlogs", "level": "info"},
         "values": [["1569266497240578000", "foo"], ["1569266492548155000", "bar"]]}], "stats": {}}});
    let matrix_doc = json!({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"level": "info"}, "values": [[1588889221, "137.95"], [1588889221, "467.115"]]}], "stats": {}}});
    let vector_doc = json!({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [1588889221, "1267.1266666666666"]}], "stats": {}}});
    let labels_doc = json!({"status": "success", "data": ["foo", "bar", "baz"]});
    let series_doc =
        json!({"status": "success", "data": [{"container_name": "loki", "app": "loki"}]});
    let stats_doc = json!({"streams": 100, "chunks": 1000, "entries": 5000, "bytes": 100000});

    let call = |path: &'static str, params: Vec<(&'static str, &'static str)>| {
        windowed(&agg.base, path, params)
    };
    let streams = call(
        "/loki/api/v1/query_range",
        vec![("query", r#"{app="shop"}"#)],
    )
    .await;
    assert!(streams["data"]["stats"]["summary"]["totalLinesProcessed"].is_number());
    assert_eq!(shape(&streams), shape(&streams_doc));
    let m = call(
        "/loki/api/v1/query_range",
        vec![
            ("query", r#"sum by (env) (rate({app="shop"}[1m]))"#),
            ("step", "30"),
        ],
    )
    .await;
    assert_eq!(shape(&m), shape(&matrix_doc));
    let v = call(
        "/loki/api/v1/query",
        vec![
            ("query", r#"sum(rate({app="shop"}[10m]))"#),
            ("time", "1700000100"),
        ],
    )
    .await;
    assert_eq!(shape(&v), shape(&vector_doc));
    assert_eq!(
        shape(&call("/loki/api/v1/labels", vec![]).await),
        shape(&labels_doc)
    );
    let series = call("/loki/api/v1/series", vec![("match[]", r#"{app="shop"}"#)]).await;
    assert_eq!(shape(&label_list(series)), shape(&label_list(series_doc)));
    assert_eq!(
        shape(
            &call(
                "/loki/api/v1/index/stats",
                vec![("query", r#"{app="shop"}"#)]
            )
            .await
        ),
        shape(&stats_doc)
    );
}

#[actix_rt::test]
async fn errors_are_lokis_plain_text() {
    let (_dir, agg) = loaded().await;
    let cases = [
        (
            "/loki/api/v1/query_range",
            r#"{app="shop"} | pattern "<_> <x>""#,
            "unsupported LogQL: the \"pattern\" pipeline stage",
        ),
        (
            "/loki/api/v1/query_range",
            r#"quantile_over_time(0.99, {app="shop"} | json | unwrap duration_ms [1m])"#,
            "the function \"quantile_over_time\"",
        ),
        (
            "/loki/api/v1/query_range",
            r#"{app="shop""#,
            "parse error at line 1, col 12",
        ),
        (
            "/loki/api/v1/query_range",
            r#"{app=~".*"}"#,
            "at least one regexp or equality matcher",
        ),
        (
            "/loki/api/v1/query",
            r#"{app="shop"}"#,
            "log queries are not supported as an instant query type",
        ),
        (
            "/loki/api/v1/series",
            r#"{app="shop"}"#,
            "at least one match[] argument",
        ),
    ];
    for (path, q, want) in cases {
        let (status, _, text) = query(&agg.base, path, &[("query", q)], &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {text}");
        assert!(text.contains(want), "{q}: {text:?} lacks {want:?}");
    }
    let (status, _, text) = query(
        &agg.base,
        "/loki/api/v1/query_range",
        &[("query", r#"{app="shop"}"#), ("limit", "5001")],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("max entries limit per query exceeded"),
        "{text}"
    );
    let (status, _, text) = query(
        &agg.base,
        "/loki/api/v1/query_range",
        &[
            ("query", "sum(rate({app=\"shop\"}[1m]))"),
            ("start", "0"),
            ("end", "1700000000"),
            ("step", "1"),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("exceeded maximum resolution of 11000 points"),
        "{text}"
    );
    let (status, _, text) = query(
        &agg.base,
        "/loki/api/v1/query_range",
        &[("query", "{app=\"shop\"}"), ("start", "soon")],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("invalid parameter \"start\""), "{text}");
}
