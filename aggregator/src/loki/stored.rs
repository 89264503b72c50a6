//! A stored record seen as a Loki entry: its stream labels, structured metadata, time in
//! nanoseconds and line.
//!
//! A pushed entry carries the `loki` descriptor (see [`super::entry`]) and comes back
//! exactly as it was pushed. Any other record (what the sidecars send to `POST /logs`)
//! is a stream labelled by its `service`, `level`, `environment` and
//! `sidecar_forwarded_by` fields, whose line is the stored JSON object itself.
//!
//! One pass over the body reads only these fields; everything else is skipped.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::entry::{Identity, DESCRIPTOR};

/// The fields of our own records that are their stream labels, in name order.
pub const NATIVE_LABELS: [&str; 4] = ["environment", "level", "service", "sidecar_forwarded_by"];

/// A record as a Loki entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View<'a> {
    pub ts_ns: i64,
    /// Sorted by name.
    pub labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub metadata: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub line: Cow<'a, str>,
}

impl<'a> View<'a> {
    /// Reads a stored body; `ts_us` is the record's stored time, used for records that
    /// were not pushed through the Loki API. `None` only for a body that is not a JSON
    /// object, which the store never holds.
    pub fn of(body: &'a str, ts_us: i64) -> Option<View<'a>> {
        let top: Top<'a> = serde_json::from_str(body).ok()?;
        if let Some(d) = top.descriptor {
            let line = match d.json_line_bytes {
                Some(n) if n >= 2 && n <= body.len() && body.is_char_boundary(n - 1) => {
                    let mut l = String::with_capacity(n);
                    l.push_str(&body[..n - 1]);
                    l.push('}');
                    Cow::Owned(l)
                }
                Some(_) => return None,
                None => top.message.unwrap_or(Cow::Borrowed("")),
            };
            return Some(View {
                ts_ns: d.ts_ns,
                labels: d.stream,
                metadata: d.metadata,
                line,
            });
        }
        let mut labels = Vec::with_capacity(4);
        for (name, value) in NATIVE_LABELS.into_iter().zip(top.native) {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                labels.push((Cow::Borrowed(name), v));
            }
        }
        Some(View {
            ts_ns: ts_us.saturating_mul(1000),
            labels,
            metadata: Vec::new(),
            line: Cow::Borrowed(body),
        })
    }

    /// What deduplication compares.
    pub fn identity(self) -> Identity<'a> {
        Identity {
            labels: self.labels,
            ts_ns: self.ts_ns,
            line: self.line,
        }
    }

    /// Whether the record came through the Loki push API.
    pub fn pushed(body: &str) -> bool {
        body.contains("\"loki\":{\"ts\":")
    }
}

#[derive(Default)]
struct Top<'a> {
    /// In [`NATIVE_LABELS`] order.
    native: [Option<Cow<'a, str>>; 4],
    message: Option<Cow<'a, str>>,
    descriptor: Option<Descriptor<'a>>,
}

struct Descriptor<'a> {
    ts_ns: i64,
    stream: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    metadata: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    json_line_bytes: Option<usize>,
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Top<'de>, M::Error> {
        let mut top = Top::default();
        while let Some(key) = map.next_key::<Key<'de>>()?.map(|k| k.0) {
            if let Some(i) = NATIVE_LABELS.iter().position(|n| *n == key) {
                top.native[i] = map.next_value::<Scalar<'de>>()?.0;
            } else if key == "message" {
                top.message = map.next_value::<Scalar<'de>>()?.0;
            } else if key == DESCRIPTOR {
                // A record that merely has a field of that name is not a pushed one.
                top.descriptor = map.next_value::<MaybeDescriptor<'de>>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(top)
    }
}

struct MaybeDescriptor<'a>(Option<Descriptor<'a>>);

impl<'de> Deserialize<'de> for MaybeDescriptor<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DescriptorVisitor)
    }
}

struct DescriptorVisitor;

impl<'de> Visitor<'de> for DescriptorVisitor {
    type Value = MaybeDescriptor<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let (mut ts, mut stream, mut metadata, mut bytes) = (None, None, Vec::new(), None);
        while let Some(key) = map.next_key::<Key<'de>>()?.map(|k| k.0) {
            match key.as_ref() {
                "ts" => {
                    ts = map
                        .next_value::<Scalar<'de>>()?
                        .0
                        .and_then(|t| t.parse::<i64>().ok())
                }
                "stream" => stream = Some(map.next_value::<Pairs<'de>>()?.0),
                "metadata" => metadata = map.next_value::<Pairs<'de>>()?.0,
                "json_line_bytes" => {
                    bytes = map
                        .next_value::<Scalar<'de>>()?
                        .0
                        .and_then(|t| t.parse::<usize>().ok())
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(MaybeDescriptor(match (ts, stream) {
            (Some(ts_ns), Some(mut stream)) => {
                stream.sort_by(|a, b| a.0.cmp(&b.0));
                Some(Descriptor {
                    ts_ns,
                    stream,
                    metadata,
                    json_line_bytes: bytes,
                })
            }
            _ => None,
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeDescriptor(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(MaybeDescriptor(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(MaybeDescriptor(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(MaybeDescriptor(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MaybeDescriptor(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeDescriptor(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(MaybeDescriptor(None))
    }
}

/// An object's string-valued members, in order; other values are skipped.
struct Pairs<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de> Deserialize<'de> for Pairs<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PairsVisitor)
    }
}

struct PairsVisitor;

impl<'de> Visitor<'de> for PairsVisitor {
    type Value = Pairs<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of strings")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Pairs<'de>, M::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()?.map(|k| k.0) {
            if let Some(v) = map.next_value::<Scalar<'de>>()?.0 {
                out.push((key, v));
            }
        }
        Ok(Pairs(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pairs<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Pairs(Vec::new()))
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
pub struct Key<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ScalarVisitor).and_then(|s| {
            s.0.map(Key)
                .ok_or_else(|| de::Error::custom("expected a string"))
        })
    }
}

/// A value as text: strings as they are (borrowed when unescaped), numbers and booleans
/// written out; `null`, arrays and objects as absent.
pub struct Scalar<'a>(pub Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Some(Cow::Borrowed(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Some(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Some(Cow::Owned(v))))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Some(Cow::Owned(v.to_string()))))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Some(Cow::Owned(v.to_string()))))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Some(Cow::Owned(v.to_string()))))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Some(Cow::Owned(v.to_string()))))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loki::entry::{to_record, PushEntry, PushStream};
    use crate::record::{self, Received};

    fn pushed(line: &str, metadata: &[(&str, &str)]) -> (PushStream, String) {
        let s = PushStream {
            labels: vec![("app".into(), "shop".into()), ("env".into(), "prod".into())],
            entries: vec![PushEntry {
                ts_ns: -5_000_000_001,
                line: line.into(),
                metadata: metadata
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            }],
        };
        let body = to_record(&s.prepare(), &s.entries[0], &Received::now(), 0).body;
        (s, body)
    }

    #[test]
    fn pushed_entries_come_back_exactly() {
        for line in [
            "plain \"quoted\" text\twith tab and é",
            r#"{"a":1,"message":"m"}"#,
            r#"{"nested":{"loki":2}, "app":"x" }"#,
            "{}",
            "",
        ] {
            let (s, body) = pushed(line, &[("trace_id", "t1")]);
            assert!(View::pushed(&body), "{body}");
            let v = View::of(&body, 0).unwrap_or_else(|| panic!("{body}"));
            assert_eq!(v.line, line, "{body}");
            assert_eq!(v.ts_ns, -5_000_000_001);
            let labels: Vec<(String, String)> = v
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(labels, s.labels);
            assert_eq!(
                v.metadata,
                vec![(Cow::Borrowed("trace_id"), Cow::Borrowed("t1"))]
            );
        }
    }

    #[test]
    fn our_own_records_are_streams_of_their_fields() {
        let text = r#"{"service":"user-service","level":"INFO","message":"hi","environment":"dev","status":200,"loki":"not ours"}"#;
        let r = record::parse(text, &Received::now()).unwrap();
        let v = View::of(&r.body, 7).unwrap();
        assert_eq!(v.ts_ns, 7000);
        assert_eq!(v.line, r.body);
        let names: Vec<&str> = v.labels.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(names, ["environment", "level", "service"]);
        assert!(!View::pushed(&r.body));
        assert_eq!(View::of("[1]", 0), None);
    }
}
