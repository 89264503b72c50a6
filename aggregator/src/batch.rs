//! A decompressed `POST /logs` body turned into records, all or nothing, within the
//! request's limits.
//!
//! Three shapes: one object, an array of objects, NDJSON. Each record's memory is asked
//! of an [`Allowance`] before it is allocated: an upper bound of what it will hold
//! ([`record_cost`]), so that the ingest memory budget holds however small the records
//! are (16 MiB of `{"a":1}` lines is two million records, each far larger in memory than
//! its 8 bytes of text). The records per request are counted while parsing, so an
//! oversized batch is refused at its first record past the limit. An empty body, an
//! empty array and an empty object are refused, naming which.

use std::fmt;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use serde::de::{self, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::body::{Allowance, BodyError, Format, Position, Unmetered};
use crate::record::{self, Received, Record, RecordError};

/// Heap a record holds besides its text, at most: `aggregator_received_at` spliced
/// into its body (about 60 bytes) and an allocator's overhead for each of its six
/// strings (16 bytes each, rounded up).
pub const RECORD_OVERHEAD_BYTES: usize = 64 + 6 * 16;

/// An upper bound of the heap a record parsed from `len` bytes of JSON holds before it
/// is built: its body (the text and [`RECORD_OVERHEAD_BYTES`]) and the copies of its
/// indexed fields, which are parts of the text. A field written as a number can be
/// longer once written out; [`heap_of`] measures the record once it is built, and any
/// excess is taken then.
pub fn record_cost(len: usize) -> usize {
    len.saturating_mul(2).saturating_add(RECORD_OVERHEAD_BYTES)
}

/// A record that already carries `aggregator_received_at` is rebuilt through a
/// `serde_json::Value` tree while it is parsed (`record.rs`), and such a tree takes up
/// to 16 times its text (32 bytes for the value `0` of `0,`); this many times the text
/// is asked for, for the time of the parse, whenever the text may hold that key (it
/// names it, or it has `\u` escapes, which could spell it).
pub const REBUILD_FACTOR: usize = 24;

/// Records up to this size are not searched for the key: the tree of one is at most
/// `REBUILD_FACTOR` × 4 KiB = 96 KiB, and each worker parses one record at a time, so
/// what goes uncounted is at most that per worker. Most records are far smaller, and
/// skip the search (about 150 instructions each).
pub const REBUILD_CHECK_MIN_BYTES: usize = 4096;

/// Whether parsing `text` may go through the rebuild of [`REBUILD_FACTOR`] in a way
/// that matters for the budget.
fn may_rebuild(text: &str) -> bool {
    if text.len() <= REBUILD_CHECK_MIN_BYTES {
        return false;
    }
    // Built once: building a searcher costs more than searching a record.
    static RECEIVED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("received_at"));
    let bytes = text.as_bytes();
    RECEIVED.find(bytes).is_some()
        || memchr::memchr_iter(b'\\', bytes).any(|i| bytes.get(i + 1) == Some(&b'u'))
}

/// The heap one record holds, as allocated.
pub fn heap_of(r: &Record) -> usize {
    let field = |f: &Option<String>| f.as_ref().map_or(0, |s| s.capacity() + 16);
    r.body.capacity()
        + 16
        + field(&r.event_id)
        + field(&r.service)
        + field(&r.level)
        + field(&r.request_id)
        + field(&r.message)
}

/// The limits one request is parsed within.
pub struct Within<'a> {
    /// Records a request may hold.
    pub max_records: usize,
    pub allowance: &'a mut dyn Allowance,
}

/// Parses a whole (decompressed) body into records, all or nothing, without limits.
pub fn parse_batch(
    body: &[u8],
    format: Format,
    received: &Received,
) -> Result<Vec<Record>, BodyError> {
    parse_batch_within(
        body,
        format,
        received,
        Within {
            max_records: usize::MAX,
            allowance: &mut Unmetered,
        },
    )
}

/// Parses a whole (decompressed) body into records, all or nothing, within `limits`.
/// An empty body, an empty array and an empty object are refused, naming which.
pub fn parse_batch_within(
    body: &[u8],
    format: Format,
    received: &Received,
    limits: Within<'_>,
) -> Result<Vec<Record>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::Utf8 {
        line: 1 + body[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
    })?;
    if text.trim().is_empty() {
        return Err(BodyError::Empty);
    }
    let mut batch = Batch {
        records: Vec::new(),
        received,
        limits,
    };
    // A typical record is about 200 bytes of text: one allocation for most batches.
    let guess = (text.len() / 160 + 1).min(batch.limits.max_records);
    batch
        .limits
        .allowance
        .take(guess * std::mem::size_of::<Record>())?;
    batch.records.reserve_exact(guess);
    match format {
        Format::Ndjson => batch.ndjson(text)?,
        Format::Json => batch.json(text)?,
    }
    Ok(batch.records)
}

/// Records parsed so far, and what they may still take.
struct Batch<'a, 'b> {
    records: Vec<Record>,
    received: &'a Received,
    limits: Within<'b>,
}

impl Batch<'_, '_> {
    /// Parses one record, asking for its memory first; `at` names it in errors.
    fn push(&mut self, text: &str, at: Position) -> Result<(), BodyError> {
        if self.records.len() >= self.limits.max_records {
            return Err(BodyError::TooManyRecords {
                limit: self.limits.max_records,
            });
        }
        if is_empty_object(text) {
            return Err(BodyError::EmptyObject { at });
        }
        if self.records.len() == self.records.capacity() {
            // Doubling, as `Vec` would, but asked for first.
            let more = self.records.capacity().clamp(64, 1 << 20);
            self.limits
                .allowance
                .take(more * std::mem::size_of::<Record>())?;
            self.records.reserve_exact(more);
        }
        let transient = if may_rebuild(text) {
            text.len().saturating_mul(REBUILD_FACTOR)
        } else {
            0
        };
        let bound = record_cost(text.len()).saturating_add(transient);
        self.limits.allowance.take(bound)?;
        let record = record::parse(text, self.received).map_err(|error| match at {
            Position::Line(line) => BodyError::Line {
                line,
                error: within_line(error),
            },
            Position::Element(index) => BodyError::Element { index, error },
            Position::Whole => BodyError::Body(error),
        })?;
        // From here on the record holds exactly its heap.
        let heap = heap_of(&record);
        if heap > bound {
            self.limits.allowance.take(heap - bound)?;
        } else {
            self.limits.allowance.give_back(bound - heap);
        }
        self.records.push(record);
        Ok(())
    }

    fn ndjson(&mut self, text: &str) -> Result<(), BodyError> {
        for (index, line) in text.split('\n').enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            self.push(line, Position::Line(index + 1))?;
        }
        Ok(())
    }

    fn json(&mut self, text: &str) -> Result<(), BodyError> {
        if !text.trim_start().starts_with('[') {
            return self.push(text, Position::Whole);
        }
        // Element by element, so that a huge array is refused at its first element past
        // a limit instead of being held whole first.
        let mut failed = None;
        let mut de = serde_json::Deserializer::from_str(text);
        let outcome = de::Deserializer::deserialize_seq(
            &mut de,
            Elements {
                batch: self,
                failed: &mut failed,
            },
        )
        .and_then(|()| de.end());
        match (failed, outcome) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(BodyError::Body(RecordError::Json(e.to_string()))),
            (None, Ok(())) if self.records.is_empty() => Err(BodyError::EmptyArray),
            (None, Ok(())) => Ok(()),
        }
    }
}

/// The elements of a JSON array, each pushed as it is read.
struct Elements<'x, 'a, 'b> {
    batch: &'x mut Batch<'a, 'b>,
    failed: &'x mut Option<BodyError>,
}

impl<'de> Visitor<'de> for Elements<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of JSON objects")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let mut index = 0;
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if let Err(e) = self.batch.push(raw.get(), Position::Element(index)) {
                *self.failed = Some(e);
                return Err(de::Error::custom("refused"));
            }
            index += 1;
        }
        Ok(())
    }
}

/// `{}`, with any whitespace inside: a record without a single field. Reads from the
/// start only: a record's first bytes after `{` tell (at most its leading whitespace).
fn is_empty_object(text: &str) -> bool {
    let mut rest = text
        .bytes()
        .skip_while(u8::is_ascii_whitespace)
        .filter(|b| !b.is_ascii_whitespace());
    rest.next() == Some(b'{') && rest.next() == Some(b'}') && rest.next().is_none()
}

/// serde_json places an error at `line 1 column N` of the one line it was given; the
/// line number that matters is the body's, so only the column is kept.
fn within_line(error: RecordError) -> RecordError {
    match error {
        RecordError::Json(msg) => match msg.rsplit_once(" at line 1 column ") {
            Some((what, column)) => RecordError::Json(format!("{what} at column {column}")),
            None => RecordError::Json(msg),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received() -> Received {
        Received::now()
    }

    #[test]
    fn three_shapes() {
        let r = received();
        assert_eq!(
            parse_batch(br#"{"a":1}"#, Format::Json, &r).unwrap().len(),
            1
        );
        assert_eq!(
            parse_batch(b"[{\"a\":1},\n {\"b\":2}]", Format::Json, &r)
                .unwrap()
                .len(),
            2
        );
        let nd = b"{\"a\":1}\r\n\n{\"b\":2}\n";
        assert_eq!(parse_batch(nd, Format::Ndjson, &r).unwrap().len(), 2);
    }

    #[test]
    fn empty_bodies_arrays_and_objects_are_named() {
        let r = received();
        for (body, format, message) in [
            (&b""[..], Format::Json, "the request body is empty: send a JSON object, an array of objects, or one object per line"),
            (b" \n\r\n", Format::Ndjson, "the request body is empty: send a JSON object, an array of objects, or one object per line"),
            (b"[]", Format::Json, "the request body is an empty array: send at least one record"),
            (b" [ \n ] ", Format::Json, "the request body is an empty array: send at least one record"),
            (b"{}", Format::Json, "empty object: a record needs at least one field"),
            (b"[{\"a\":1}, { }]", Format::Json, "array element 1: empty object: a record needs at least one field"),
            (b"{\"a\":1}\n{}\n", Format::Ndjson, "line 2: empty object: a record needs at least one field"),
        ] {
            let err = parse_batch(body, format, &r).unwrap_err();
            assert_eq!(err.to_string(), message, "{:?}", String::from_utf8_lossy(body));
            assert_eq!(err.reason(), "empty");
        }
    }

    /// An allowance that grants up to a fixed number of bytes, and says how many it gave.
    struct Capped {
        left: usize,
        given: usize,
    }

    impl Allowance for Capped {
        fn take(&mut self, bytes: usize) -> Result<(), BodyError> {
            if bytes > self.left {
                return Err(BodyError::OverBudget { limit: 0 });
            }
            self.left -= bytes;
            self.given += bytes;
            Ok(())
        }

        fn give_back(&mut self, bytes: usize) {
            self.left += bytes;
            self.given -= bytes;
        }
    }

    fn within(
        body: &[u8],
        format: Format,
        max_records: usize,
        cap: usize,
    ) -> (Result<Vec<Record>, BodyError>, usize) {
        let mut allowance = Capped {
            left: cap,
            given: 0,
        };
        let out = parse_batch_within(
            body,
            format,
            &received(),
            Within {
                max_records,
                allowance: &mut allowance,
            },
        );
        (out, allowance.given)
    }

    #[test]
    fn the_record_count_is_limited_in_every_shape() {
        let nd = b"{\"a\":1}\n".repeat(11);
        assert_eq!(
            within(&nd, Format::Ndjson, 11, usize::MAX).0.unwrap().len(),
            11
        );
        assert_eq!(
            within(&nd, Format::Ndjson, 10, usize::MAX).0.unwrap_err(),
            BodyError::TooManyRecords { limit: 10 }
        );
        let array = format!("[{}]", ["{\"a\":1}"; 11].join(","));
        let err = within(array.as_bytes(), Format::Json, 10, usize::MAX)
            .0
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the request holds more than 10 records; send at most 10 per request"
        );
        assert_eq!(err.reason(), "too_many_records");
    }

    #[test]
    fn memory_is_asked_for_before_it_is_taken_and_bounds_what_is_held() {
        // Tiny records cost far more in memory than in text; the allowance sees it.
        let nd = b"{\"a\":1}\n".repeat(10_000);
        let (records, given) = within(&nd, Format::Ndjson, usize::MAX, usize::MAX);
        let records = records.unwrap();
        let held: usize = records.iter().map(heap_of).sum::<usize>()
            + records.capacity() * std::mem::size_of::<Record>();
        assert!(given >= held, "asked {given} bytes, holds {held}");
        assert!(given > 10 * nd.len(), "{given}");
        // With less than that, the batch is refused, not parsed.
        assert_eq!(
            within(&nd, Format::Ndjson, usize::MAX, held / 2)
                .0
                .unwrap_err(),
            BodyError::OverBudget { limit: 0 }
        );
        // A record carrying aggregator_received_at is rebuilt through a Value tree: the
        // tree's memory is asked for during the parse, and given back after.
        let forged = format!(
            "{{\"aggregator_received_at\":0,\"a\":[{}0]}}",
            "0,".repeat(10_000)
        );
        let (out, _) = within(forged.as_bytes(), Format::Json, 1, 2 * forged.len() + 1_000);
        assert_eq!(out.unwrap_err(), BodyError::OverBudget { limit: 0 });
        let (records, given) = within(forged.as_bytes(), Format::Json, 1, usize::MAX);
        let records = records.unwrap();
        assert!(given < 3 * forged.len(), "{given}");
        assert_eq!(
            given,
            heap_of(&records[0]) + records.capacity() * std::mem::size_of::<Record>()
        );
        // A number written out is longer than its text: measured once built.
        let (records, given) = within(b"{\"message\":1e300}", Format::Json, 1, usize::MAX);
        let records = records.unwrap();
        assert!(given >= heap_of(&records[0]), "{given}");
    }

    #[test]
    fn errors_name_the_line_or_element() {
        let r = received();
        let err = parse_batch(b"{\"a\":1}\n\n{\"b\":\n", Format::Ndjson, &r).unwrap_err();
        assert!(matches!(err, BodyError::Line { line: 3, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "line 3: invalid JSON: EOF while parsing a value at column 5"
        );
        let err = parse_batch(b"[{\"a\":1}, 5]", Format::Json, &r).unwrap_err();
        assert_eq!(
            err.to_string(),
            "array element 1: expected a JSON object, found a number"
        );
        let err = parse_batch(b"{\"a\":1}\n{\"b\":\xff}", Format::Ndjson, &r).unwrap_err();
        assert_eq!(err, BodyError::Utf8 { line: 2 });
        assert!(parse_batch(b"", Format::Json, &r).is_err());
        assert!(parse_batch(b"{\"a\":1}\n{\"b\":2}", Format::Json, &r).is_err());
    }
}
