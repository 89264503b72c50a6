//! The structured `event_id` of the logging sidecar, and how a store may read it.
//!
//! A sidecar names each record by the stretch of a file it came from:
//!
//! ```text
//! <service>:<stream>:<start>-<end>        user-service:9f3a1c2b7d4e5f60:1a2b-1a9f
//! ```
//!
//! - `<stream>` is 16 lowercase hex digits, drawn at random when the sidecar first meets
//!   a file (one instance of a file: a truncated or recreated file is a new stream, a copy
//!   made by copytruncate continues the stream it was copied from) and kept in its
//!   checkpoint, so a re-sent record keeps its id and two files never share a stream.
//! - `<start>-<end>` is the half-open byte interval of the stream that the record covers,
//!   in lowercase hex without leading zeros (`0` for zero).
//!
//! A producer that writes this form promises two things: within one stream the intervals
//! of different records never overlap and are never empty, and a re-sent record carries
//! exactly the interval it had before. A store may therefore treat a record as a
//! duplicate exactly when its interval lies inside the intervals already stored for its
//! stream, and keep, per stream, a few merged ranges instead of one key per record.
//!
//! Only the canonical spelling is structured: any other text (leading zeros, upper case,
//! a stream of another length, `start >= end`) is an opaque id, deduplicated by its
//! whole text. Canonical form is what keeps that exact: one (stream, interval) has one
//! spelling, so two ids that differ as text never meet as structured ids.

use std::fmt::Write as _;

/// Hex digits of a stream.
pub const STREAM_HEX_DIGITS: usize = 16;

/// A structured `event_id`, borrowed from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamSpan<'a> {
    /// `<service>:<stream>`: the key a store groups intervals by.
    pub stream: &'a str,
    /// First byte of the stream the record covers.
    pub start: u64,
    /// One past the last byte the record covers; always `> start`.
    pub end: u64,
}

impl<'a> StreamSpan<'a> {
    /// Reads a canonical structured id; `None` for anything else (an opaque id).
    pub fn parse(id: &'a str) -> Option<StreamSpan<'a>> {
        let (stream, span) = id.rsplit_once(':')?;
        let (service, hex) = stream.rsplit_once(':')?;
        if service.is_empty() || hex.len() != STREAM_HEX_DIGITS || !hex.bytes().all(is_lower_hex) {
            return None;
        }
        let (start, end) = span.split_once('-')?;
        let start = canonical_hex(start)?;
        let end = canonical_hex(end)?;
        (start < end).then_some(StreamSpan { stream, start, end })
    }

    /// The id's text, the inverse of [`StreamSpan::parse`].
    pub fn to_id(&self) -> String {
        let mut id = String::with_capacity(self.stream.len() + 34);
        write_id(&mut id, self.stream, self.start, self.end);
        id
    }
}

/// `<service>:<stream hex>` for a newly met file.
pub fn stream_name(service: &str, stream: u64) -> String {
    format!("{service}:{stream:016x}")
}

/// Appends the id of `[start, end)` in `stream` (as made by [`stream_name`]) to `out`.
pub fn write_id(out: &mut String, stream: &str, start: u64, end: u64) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{stream}:{start:x}-{end:x}");
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Lowercase hex without leading zeros (`0` alone for zero), at most 16 digits.
fn canonical_hex(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= 16
        && text.bytes().all(is_lower_hex)
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let stream = stream_name("user-service", 0x9f3a_1c2b_7d4e_5f60);
        let mut id = String::new();
        write_id(&mut id, &stream, 0x1a2b, 0x1a9f);
        assert_eq!(id, "user-service:9f3a1c2b7d4e5f60:1a2b-1a9f");
        let span = StreamSpan::parse(&id).expect("structured");
        assert_eq!(span.stream, "user-service:9f3a1c2b7d4e5f60");
        assert_eq!((span.start, span.end), (0x1a2b, 0x1a9f));
        assert_eq!(span.to_id(), id);
        let zero = StreamSpan::parse("a.b-c:0000000000000000:0-1").expect("structured");
        assert_eq!(
            (zero.stream, zero.start, zero.end),
            ("a.b-c:0000000000000000", 0, 1)
        );
        let max = format!("s:{}:0-{:x}", "f".repeat(16), u64::MAX);
        assert_eq!(StreamSpan::parse(&max).map(|s| s.end), Some(u64::MAX));
    }

    #[test]
    fn anything_not_canonical_is_opaque() {
        for id in [
            "",
            "42",
            "user-service-abc-3e8",
            ":9f3a1c2b7d4e5f60:0-1",                  // no service
            "s:9f3a1c2b7d4e5f6:0-1",                  // 15 digits
            "s:9f3a1c2b7d4e5f600:0-1",                // 17 digits
            "s:9F3A1C2B7D4E5F60:0-1",                 // upper case
            "s:9f3a1c2b7d4e5f60:00-1",                // leading zero
            "s:9f3a1c2b7d4e5f60:0-01",                // leading zero
            "s:9f3a1c2b7d4e5f60:A-B",                 // upper case
            "s:9f3a1c2b7d4e5f60:5-5",                 // empty
            "s:9f3a1c2b7d4e5f60:6-5",                 // reversed
            "s:9f3a1c2b7d4e5f60:0-",                  // no end
            "s:9f3a1c2b7d4e5f60:-1",                  // no start
            "s:9f3a1c2b7d4e5f60:0-1-2",               // extra part
            "s:9f3a1c2b7d4e5f60:+1-2",                // sign
            "s:9f3a1c2b7d4e5f60:0-10000000000000000", // over 64 bits
        ] {
            assert_eq!(StreamSpan::parse(id), None, "{id:?}");
        }
    }
}
