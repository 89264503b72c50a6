//! What makes one JSON text a record the aggregator stores: the rules, in one place.
//!
//! The aggregator checks every record of a batch with [`check_record`] and refuses the
//! whole batch (400) when one fails; the logging sidecar checks every record it builds
//! with the same function before sending it, and sends a line that fails as a plain
//! text message instead. Because both use this one function, a line can never be taken
//! by the sidecar and then refused by the aggregator for its content, which would stall
//! delivery behind it.
//!
//! The rules:
//! - the text (surrounding whitespace allowed) is one JSON object with at least one
//!   member, and nothing follows it;
//! - every number anywhere in it is finite as an `f64` (`1e999` and `-1e400` are not:
//!   a reader would turn them into infinities that JSON cannot write back);
//! - every string, keys included, is valid Unicode: no lone surrogate escape such as
//!   `"\ud800"` (a strict reader refuses it, and it cannot become a Rust `String`);
//! - nesting stays within serde_json's recursion limit (128 levels);
//! - `event_id`, when present, is a string or `null` (which means absent); the last
//!   occurrence of a repeated key is the one that counts, as for every JSON reader that
//!   keeps the last: an id `42` and an id `"42"` must not be taken for one another.
//!
//! Whole-value validation costs more than skipping (numbers are converted, escapes
//! decoded): the common record (no `\u` escape, no exponent, shallow) is accepted by a
//! one-pass byte scan ([`fast`]) instead, which is never less strict; anything it is
//! unsure of gets the full check, so the verdict is always the full check's.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

mod fast;
pub use fast::{scan_members, unescape, Raw};

/// Why a JSON text is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not JSON, a number out of range, a lone surrogate, text after the object.
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("expected a JSON object, found {0}")]
    NotObject(&'static str),
    #[error("a record without a single field")]
    EmptyObject,
    #[error("event_id must be a string")]
    EventIdNotString,
}

/// Checks one record's text against the rules of the module comment.
pub fn check_record(text: &str) -> Result<(), Rejection> {
    if fast_path_accepts(text) {
        return Ok(());
    }
    check_record_full(text)
}

/// Whether the one-pass scan alone accepts `text`: `true` only for a text
/// [`check_record_full`] accepts (`false` says nothing). Public for differential tests.
pub fn fast_path_accepts(text: &str) -> bool {
    fast::surely_accepted(text.trim())
}

/// [`check_record`] without its fast path: every value decoded by serde_json. The
/// reference the fast path is held to.
pub fn check_record_full(text: &str) -> Result<(), Rejection> {
    let text = text.trim();
    match text.as_bytes().first() {
        Some(b'{') => {}
        None => return Err(Rejection::NotObject("nothing")),
        Some(b'[') => return Err(Rejection::NotObject("an array")),
        Some(b'"') => return Err(Rejection::NotObject("a string")),
        Some(b'n') => return Err(Rejection::NotObject("null")),
        Some(b't' | b'f') => return Err(Rejection::NotObject("a boolean")),
        Some(b'-' | b'0'..=b'9') => return Err(Rejection::NotObject("a number")),
        Some(_) => return Err(Rejection::Json("expected a JSON object".to_owned())),
    }
    let summary: Summary =
        serde_json::from_str(text).map_err(|e| Rejection::Json(e.to_string()))?;
    if summary.members == 0 {
        return Err(Rejection::EmptyObject);
    }
    if summary.event_id == EventId::NotString {
        return Err(Rejection::EventIdNotString);
    }
    Ok(())
}

/// Any JSON value, validated whole and then dropped: see the module comment.
pub struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

/// A key, decoded (which validates its escapes) without being kept: whether it is
/// `event_id` is all that matters.
struct Key {
    is_event_id: bool,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key {
            is_event_id: v == "event_id",
        })
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Checked, E> {
        // serde_json already refuses out-of-range numbers; other readers may not.
        if v.is_finite() {
            Ok(Checked)
        } else {
            Err(E::custom("number out of range"))
        }
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Key>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventId {
    Absent,
    String,
    NotString,
}

/// What the top-level object holds, as far as the rules care.
struct Summary {
    members: usize,
    event_id: EventId,
}

impl<'de> Deserialize<'de> for Summary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SummaryVisitor)
    }
}

struct SummaryVisitor;

impl<'de> Visitor<'de> for SummaryVisitor {
    type Value = Summary;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Summary, A::Error> {
        let mut summary = Summary {
            members: 0,
            event_id: EventId::Absent,
        };
        while let Some(key) = map.next_key::<Key>()? {
            summary.members += 1;
            if key.is_event_id {
                summary.event_id = map.next_value::<IdKind>()?.0;
            } else {
                map.next_value::<Checked>()?;
            }
        }
        Ok(summary)
    }
}

/// Whether an `event_id` value is a string (any value is validated either way).
struct IdKind(EventId);

impl<'de> Deserialize<'de> for IdKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IdKindVisitor)
    }
}

struct IdKindVisitor;

impl<'de> Visitor<'de> for IdKindVisitor {
    type Value = IdKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<IdKind, E> {
        Ok(IdKind(EventId::String))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<IdKind, E> {
        Ok(IdKind(EventId::NotString))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<IdKind, E> {
        Ok(IdKind(EventId::NotString))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<IdKind, E> {
        Ok(IdKind(EventId::NotString))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<IdKind, E> {
        CheckedVisitor.visit_f64::<E>(v)?;
        Ok(IdKind(EventId::NotString))
    }

    fn visit_unit<E: de::Error>(self) -> Result<IdKind, E> {
        Ok(IdKind(EventId::Absent))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<IdKind, A::Error> {
        CheckedVisitor.visit_seq(seq)?;
        Ok(IdKind(EventId::NotString))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<IdKind, A::Error> {
        CheckedVisitor.visit_map(map)?;
        Ok(IdKind(EventId::NotString))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_records_pass() {
        for text in [
            r#"{"a":1}"#,
            r#"  {"message":"caf\u00e9 \ud83d\ude00","n":[1,2.5,-3e10,null,true],"o":{"x":{}}}  "#,
            r#"{"event_id":42,"event_id":"e1"}"#,
            r#"{"tiny":1e-999}"#,
            r#"{"big":18446744073709551616}"#,
        ] {
            assert_eq!(check_record(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn numbers_out_of_range_are_refused_wherever_they_are() {
        for text in [
            r#"{"message":1e999}"#,
            r#"{"level":-1e400}"#,
            r#"{"other":[1,{"deep":1e309}]}"#,
            r#"{"event_id":1e999}"#,
        ] {
            assert!(
                matches!(check_record(text), Err(Rejection::Json(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn lone_surrogates_are_refused_in_values_and_keys() {
        for text in [
            r#"{"message":"\ud800"}"#,
            r#"{"x":"a\udc00b"}"#,
            r#"{"\ud800":1}"#,
            r#"{"x":{"\udfff":1}}"#,
            r#"{"x":["\ud800x"]}"#,
        ] {
            assert!(
                matches!(check_record(text), Err(Rejection::Json(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn shapes_and_event_ids() {
        assert_eq!(check_record("{}"), Err(Rejection::EmptyObject));
        assert_eq!(check_record(" { } "), Err(Rejection::EmptyObject));
        assert_eq!(check_record("[1]"), Err(Rejection::NotObject("an array")));
        assert_eq!(check_record(""), Err(Rejection::NotObject("nothing")));
        assert_eq!(check_record("12"), Err(Rejection::NotObject("a number")));
        assert!(matches!(
            check_record(r#"{"a":1} x"#),
            Err(Rejection::Json(_))
        ));
        assert!(matches!(check_record("{'a':1}"), Err(Rejection::Json(_))));
        assert_eq!(check_record(r#"{"event_id":null}"#), Ok(()));
        for text in [r#"{"event_id":42}"#, r#"{"event_id":"e","event_id":[1]}"#] {
            assert_eq!(
                check_record(text),
                Err(Rejection::EventIdNotString),
                "{text}"
            );
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(check_record(&deep), Err(Rejection::Json(_))));
    }
}
