//! A pushed Loki entry turned into a record of our own, and its idempotency key.
//!
//! A line that is a JSON object is stored as our own records are: the object's text,
//! byte for byte, with fields spliced in before its closing brace (the entry's
//! `timestamp` when the line has none, the stream labels and structured metadata it does
//! not already have, and the `loki` descriptor). Any other line is stored as
//! `{"timestamp", labels..., metadata..., "message": <line>, "loki": {...}}`.
//!
//! The `loki` descriptor keeps what a Loki query needs back exactly: the timestamp in
//! nanoseconds (`ts`), the stream labels (`stream`), the structured metadata
//! (`metadata`), and for a spliced JSON line its length (`json_line_bytes`), so that the
//! line is the body's first `json_line_bytes - 1` bytes and a `}`.

use chrono::{DateTime, SecondsFormat};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

use super::labels::LabelSet;
use crate::record::{Received, Record, RECEIVED_AT};

/// The descriptor's field name in a stored body.
pub const DESCRIPTOR: &str = "loki";
/// Top-level names a label or metadata never takes in the body (it stays in the
/// descriptor): they are the record's own.
const RESERVED: [&str; 5] = ["timestamp", "message", DESCRIPTOR, RECEIVED_AT, "event_id"];
/// A key collision is retried under a new suffix at most this many times.
pub const MAX_ID_ATTEMPTS: u32 = 8;

/// One entry of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEntry {
    pub ts_ns: i64,
    pub line: String,
    /// Structured metadata, in the order sent.
    pub metadata: Vec<(String, String)>,
}

/// A stream of a push: its labels and entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStream {
    pub labels: LabelSet,
    pub entries: Vec<PushEntry>,
}

/// What makes two Loki entries the same entry: the stream, the time and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity<'a> {
    pub labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub ts_ns: i64,
    pub line: Cow<'a, str>,
}

/// The `event_id` of an entry: `loki:<ts hex>:<hash hex>`, plus `#<attempt>` after a
/// collision, where the hash is xxh3 (64 bits) of the line seeded with the xxh3 of the
/// stream's labels. The time comes first so that the ids of a stream grow in time
/// order, which keeps the store's unique index appended to. A hash can collide; the
/// push handler compares the stored entry whenever an id is reported as a duplicate, and
/// retries a true collision under the next attempt, so an id never merges two different
/// entries (see docs/loki.md).
pub fn event_id(labels: &LabelSet, ts_ns: i64, line: &str, attempt: u32) -> String {
    seeded_id(stream_seed(labels), ts_ns, line, attempt)
}

/// The hash of a stream's labels, in an encoding where no two label sets give the same
/// bytes (every part is preceded by its length).
fn stream_seed(labels: &LabelSet) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(labels.len() as u64).to_le_bytes());
    for (k, v) in labels {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    h.digest()
}

fn seeded_id(seed: u64, ts_ns: i64, line: &str, attempt: u32) -> String {
    let hash = xxhash_rust::xxh3::xxh3_64_with_seed(line.as_bytes(), seed);
    let mut id = String::with_capacity(48);
    id.push_str("loki:");
    push_hex(&mut id, ts_ns as u64);
    id.push(':');
    push_hex(&mut id, hash);
    if attempt > 0 {
        id.push('#');
        id.push_str(&attempt.to_string());
    }
    id
}

/// 16 lowercase hex digits; `format!("{:016x}")` costs several times more, per entry.
fn push_hex(out: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(DIGITS[((v >> (shift * 4)) & 0xf) as usize] as char);
    }
}

/// What every entry of a stream shares, worked out once per stream: the hash seed of
/// its labels, each label as a JSON member, and the descriptor's `stream` object.
pub struct Prepared<'s> {
    stream: &'s PushStream,
    seed: u64,
    /// `"name":"value"` of each label, in label order.
    members: Vec<Vec<u8>>,
    /// `{"name":"value",...}`.
    object: Vec<u8>,
}

impl PushStream {
    pub fn prepare(&self) -> Prepared<'_> {
        let members: Vec<Vec<u8>> = self
            .labels
            .iter()
            .map(|(k, v)| {
                let mut m = Vec::with_capacity(k.len() + v.len() + 6);
                push_str(&mut m, k);
                m.push(b':');
                push_str(&mut m, v);
                m
            })
            .collect();
        let mut object = vec![b'{'];
        object.extend_from_slice(&members.join(&b","[..]));
        object.push(b'}');
        Prepared {
            stream: self,
            seed: stream_seed(&self.labels),
            members,
            object,
        }
    }
}

impl Prepared<'_> {
    /// The `event_id` of one of the stream's entries under `attempt`.
    pub fn event_id(&self, entry: &PushEntry, attempt: u32) -> String {
        seeded_id(self.seed, entry.ts_ns, &entry.line, attempt)
    }
}

/// The record for one entry of a prepared stream, under the id of `attempt`.
pub fn to_record(
    prepared: &Prepared<'_>,
    entry: &PushEntry,
    received: &Received,
    attempt: u32,
) -> Record {
    let stream = prepared.stream;
    let fields = json_fields(&entry.line);
    let spliced = fields.as_ref().is_some_and(|f| !f.reserved_key);
    let mut out: Vec<u8> = Vec::with_capacity(entry.line.len() + prepared.object.len() * 2 + 160);
    let has = |k: &str| {
        fields
            .as_ref()
            .is_some_and(|f| f.keys.iter().any(|x| x == k))
    };
    let mut first = true;
    if spliced {
        let inner = &entry.line[..entry.line.len() - 1];
        out.extend_from_slice(inner.as_bytes());
        first = inner[1..].trim().is_empty();
    } else {
        out.push(b'{');
    }
    let mut comma = |out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
    };
    if !(spliced && has("timestamp")) {
        comma(&mut out);
        let ts =
            DateTime::from_timestamp_nanos(entry.ts_ns).to_rfc3339_opts(SecondsFormat::Nanos, true);
        out.extend_from_slice(b"\"timestamp\":\"");
        out.extend_from_slice(ts.as_bytes());
        out.push(b'"');
    }
    let free = |k: &str| !(RESERVED.contains(&k) || spliced && has(k));
    for ((k, _), member) in stream.labels.iter().zip(&prepared.members) {
        if free(k) {
            comma(&mut out);
            out.extend_from_slice(member);
        }
    }
    for (k, v) in &entry.metadata {
        if free(k) && !stream.labels.iter().any(|(l, _)| l == k) {
            comma(&mut out);
            push_str(&mut out, k);
            out.push(b':');
            push_str(&mut out, v);
        }
    }
    if !spliced {
        comma(&mut out);
        out.extend_from_slice(b"\"message\":");
        push_str(&mut out, &entry.line);
    }
    // The descriptor.
    comma(&mut out);
    out.extend_from_slice(b"\"");
    out.extend_from_slice(DESCRIPTOR.as_bytes());
    out.extend_from_slice(b"\":{\"ts\":\"");
    out.extend_from_slice(entry.ts_ns.to_string().as_bytes());
    out.extend_from_slice(b"\",\"stream\":");
    out.extend_from_slice(&prepared.object);
    if !entry.metadata.is_empty() {
        out.extend_from_slice(b",\"metadata\":");
        push_map(
            &mut out,
            entry.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
    }
    if spliced {
        out.extend_from_slice(b",\"json_line_bytes\":");
        out.extend_from_slice(entry.line.len().to_string().as_bytes());
    }
    out.extend_from_slice(b"},\"");
    out.extend_from_slice(RECEIVED_AT.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(received.quoted().as_bytes());
    out.push(b'}');
    // Every piece is UTF-8: the line and labels are strings, the rest is ASCII.
    let body = String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());

    let pick = |name: &str, from_line: Option<&Cow<'_, str>>| -> Option<String> {
        stream
            .labels
            .iter()
            .chain(entry.metadata.iter())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| from_line.map(|v| v.to_string()))
    };
    let f = fields.as_ref();
    let message = match f {
        Some(f) => Some(
            f.message
                .as_ref()
                .map_or_else(|| entry.line.clone(), |m| m.to_string()),
        ),
        None => Some(entry.line.clone()),
    };
    Record {
        event_id: Some(prepared.event_id(entry, attempt)),
        service: pick("service", f.and_then(|f| f.service.as_ref())),
        level: pick("level", f.and_then(|f| f.level.as_ref())).map(|l| l.to_ascii_uppercase()),
        request_id: pick("request_id", f.and_then(|f| f.request_id.as_ref())),
        message,
        ts_us: entry.ts_ns.div_euclid(1000),
        body,
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a string into a Vec cannot fail.
    let _ = s.serialize(&mut serde_json::Serializer::new(out));
}

fn push_map<'a>(out: &mut Vec<u8>, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push(b'{');
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, k);
        out.push(b':');
        push_str(out, v);
    }
    out.push(b'}');
}

/// What the record needs from a line that is a JSON object; `None` for any other line.
#[derive(Default)]
struct LineFields<'a> {
    keys: Vec<Cow<'a, str>>,
    service: Option<Cow<'a, str>>,
    level: Option<Cow<'a, str>>,
    request_id: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
    /// The line has a key the body reserves (`loki`, `aggregator_received_at`): it is
    /// then stored as text, so nothing of it is lost or shadowed.
    reserved_key: bool,
}

fn json_fields(line: &str) -> Option<LineFields<'_>> {
    // Exactly an object: no whitespace outside the braces, so the splice is exact.
    if !(line.starts_with('{') && line.ends_with('}')) {
        return None;
    }
    serde_json::from_str::<LineFields<'_>>(line).ok()
}

impl<'de> Deserialize<'de> for LineFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(LineVisitor)
    }
}

struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = LineFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<LineFields<'de>, M::Error> {
        let mut f = LineFields::default();
        while let Some(key) = map.next_key::<super::stored::Key<'de>>()?.map(|k| k.0) {
            let slot = match key.as_ref() {
                "service" => Some(&mut f.service),
                "level" => Some(&mut f.level),
                "request_id" => Some(&mut f.request_id),
                "message" => Some(&mut f.message),
                DESCRIPTOR | RECEIVED_AT => {
                    f.reserved_key = true;
                    None
                }
                _ => None,
            };
            match slot {
                Some(slot) => *slot = map.next_value::<super::stored::Scalar<'de>>()?.0,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            f.keys.push(key);
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn stream(line: &str, metadata: &[(&str, &str)]) -> PushStream {
        PushStream {
            labels: vec![
                ("job".into(), "api".into()),
                ("level".into(), "warn".into()),
                ("service".into(), "checkout".into()),
            ],
            entries: vec![PushEntry {
                ts_ns: 1_714_557_600_123_456_789,
                line: line.into(),
                metadata: metadata
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            }],
        }
    }

    fn received() -> Received {
        Received::at(DateTime::from_timestamp(1_714_557_700, 0).unwrap())
    }

    #[test]
    fn a_text_line_becomes_message() {
        let s = stream(
            "GET /cart 500 \"oops\"",
            &[("trace_id", "abc"), ("job", "shadowed")],
        );
        let r = to_record(&s.prepare(), &s.entries[0], &received(), 0);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["message"], "GET /cart 500 \"oops\"");
        assert_eq!(body["timestamp"], "2024-05-01T10:00:00.123456789Z");
        assert_eq!(body["job"], "api");
        assert_eq!(body["trace_id"], "abc");
        assert_eq!(body["loki"]["ts"], "1714557600123456789");
        assert_eq!(
            body["loki"]["stream"],
            json!({"job": "api", "level": "warn", "service": "checkout"})
        );
        assert_eq!(
            body["loki"]["metadata"],
            json!({"trace_id": "abc", "job": "shadowed"})
        );
        assert_eq!(
            body["aggregator_received_at"],
            "2024-05-01T10:01:40.000000Z"
        );
        assert_eq!(r.service.as_deref(), Some("checkout"));
        assert_eq!(r.level.as_deref(), Some("WARN"));
        assert_eq!(r.ts_us, 1_714_557_600_123_456);
        assert_eq!(r.message.as_deref(), Some("GET /cart 500 \"oops\""));
        assert!(r
            .event_id
            .unwrap()
            .starts_with(&format!("loki:{:016x}:", 1_714_557_600_123_456_789u64)));
    }

    #[test]
    fn a_json_line_keeps_its_text_and_fields() {
        let line =
            r#"{"level":"error","message":"boom","status":500,"timestamp":"x","request_id":"r9"}"#;
        let s = stream(line, &[]);
        let r = to_record(&s.prepare(), &s.entries[0], &received(), 0);
        assert!(r.body.starts_with(&line[..line.len() - 1]), "{}", r.body);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["level"], "error", "the line's own field stays");
        assert_eq!(body["timestamp"], "x");
        assert_eq!(body["job"], "api");
        assert_eq!(body["status"], 500);
        assert_eq!(body["loki"]["json_line_bytes"], line.len());
        assert_eq!(
            r.level.as_deref(),
            Some("WARN"),
            "the label is what selectors see"
        );
        assert_eq!(r.message.as_deref(), Some("boom"));
        assert_eq!(r.request_id.as_deref(), Some("r9"));
        // An empty object, and one that uses a reserved key, still work.
        let s = stream("{ }", &[]);
        let body: Value =
            serde_json::from_str(&to_record(&s.prepare(), &s.entries[0], &received(), 0).body)
                .unwrap();
        assert_eq!(body["job"], "api");
        let s = stream(r#"{"loki":1}"#, &[]);
        let body: Value =
            serde_json::from_str(&to_record(&s.prepare(), &s.entries[0], &received(), 0).body)
                .unwrap();
        assert_eq!(body["message"], r#"{"loki":1}"#);
        // Not exactly an object: text.
        let s = stream(r#" {"a":1}"#, &[]);
        let body: Value =
            serde_json::from_str(&to_record(&s.prepare(), &s.entries[0], &received(), 0).body)
                .unwrap();
        assert_eq!(body["message"], r#" {"a":1}"#);
    }

    #[test]
    fn ids_depend_on_stream_time_line_and_attempt() {
        let l: LabelSet = vec![("a".into(), "b".into())];
        let id = event_id(&l, 5, "x", 0);
        assert_eq!(id, event_id(&l, 5, "x", 0));
        assert_eq!(id.len(), "loki:".len() + 16 + 1 + 16);
        assert_ne!(id, event_id(&l, 6, "x", 0));
        assert_ne!(id, event_id(&l, 5, "y", 0));
        assert_ne!(id, event_id(&vec![("a".into(), "c".into())], 5, "x", 0));
        assert_eq!(event_id(&l, 5, "x", 2), format!("{id}#2"));
        // The encoding is injective: moving bytes between a value and the line changes it.
        assert_ne!(
            event_id(&vec![("a".into(), "bx".into())], 5, "", 0),
            event_id(&vec![("a".into(), "b".into())], 5, "x", 0)
        );
    }
}
