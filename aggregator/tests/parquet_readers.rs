//! The embedded store's segments are plain Parquet that other tools read.
//!
//! - `pyarrow_reads_the_segments_and_finds_every_record`: records go in over HTTP, are
//!   flushed to segments (small flushes, then SIGTERM writes the rest), and pyarrow
//!   (from PyPI) reads every segment: the same records, the documented columns and
//!   types (`request_key` as two bytes of the request id's hash), rows sorted by time
//!   in each file.
//!
//! pyarrow comes from `PYARROW_PYTHON` (a Python with pyarrow, as `scripts/test.sh`
//! installs it); without it the test makes its own venv under the target directory and
//! installs pyarrow there.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use awc::http::StatusCode;
use common::{all_logs, post_ndjson, Aggregator};
use log_aggregator::embedded::index::{key_hash, request_fingerprint};
use serde_json::{json, Value};
use shared::event_id::StreamSpan;

const READ_SEGMENTS: &str = r#"
import glob, json, sys
import pyarrow.parquet as pq
for path in sorted(glob.glob(sys.argv[1] + "/*.parquet")):
    table = pq.read_table(path)
    schema = {f.name: str(f.type) for f in table.schema}
    ts = table.column("ts").cast("int64").to_pylist()
    ids = table.column("id").to_pylist()
    print(json.dumps({"file": path, "schema": schema,
                      "sorted": list(zip(ts, ids)) == sorted(zip(ts, ids)),
                      "rows": table.num_rows}))
    for row in table.to_pylist():
        row["ts"] = row["ts"].isoformat()
        if row["request_key"] is not None:
            row["request_key"] = row["request_key"].hex()
        print(json.dumps({"row": row}))
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Python that has pyarrow: `PYARROW_PYTHON`, or a venv made here.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("PYARROW_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyarrow-venv");
    let py = venv.join("bin/python");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import pyarrow"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has(&py) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            made,
            "python3 -m venv failed: install python3 and python3-venv, or set PYARROW_PYTHON"
        );
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "pyarrow"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "pip install pyarrow failed (PyPI is needed once)"
        );
    }
    py
}

#[actix_rt::test]
async fn pyarrow_reads_the_segments_and_finds_every_record() {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    let mut agg = Aggregator::start(dir.path(), &[("FLUSH_RECORDS", "100")]).await;
    let mut sent = Vec::new();
    for b in 0..5 {
        let batch: Vec<Value> = (0..53)
            .map(|i| {
                let n = b * 53 + i;
                let mut r = json!({
                    "timestamp": format!("2024-05-01T10:{:02}:{:02}.{:06}Z", n % 60, (n * 7) % 60, n),
                    "message": format!("request {n} served — ünïcode ✓"),
                    "request_id": format!("req-{n}"),
                    // A logging sidecar's structured id, or another client's.
                    "event_id": if n % 6 == 0 {
                        format!("client-{n}")
                    } else {
                        format!("svc:00000000000000ab:{:x}-{:x}", n * 10, n * 10 + 10)
                    },
                    "nested": {"k": [n, null, true]},
                });
                if n % 4 != 0 {
                    r["service"] = format!("svc-{}", n % 3).into();
                }
                if n % 5 != 0 {
                    r["level"] = "info".into();
                }
                r
            })
            .collect();
        let (status, body) = post_ndjson(&agg.url("/logs"), &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        sent.extend(batch);
    }
    let stored = all_logs(&agg.base, &[]).await;
    assert_eq!(stored.len(), sent.len());
    agg.process.signal(libc::SIGTERM);
    let status = agg.process.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{}", agg.process.stderr());

    let segments = dir.path().join("store/segments");
    let out = Command::new(&py)
        .args(["-c", READ_SEGMENTS])
        .arg(&segments)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = 0;
    let mut bodies = BTreeSet::new();
    let mut rows = 0;
    let mut opaque = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(schema) = v.get("schema") {
            files += 1;
            assert_eq!(
                schema,
                &json!({"id": "int64", "ts": "timestamp[us, tz=UTC]", "service": "string",
                        "level": "string", "event_id": "string", "message": "string",
                        "body": "string", "request_key": "fixed_size_binary[2]"}),
            );
            assert_eq!(v["sorted"], true, "{}", v["file"]);
            continue;
        }
        let row = &v["row"];
        rows += 1;
        let body: Value = serde_json::from_str(row["body"].as_str().unwrap()).unwrap();
        // A structured id is read from the body (the footer holds its ranges); any
        // other id is in the column too.
        let id = &body["event_id"];
        let structured = id.as_str().and_then(StreamSpan::parse).is_some();
        let want = if structured { Value::Null } else { id.clone() };
        assert_eq!(row["event_id"], want);
        opaque += usize::from(!structured);
        assert_eq!(row["message"], body["message"]);
        assert_eq!(
            row["service"],
            body.get("service").cloned().unwrap_or(Value::Null)
        );
        let ts = chrono::DateTime::parse_from_rfc3339(row["ts"].as_str().unwrap()).unwrap();
        let want =
            chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(ts, want);
        // Two bytes of the hash of the record's request id.
        let key = body["request_id"]
            .as_str()
            .map(|r| hex(&request_fingerprint(key_hash(r.as_bytes()))));
        assert_eq!(row["request_key"], json!(key));
        bodies.insert(body.to_string());
    }
    assert!(files >= 2, "small flushes made several segments: {files}");
    assert_eq!(rows, sent.len());
    assert_eq!(opaque, sent.len().div_ceil(6));
    let want: BTreeSet<String> = stored.iter().map(Value::to_string).collect();
    assert_eq!(
        bodies, want,
        "pyarrow reads the very records GET /logs returns"
    );
}
