//! A `POST /loki/api/v1/push` body into streams of entries, or a precise reason why not.
//!
//! Two encodings, as Loki takes them: protobuf compressed with snappy's block format
//! (`Content-Type: application/x-protobuf`, or none: Promtail's, Alloy's and Vector's
//! default) and JSON (`application/json`, `{"streams":[{"stream":{...},"values":[["<ns>",
//! "<line>", {metadata}]]}]}`). A `Content-Encoding` of gzip or deflate is undone first.
//! Every size is bounded before memory is given to it: the snappy header's length is
//! checked against the limit before decompressing.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

use prost::Message;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::entry::{PushEntry, PushStream};
use super::labels::{self, LabelError};
use super::proto;
use super::stored::Key;

/// How the body is encoded, from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// A compression applied to the whole body, from `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Deflate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("unsupported Content-Type {0:?}: send application/x-protobuf (snappy-compressed) or application/json")]
    ContentType(String),
    #[error("unsupported Content-Encoding {0:?}: send gzip, deflate, snappy (protobuf) or none")]
    ContentEncoding(String),
    #[error("request body exceeds the limit of {0} bytes once decompressed")]
    TooLarge(usize),
    #[error("invalid {0} body: {1}")]
    Compression(&'static str, String),
    #[error("invalid snappy body: {0}")]
    Snappy(String),
    #[error("invalid protobuf PushRequest: {0}")]
    Protobuf(String),
    #[error("invalid JSON push: {0}")]
    Json(String),
    #[error("stream {index}: {error}")]
    Labels { index: usize, error: LabelError },
    #[error("stream {stream}, entry {entry}: {reason}")]
    Entry {
        stream: usize,
        entry: usize,
        reason: String,
    },
}

impl PushError {
    /// The label of `aggregator_requests_rejected_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            PushError::ContentType(_) => "content_type",
            PushError::ContentEncoding(_) => "content_encoding",
            PushError::TooLarge(_) => "too_large",
            PushError::Compression(..) | PushError::Snappy(_) => "gzip",
            PushError::Protobuf(_) => "protobuf",
            PushError::Json(_) | PushError::Labels { .. } | PushError::Entry { .. } => "json",
        }
    }

    /// 415 for the framing, 413 for the size, 400 for the content.
    pub fn status(&self) -> u16 {
        match self {
            PushError::ContentType(_) | PushError::ContentEncoding(_) => 415,
            PushError::TooLarge(_) => 413,
            _ => 400,
        }
    }
}

pub fn encoding_of(content_type: Option<&str>) -> Result<Encoding, PushError> {
    let raw = content_type.unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        ""
        | "application/x-protobuf"
        | "application/protobuf"
        | "application/vnd.google.protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(PushError::ContentType(raw.to_owned())),
    }
}

pub fn compression_of(content_encoding: Option<&str>) -> Result<Compression, PushError> {
    match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") | Some("snappy") => Ok(Compression::None),
        Some("gzip") | Some("x-gzip") => Ok(Compression::Gzip),
        Some("deflate") => Ok(Compression::Deflate),
        Some(other) => Err(PushError::ContentEncoding(other.to_owned())),
    }
}

/// Undoes a `Content-Encoding`, refusing more than `limit` bytes.
pub fn decompress(
    body: &[u8],
    compression: Compression,
    limit: usize,
) -> Result<Cow<'_, [u8]>, PushError> {
    let mut out = Vec::new();
    let read = match compression {
        Compression::None => return Ok(Cow::Borrowed(body)),
        Compression::Gzip => flate2::read::MultiGzDecoder::new(body)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| PushError::Compression("gzip", e.to_string())),
        Compression::Deflate => flate2::read::ZlibDecoder::new(body)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .or_else(|_| {
                out.clear();
                flate2::read::DeflateDecoder::new(body)
                    .take(limit as u64 + 1)
                    .read_to_end(&mut out)
            })
            .map_err(|e| PushError::Compression("deflate", e.to_string())),
    };
    read?;
    if out.len() > limit {
        return Err(PushError::TooLarge(limit));
    }
    Ok(Cow::Owned(out))
}

/// Decodes a (decompressed) body.
pub fn decode(body: &[u8], encoding: Encoding, limit: usize) -> Result<Vec<PushStream>, PushError> {
    match encoding {
        Encoding::Protobuf => decode_protobuf(body, limit),
        Encoding::Json => decode_json(body),
    }
}

fn decode_protobuf(body: &[u8], limit: usize) -> Result<Vec<PushStream>, PushError> {
    let len = snap::raw::decompress_len(body).map_err(|e| PushError::Snappy(e.to_string()))?;
    if len > limit {
        return Err(PushError::TooLarge(limit));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| PushError::Snappy(e.to_string()))?;
    let req = proto::PushRequest::decode(raw.as_slice())
        .map_err(|e| PushError::Protobuf(e.to_string()))?;
    drop(raw);
    let mut streams = Vec::with_capacity(req.streams.len());
    for (index, s) in req.streams.into_iter().enumerate() {
        let labels =
            labels::parse(&text(s.labels)).map_err(|error| PushError::Labels { index, error })?;
        let mut entries = Vec::with_capacity(s.entries.len());
        for (entry, e) in s.entries.into_iter().enumerate() {
            let ts = e.timestamp.unwrap_or_default();
            let ts_ns = ts
                .seconds
                .checked_mul(1_000_000_000)
                .and_then(|n| n.checked_add(i64::from(ts.nanos)))
                .ok_or_else(|| PushError::Entry {
                    stream: index,
                    entry,
                    reason: format!("timestamp {}s {}ns is out of range", ts.seconds, ts.nanos),
                })?;
            entries.push(PushEntry {
                ts_ns,
                line: text(e.line),
                metadata: e
                    .structured_metadata
                    .into_iter()
                    .map(|p| (text(p.name), text(p.value)))
                    .filter(|(k, _)| !k.is_empty())
                    .collect(),
            });
        }
        streams.push(PushStream { labels, entries });
    }
    Ok(streams)
}

/// Bytes as text, invalid UTF-8 replaced (never dropped).
fn text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

#[derive(Deserialize)]
struct JsonPush<'a> {
    #[serde(borrow)]
    streams: Vec<JsonStream<'a>>,
}

#[derive(Deserialize)]
struct JsonStream<'a> {
    #[serde(borrow)]
    stream: Option<Vec2<'a>>,
    #[serde(borrow)]
    values: Option<Vec<JsonEntry<'a>>>,
}

/// An object of strings as pairs, in order.
#[derive(Default)]
struct Vec2<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Vec2<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec2<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Vec2<'de>, M::Error> {
                let mut out = Vec::new();
                while let Some((Key(k), Key(v))) = map.next_entry::<Key<'de>, Key<'de>>()? {
                    out.push((k, v));
                }
                Ok(Vec2(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `["<ns>", "<line>"]` or `["<ns>", "<line>", {metadata}]`.
struct JsonEntry<'a> {
    ts: Cow<'a, str>,
    line: Cow<'a, str>,
    metadata: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonEntry<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonEntry<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an entry [\"<unix epoch in nanoseconds>\", \"<log line>\", {optional metadata}]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonEntry<'de>, A::Error> {
                let Key(ts) = seq
                    .next_element::<Key<'de>>()?
                    .ok_or_else(|| de::Error::custom("an entry needs a timestamp string"))?;
                let Key(line) = seq
                    .next_element::<Key<'de>>()?
                    .ok_or_else(|| de::Error::custom("an entry needs a log line"))?;
                let metadata = seq
                    .next_element::<Vec2<'de>>()?
                    .map(|m| m.0)
                    .unwrap_or_default();
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("an entry has at most 3 elements"));
                }
                Ok(JsonEntry { ts, line, metadata })
            }
        }
        d.deserialize_seq(V)
    }
}

fn decode_json(body: &[u8]) -> Result<Vec<PushStream>, PushError> {
    let push: JsonPush<'_> =
        serde_json::from_slice(body).map_err(|e| PushError::Json(e.to_string()))?;
    let mut streams = Vec::with_capacity(push.streams.len());
    for (index, s) in push.streams.into_iter().enumerate() {
        let pairs = s
            .stream
            .unwrap_or_default()
            .0
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let labels =
            labels::normalize(pairs).map_err(|error| PushError::Labels { index, error })?;
        let values = s.values.unwrap_or_default();
        let mut entries = Vec::with_capacity(values.len());
        for (entry, e) in values.into_iter().enumerate() {
            let ts_ns = e.ts.trim().parse::<i64>().map_err(|_| PushError::Entry {
                stream: index,
                entry,
                reason: format!("timestamp {:?} is not a Unix time in nanoseconds", e.ts),
            })?;
            entries.push(PushEntry {
                ts_ns,
                line: e.line.into_owned(),
                metadata: e
                    .metadata
                    .into_iter()
                    .filter(|(k, _)| !k.is_empty())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            });
        }
        streams.push(PushStream { labels, entries });
    }
    Ok(streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snappy(data: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(data).unwrap()
    }

    fn request() -> proto::PushRequest {
        proto::PushRequest {
            streams: vec![proto::StreamAdapter {
                labels: br#"{job="api", env="prod"}"#.to_vec(),
                entries: vec![
                    proto::EntryAdapter {
                        timestamp: Some(proto::Timestamp {
                            seconds: 1_700_000_000,
                            nanos: 5,
                        }),
                        line: b"hello \xff world".to_vec(),
                        structured_metadata: vec![proto::LabelPairAdapter {
                            name: b"trace_id".to_vec(),
                            value: b"abc".to_vec(),
                        }],
                        parsed: vec![],
                    },
                    proto::EntryAdapter {
                        timestamp: None,
                        line: b"second".to_vec(),
                        structured_metadata: vec![],
                        parsed: vec![],
                    },
                ],
                hash: 0,
            }],
            format: vec![],
        }
    }

    #[test]
    fn protobuf_with_snappy() {
        let body = snappy(&request().encode_to_vec());
        let streams = decode(&body, Encoding::Protobuf, 1 << 20).unwrap();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].labels[0], ("env".to_owned(), "prod".to_owned()));
        let e = &streams[0].entries;
        assert_eq!(e[0].ts_ns, 1_700_000_000_000_000_005);
        assert_eq!(e[0].line, "hello \u{fffd} world");
        assert_eq!(
            e[0].metadata,
            vec![("trace_id".to_owned(), "abc".to_owned())]
        );
        assert_eq!(e[1].ts_ns, 0);
        // Declared too large: refused before decompressing.
        assert_eq!(
            decode(&body, Encoding::Protobuf, 10),
            Err(PushError::TooLarge(10))
        );
        assert!(matches!(
            decode(b"\x05abc", Encoding::Protobuf, 100),
            Err(PushError::Snappy(_))
        ));
        assert!(matches!(
            decode(&snappy(b"\x0a\x05\xff"), Encoding::Protobuf, 100),
            Err(PushError::Protobuf(_))
        ));
        let mut bad = request();
        bad.streams[0].labels = b"{job=api}".to_vec();
        assert!(matches!(
            decode(&snappy(&bad.encode_to_vec()), Encoding::Protobuf, 1 << 20),
            Err(PushError::Labels { index: 0, .. })
        ));
    }

    #[test]
    fn json_push() {
        let body = br#"{"streams":[{"stream":{"job":"api"},"values":[["1570818238000000000","fizz\"buzz"],["2","x",{"trace_id":"t"}]]}]}"#;
        let streams = decode(body, Encoding::Json, 1 << 20).unwrap();
        let e = &streams[0].entries;
        assert_eq!(
            (e[0].ts_ns, e[0].line.as_str()),
            (1_570_818_238_000_000_000, "fizz\"buzz")
        );
        assert_eq!(e[1].metadata, vec![("trace_id".to_owned(), "t".to_owned())]);
        for (bad, want) in [
            (
                r#"{"streams":[{"stream":{},"values":[["1","x"]]}]}"#,
                "at least one label pair",
            ),
            (
                r#"{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}"#,
                "invalid JSON push",
            ),
            (
                r#"{"streams":[{"stream":{"a":"b"},"values":[["x1","x"]]}]}"#,
                "not a Unix time",
            ),
            (
                r#"{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}"#,
                "needs a log line",
            ),
            (
                r#"{"streams":[{"stream":{"a-b":"c"},"values":[]}]}"#,
                "invalid label name",
            ),
            ("[]", "invalid JSON push"),
        ] {
            let err = decode(bad.as_bytes(), Encoding::Json, 1 << 20)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn framing_headers() {
        assert_eq!(encoding_of(None), Ok(Encoding::Protobuf));
        assert_eq!(
            encoding_of(Some("application/json; charset=utf-8")),
            Ok(Encoding::Json)
        );
        assert!(encoding_of(Some("text/plain")).is_err());
        assert_eq!(compression_of(Some("snappy")), Ok(Compression::None));
        assert_eq!(compression_of(Some("gzip")), Ok(Compression::Gzip));
        assert!(compression_of(Some("br")).is_err());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &[b'a'; 1000]).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decompress(&gz, Compression::Gzip, 1000).unwrap().len(),
            1000
        );
        assert_eq!(
            decompress(&gz, Compression::Gzip, 999),
            Err(PushError::TooLarge(999))
        );
    }
}
