//! Loki wire formats written by hand for the tests, independent of the aggregator's own
//! decoder: protobuf bytes field by field from the schema (`pkg/push/push.proto`),
//! snappy from the `snap` crate, JSON from `serde_json`.

#![allow(dead_code)]

use std::io::Write;

use awc::http::StatusCode;
use serde_json::Value;

use super::client;

/// One entry: nanoseconds, line, structured metadata.
pub type Entry<'a> = (i64, &'a str, &'a [(&'a str, &'a str)]);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2).
fn bytes_field(out: &mut Vec<u8>, tag: u64, bytes: &[u8]) {
    varint(out, (tag << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A varint field (wire type 0).
fn varint_field(out: &mut Vec<u8>, tag: u64, v: u64) {
    varint(out, tag << 3);
    varint(out, v);
}

/// `logproto.PushRequest` bytes: streams of (label string, entries).
pub fn push_request(streams: &[(&str, &[Entry<'_>])]) -> Vec<u8> {
    let mut req = Vec::new();
    for (labels, entries) in streams {
        let mut stream = Vec::new();
        bytes_field(&mut stream, 1, labels.as_bytes());
        for (ts, line, metadata) in *entries {
            let mut entry = Vec::new();
            let mut timestamp = Vec::new();
            varint_field(&mut timestamp, 1, ts.div_euclid(1_000_000_000) as u64);
            varint_field(&mut timestamp, 2, ts.rem_euclid(1_000_000_000) as u64);
            bytes_field(&mut entry, 1, &timestamp);
            bytes_field(&mut entry, 2, line.as_bytes());
            for (k, v) in *metadata {
                let mut pair = Vec::new();
                bytes_field(&mut pair, 1, k.as_bytes());
                bytes_field(&mut pair, 2, v.as_bytes());
                bytes_field(&mut entry, 3, &pair);
            }
            bytes_field(&mut stream, 2, &entry);
        }
        // The client's label hash (field 3), which the aggregator ignores.
        varint_field(&mut stream, 3, 0xdead_beef);
        bytes_field(&mut req, 1, &stream);
    }
    req
}

pub fn snappy(data: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(data)
        .expect("snappy")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// The JSON push body of Loki's documentation.
pub fn json_push(streams: &[(Value, &[Entry<'_>])]) -> String {
    let streams: Vec<Value> = streams
        .iter()
        .map(|(labels, entries)| {
            let values: Vec<Value> = entries
                .iter()
                .map(|(ts, line, metadata)| {
                    if metadata.is_empty() {
                        serde_json::json!([ts.to_string(), line])
                    } else {
                        let m: serde_json::Map<String, Value> = metadata
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                            .collect();
                        serde_json::json!([ts.to_string(), line, m])
                    }
                })
                .collect();
            serde_json::json!({"stream": labels, "values": values})
        })
        .collect();
    serde_json::json!({ "streams": streams }).to_string()
}

/// Sends a body; the status and the answer as text.
pub async fn send(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, String) {
    let mut req = client().post(url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req.send_body(body).await.expect("answered");
    let status = res.status();
    let bytes = res.body().limit(64 << 20).await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// GETs a Loki endpoint with `params` URL-encoded; status, and JSON (or the text).
pub async fn query(
    base: &str,
    path: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (StatusCode, Value, String) {
    let qs: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let url = format!("{base}{path}?{}", qs.join("&"));
    let mut req = client().get(&url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req.send().await.expect("answered");
    let status = res.status();
    let bytes = res.body().limit(64 << 20).await.expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

/// Percent-encoding of a query-string component.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
