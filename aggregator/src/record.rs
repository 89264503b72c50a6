//! One incoming log record: validated, its indexed fields pulled out, stamped.
//!
//! The original JSON text is kept (it is what `GET /logs` returns), with
//! `aggregator_received_at` spliced in before the closing brace, so the common path never
//! builds a `serde_json::Value`: the fields that queries filter on are read by a visitor
//! that skips everything else.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use shared::record_check::{
    check_record, check_record_full, scan_members, unescape, Raw, Rejection,
};

/// The field the aggregator adds to every stored record.
pub const RECEIVED_AT: &str = "aggregator_received_at";

/// A record ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The sender's idempotency key: a record whose `event_id` is stored is not stored again.
    pub event_id: Option<String>,
    pub service: Option<String>,
    /// Upper-cased, so that `level=info` and `"level":"INFO"` meet.
    pub level: Option<String>,
    pub request_id: Option<String>,
    /// The text that `q=` searches.
    pub message: Option<String>,
    /// The record's own `timestamp` (RFC 3339), or the time it was received when it has
    /// none that parses; microseconds since the Unix epoch.
    pub ts_us: i64,
    /// The original JSON object with [`RECEIVED_AT`] added.
    pub body: String,
}

/// When a batch arrived, computed once for all its records.
#[derive(Debug, Clone)]
pub struct Received {
    pub us: i64,
    /// `"2024-01-01T00:00:00.000000Z"`, quotes included, ready to splice.
    quoted: String,
}

impl Received {
    pub fn at(time: DateTime<Utc>) -> Received {
        Received {
            us: time.timestamp_micros(),
            quoted: format!("\"{}\"", time.to_rfc3339_opts(SecondsFormat::Micros, true)),
        }
    }

    pub fn now() -> Received {
        Received::at(Utc::now())
    }

    /// The time as a quoted JSON string, ready to splice.
    pub fn quoted(&self) -> &str {
        &self.quoted
    }
}

/// Why one JSON text is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("expected a JSON object, found {0}")]
    NotObject(&'static str),
    #[error("a record without a single field")]
    EmptyObject,
    #[error("event_id must be a string")]
    EventIdNotString,
}

impl From<Rejection> for RecordError {
    fn from(r: Rejection) -> RecordError {
        match r {
            Rejection::Json(m) => RecordError::Json(m),
            Rejection::NotObject(what) => RecordError::NotObject(what),
            Rejection::EmptyObject => RecordError::EmptyObject,
            Rejection::EventIdNotString => RecordError::EventIdNotString,
        }
    }
}

/// Parses one JSON object (surrounding whitespace allowed) into a [`Record`].
///
/// The rules a record must meet are [`shared::record_check`]'s, the ones the logging
/// sidecar applies before sending. A plain record is checked and read in one pass
/// (the check's scan hands over the top-level members); any other is checked whole,
/// then its indexed fields read by serde. Either way the result is [`parse_full`]'s.
pub fn parse(text: &str, received: &Received) -> Result<Record, RecordError> {
    let text = text.trim();
    let fields = match scanned(text) {
        Some(fields) => fields,
        None => checked_then_parsed(text, check_record)?,
    };
    build(text, fields, received)
}

/// [`parse`] without its one-pass scan or the check's fast path: every record checked
/// whole by serde, then its fields read. The reference that tests and the fuzz target
/// hold [`parse`] to.
pub fn parse_full(text: &str, received: &Received) -> Result<Record, RecordError> {
    let text = text.trim();
    let fields = checked_then_parsed(text, check_record_full)?;
    build(text, fields, received)
}

fn build(text: &str, fields: Fields<'_>, received: &Received) -> Result<Record, RecordError> {
    let ts_us = fields
        .timestamp
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(received.us, |t| t.timestamp_micros());
    let body = if fields.has_received_at {
        replace_received_at(text, received)?
    } else {
        splice_received_at(text, received)
    };
    Ok(Record {
        event_id: fields.event_id.map(Cow::into_owned),
        service: fields.service.map(Cow::into_owned),
        level: fields.level.map(|l| l.to_ascii_uppercase()),
        request_id: fields.request_id.map(Cow::into_owned),
        message: fields.message.map(Cow::into_owned),
        ts_us,
        body,
    })
}

/// The fields of a stored record that `GET /logs` filters on, read exactly as [`parse`]
/// read them when the record came in (level upper-cased, numbers written out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexed {
    pub service: Option<String>,
    pub level: Option<String>,
    pub request_id: Option<String>,
    pub message: Option<String>,
}

/// The indexed fields of a plain record in one pass: the shared check's scan, sure of
/// the record, hands over the top-level members as it goes. `None` when the scan is
/// unsure, or a field it would have to read is a number or a boolean (the serde path
/// writes those out); then [`checked_then_parsed`] decides.
fn scanned(text: &str) -> Option<Fields<'_>> {
    let mut fields = Fields::default();
    let mut plain = true;
    let sure = scan_members(text, |key, raw| {
        let slot = match key.as_ref() {
            "event_id" => &mut fields.event_id,
            "service" => &mut fields.service,
            "level" => &mut fields.level,
            "request_id" => &mut fields.request_id,
            "message" => &mut fields.message,
            "timestamp" => &mut fields.timestamp,
            RECEIVED_AT => {
                fields.has_received_at = true;
                return;
            }
            _ => return,
        };
        // As `Scalar` reads them: a string as it is, `null`, arrays and objects as absent.
        *slot = match raw {
            Raw::Str(s, false) => Some(Cow::Borrowed(s)),
            Raw::Str(s, true) => Some(Cow::Owned(unescape(s))),
            Raw::Null | Raw::Compound => None,
            Raw::Literal(_) => {
                plain = false;
                None
            }
        };
    });
    (sure && plain).then_some(fields)
}

/// The whole check, then the fields read by serde: every record the scan is unsure of.
fn checked_then_parsed(
    text: &str,
    check: fn(&str) -> Result<(), Rejection>,
) -> Result<Fields<'_>, RecordError> {
    check(text)?;
    serde_json::from_str(text).map_err(|e| RecordError::Json(e.to_string()))
}

/// [`Indexed`] of a stored body; `None` for a text that is not a JSON object.
pub fn indexed(body: &str) -> Option<Indexed> {
    let fields: Fields<'_> = serde_json::from_str(body).ok()?;
    Some(Indexed {
        service: fields.service.map(Cow::into_owned),
        level: fields.level.map(|l| l.to_ascii_uppercase()),
        request_id: fields.request_id.map(Cow::into_owned),
        message: fields.message.map(Cow::into_owned),
    })
}

/// `{...}` → `{..., "aggregator_received_at": "..."}` on the text itself.
fn splice_received_at(object: &str, received: &Received) -> String {
    // `object` is a valid JSON object, so it ends with `}`.
    let inner = &object[..object.len() - 1];
    let empty = inner[1..].trim().is_empty();
    let mut body = String::with_capacity(object.len() + RECEIVED_AT.len() + 40);
    body.push_str(inner.trim_end());
    if !empty {
        body.push(',');
    }
    body.push('"');
    body.push_str(RECEIVED_AT);
    body.push_str("\":");
    body.push_str(&received.quoted);
    body.push('}');
    body
}

/// The rare record that already carries the field: rebuilt, so the key stays unique.
fn replace_received_at(object: &str, received: &Received) -> Result<String, RecordError> {
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(object).map_err(|e| RecordError::Json(e.to_string()))?;
    let at: String =
        serde_json::from_str(&received.quoted).map_err(|e| RecordError::Json(e.to_string()))?;
    map.insert(RECEIVED_AT.to_owned(), at.into());
    serde_json::to_string(&map).map_err(|e| RecordError::Json(e.to_string()))
}

/// The few fields the store indexes; the rest of the object is validated and skipped.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fields<'a> {
    event_id: Option<Cow<'a, str>>,
    service: Option<Cow<'a, str>>,
    level: Option<Cow<'a, str>>,
    request_id: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    has_received_at: bool,
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Fields<'de>, M::Error> {
        let mut fields = Fields::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let slot = match key.as_ref() {
                "event_id" => &mut fields.event_id,
                "service" => &mut fields.service,
                "level" => &mut fields.level,
                "request_id" => &mut fields.request_id,
                "message" => &mut fields.message,
                "timestamp" => &mut fields.timestamp,
                RECEIVED_AT => {
                    fields.has_received_at = true;
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Scalar<'de>>()?.0;
        }
        Ok(fields)
    }
}

/// A string that borrows from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ScalarVisitor).and_then(|s| {
            s.0.map(Text)
                .ok_or_else(|| de::Error::custom("expected a string"))
        })
    }
}

/// A field value as text: strings as they are, numbers and booleans written out,
/// `null`, arrays and objects as absent.
struct Scalar<'a>(Option<Cow<'a, str>>);

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
    use serde_json::{json, Value};

    fn received() -> Received {
        Received::at(
            DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
                .unwrap()
                .into(),
        )
    }

    #[test]
    fn fields_are_extracted_and_the_body_gains_received_at() {
        let text = r#" {"timestamp":"2024-05-01T09:59:59.5Z","service":"user-service","level":"info",
            "message":"GET /users 200","request_id":"r1","event_id":"e1","nested":{"service":"x"},"n":[1,2]} "#;
        let r = parse(text, &received()).unwrap();
        assert_eq!(r.service.as_deref(), Some("user-service"));
        assert_eq!(r.level.as_deref(), Some("INFO"));
        assert_eq!(r.request_id.as_deref(), Some("r1"));
        assert_eq!(r.event_id.as_deref(), Some("e1"));
        assert_eq!(r.message.as_deref(), Some("GET /users 200"));
        assert_eq!(r.ts_us, received().us - 500_000);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body["aggregator_received_at"],
            "2024-05-01T10:00:00.000000Z"
        );
        assert_eq!(body["nested"], json!({"service": "x"}));
    }

    #[test]
    fn odd_but_valid_objects() {
        let r = parse(r#"{ "a" : 1 }"#, &received()).unwrap();
        assert_eq!(
            r.body,
            r#"{ "a" : 1,"aggregator_received_at":"2024-05-01T10:00:00.000000Z"}"#
        );
        assert_eq!(r.ts_us, received().us);
        let r = parse(
            r#"{"event_id":"42","service":null,"message":"a\"b"}"#,
            &received(),
        )
        .unwrap();
        assert_eq!(r.event_id.as_deref(), Some("42"));
        assert_eq!(r.service, None);
        assert_eq!(r.message.as_deref(), Some("a\"b"));
        let r = parse(
            r#"{"aggregator_received_at":"forged","timestamp":"yesterday"}"#,
            &received(),
        )
        .unwrap();
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body["aggregator_received_at"],
            "2024-05-01T10:00:00.000000Z"
        );
        assert_eq!(r.body.matches(RECEIVED_AT).count(), 1);
        assert_eq!(r.ts_us, received().us);
    }

    #[test]
    fn the_one_pass_reads_what_the_serde_path_reads() {
        let mut seen = 0;
        for text in [
            r#"{"service":"a","level":"info","message":"m","request_id":"r","event_id":"e","timestamp":"t"}"#,
            r#"{"message":"a\"b\\c\/d\n\t","service":null,"level":["x"],"request_id":{"a":1}}"#,
            r#"{"service":"a","service":"b","level":"warn","level":null}"#,
            "{\"aggregator_received_at\":\"x\",\"message\":\"caf\u{e9}\"}",
            r#"{"k\n":"v","event_id":"svc:00000000000000ab:0-1a"}"#,
            r#"{"service":"s","n":[1,2.5,{"x":[true,false,null]}]}"#,
        ] {
            let fast = scanned(text.trim());
            assert!(fast.is_some(), "{text}");
            assert_eq!(
                fast,
                checked_then_parsed(text, check_record_full).ok(),
                "{text}"
            );
            assert_eq!(parse(text, &received()), parse_full(text, &received()));
            seen += 1;
        }
        // Numbers and booleans in indexed fields, escapes `\u`, exponents: the serde path.
        for text in [
            r#"{"level":1}"#,
            r#"{"service":true}"#,
            r#"{"message":"\u00e9"}"#,
            r#"{"a":1e3,"message":"m"}"#,
        ] {
            assert_eq!(scanned(text), None, "{text}");
            assert!(parse(text, &received()).is_ok(), "{text}");
        }
        assert_eq!(seen, 6);
    }

    #[test]
    fn not_records() {
        for (text, found) in [
            ("[1]", "an array"),
            ("\"x\"", "a string"),
            ("12", "a number"),
            ("null", "null"),
            ("   ", "nothing"),
        ] {
            assert_eq!(
                parse(text, &received()),
                Err(RecordError::NotObject(found)),
                "{text}"
            );
        }
        assert_eq!(parse("{}", &received()), Err(RecordError::EmptyObject));
        // A numeric id and the same digits as a string must never dedupe each other.
        assert_eq!(
            parse(r#"{"event_id":42}"#, &received()),
            Err(RecordError::EventIdNotString)
        );
        for text in [
            r#"{"a":}"#,
            r#"{"a":1} x"#,
            r#"{"a":1"#,
            "{'a':1}",
            r#"{"message":1e999}"#,
            r#"{"level":-1e400}"#,
            r#"{"other":"\ud800"}"#,
            r#"{"\ud800":1}"#,
        ] {
            assert!(
                matches!(parse(text, &received()), Err(RecordError::Json(_))),
                "{text}"
            );
        }
    }
}
