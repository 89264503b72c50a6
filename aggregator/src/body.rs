//! A `POST /logs` body turned into a batch of records, or a precise reason why not.
//!
//! Three shapes (one object, an array of objects, NDJSON), optionally gzip-compressed.
//! The size limit holds for the decompressed body too: decompression stops one byte past
//! the limit, so a small gzip bomb costs no more memory than an honest large body. Any
//! bad record rejects the whole batch, so a rejected request changes nothing.
//!
//! What a body costs is asked of an [`Allowance`] before it is allocated: the
//! decompressed text as it grows, and for every record an upper bound of the memory it
//! will hold ([`record_cost`]), so that the aggregator's ingest memory budget holds
//! however small the records are (16 MiB of `{"a":1}` lines is two million records, each
//! far larger in memory than its 8 bytes of text). The number of records per request is
//! limited too, and counted while parsing, so an oversized batch is refused early.

use std::fmt;
use std::io::Read;

use serde::de::{self, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::admission::Reservation;
use crate::record::{self, Received, Record, RecordError};

/// How the body is framed, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: one object or an array of objects.
    Json,
    /// `application/x-ndjson` (also `application/ndjson`, `application/jsonl`,
    /// `application/x-jsonlines` and `text/plain`): one object per line, blank lines
    /// skipped.
    Ndjson,
}

/// Why a body was refused; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("unsupported content type {0:?}: send application/json (an object or an array of objects) or application/x-ndjson (one object per line)")]
    UnsupportedType(String),
    #[error("unsupported content encoding {0:?}: send gzip or no encoding")]
    UnsupportedEncoding(String),
    #[error("request body exceeds the limit of {limit} bytes{after}", after = if *.decompressed { " once decompressed" } else { "" })]
    TooLarge { limit: usize, decompressed: bool },
    #[error("the request holds more than {limit} records; send at most {limit} per request")]
    TooManyRecords { limit: usize },
    #[error("the ingest memory budget of {limit} bytes is in use by other requests; retry later")]
    OverBudget { limit: usize },
    #[error("cannot read the request body: {0}")]
    Read(String),
    #[error("the request body did not arrive within {timeout} (BODY_READ_TIMEOUT)")]
    ReadTimeout { timeout: String },
    #[error("invalid gzip body: {0}")]
    Gzip(String),
    #[error("the request body is empty: send a JSON object, an array of objects, or one object per line")]
    Empty,
    #[error("the request body is an empty array: send at least one record")]
    EmptyArray,
    #[error("{at}empty object: a record needs at least one field")]
    EmptyObject { at: Position },
    #[error("request body is not valid UTF-8 (line {line})")]
    Utf8 { line: usize },
    #[error("line {line}: {error}")]
    Line { line: usize, error: RecordError },
    #[error("array element {index}: {error}")]
    Element { index: usize, error: RecordError },
    #[error("{0}")]
    Body(RecordError),
}

/// Where in a body a record was, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Whole,
    Line(usize),
    Element(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Whole => Ok(()),
            Position::Line(n) => write!(f, "line {n}: "),
            Position::Element(i) => write!(f, "array element {i}: "),
        }
    }
}

impl BodyError {
    /// A short, fixed label for the rejected-requests metric.
    pub fn reason(&self) -> &'static str {
        match self {
            BodyError::UnsupportedType(_) => "content_type",
            BodyError::UnsupportedEncoding(_) => "content_encoding",
            BodyError::TooLarge { .. } => "too_large",
            BodyError::TooManyRecords { .. } => "too_many_records",
            BodyError::OverBudget { .. } => "memory_budget",
            BodyError::Read(_) => "read",
            BodyError::ReadTimeout { .. } => "read_timeout",
            BodyError::Gzip(_) => "gzip",
            BodyError::Empty | BodyError::EmptyArray | BodyError::EmptyObject { .. } => "empty",
            BodyError::Utf8 { .. } => "utf8",
            BodyError::Line { .. } | BodyError::Element { .. } | BodyError::Body(_) => "json",
        }
    }
}

/// Memory a body may still take, asked before each allocation that grows with it.
pub trait Allowance {
    fn take(&mut self, bytes: usize) -> Result<(), BodyError>;
}

impl Allowance for Reservation {
    fn take(&mut self, bytes: usize) -> Result<(), BodyError> {
        self.grow(bytes)
            .map_err(|e| BodyError::OverBudget { limit: e.limit })
    }
}

/// No budget: for tools, tests and benchmarks that parse a body on their own.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unmetered;

impl Allowance for Unmetered {
    fn take(&mut self, _: usize) -> Result<(), BodyError> {
        Ok(())
    }
}

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

/// The framing of a `Content-Type` value; a missing header is refused too.
pub fn format_of(content_type: Option<&str>) -> Result<Format, BodyError> {
    let raw = content_type.unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Format::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "text/plain" => Ok(Format::Ndjson),
        _ if raw.is_empty() => Err(BodyError::UnsupportedType("(none)".to_owned())),
        _ => Err(BodyError::UnsupportedType(raw.to_owned())),
    }
}

/// Whether a `Content-Encoding` value asks for gzip; anything but gzip or identity is
/// refused.
pub fn is_gzip(content_encoding: Option<&str>) -> Result<bool, BodyError> {
    match content_encoding.map(|e| e.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(e) if e.is_empty() || e == "identity" => Ok(false),
        Some(e) if e == "gzip" || e == "x-gzip" => Ok(true),
        Some(e) => Err(BodyError::UnsupportedEncoding(e)),
    }
}

/// The first buffer a growing body gets; it doubles from there.
pub const FIRST_BUFFER_BYTES: usize = 64 * 1024;

/// Makes room in `buf` for `more` bytes, doubling its capacity up to `limit` and asking
/// `allowance` for every byte of capacity added.
pub fn make_room(
    buf: &mut Vec<u8>,
    more: usize,
    limit: usize,
    allowance: &mut dyn Allowance,
) -> Result<(), BodyError> {
    let needed = buf.len().saturating_add(more);
    if needed <= buf.capacity() {
        return Ok(());
    }
    let target = needed
        .max(buf.capacity().saturating_mul(2))
        .max(FIRST_BUFFER_BYTES)
        .min(limit.max(needed));
    allowance.take(target - buf.capacity())?;
    buf.reserve_exact(target - buf.len());
    Ok(())
}

/// Decompresses a gzip body (several members allowed), refusing more than `limit` bytes.
pub fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    gunzip_within(compressed, limit, &mut Unmetered)
}

/// [`gunzip`], asking `allowance` for the decompressed buffer as it grows.
pub fn gunzip_within(
    compressed: &[u8],
    limit: usize,
    allowance: &mut dyn Allowance,
) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed).take(limit as u64 + 1);
    loop {
        // One byte past the limit is read to tell "exactly the limit" from "more".
        make_room(&mut out, 1, limit + 1, allowance)?;
        let spare = out.capacity() - out.len();
        let n = (&mut decoder)
            .take(spare as u64)
            .read_to_end(&mut out)
            .map_err(|e| BodyError::Gzip(e.to_string()))?;
        if out.len() > limit {
            return Err(BodyError::TooLarge {
                limit,
                decompressed: true,
            });
        }
        if n < spare {
            return Ok(out);
        }
    }
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
        let bound = record_cost(text.len());
        self.limits.allowance.take(bound)?;
        let record = record::parse(text, self.received).map_err(|error| match at {
            Position::Line(line) => BodyError::Line {
                line,
                error: within_line(error),
            },
            Position::Element(index) => BodyError::Element { index, error },
            Position::Whole => BodyError::Body(error),
        })?;
        let heap = heap_of(&record);
        if heap > bound {
            self.limits.allowance.take(heap - bound)?;
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

/// `{}`, with any whitespace inside: a record without a single field.
fn is_empty_object(text: &str) -> bool {
    let t = text.trim();
    t.len() >= 2 && t.starts_with('{') && t.ends_with('}') && t[1..t.len() - 1].trim().is_empty()
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
    use std::io::Write;

    fn received() -> Received {
        Received::now()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn content_types() {
        assert_eq!(
            format_of(Some("application/json; charset=utf-8")),
            Ok(Format::Json)
        );
        assert_eq!(format_of(Some("Application/X-NDJSON")), Ok(Format::Ndjson));
        assert_eq!(format_of(Some("text/plain")), Ok(Format::Ndjson));
        assert!(matches!(
            format_of(Some("application/x-www-form-urlencoded")),
            Err(BodyError::UnsupportedType(_))
        ));
        assert!(matches!(
            format_of(None),
            Err(BodyError::UnsupportedType(_))
        ));
        assert_eq!(is_gzip(Some("gzip")), Ok(true));
        assert_eq!(is_gzip(None), Ok(false));
        assert!(is_gzip(Some("br")).is_err());
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
        // A number written out is longer than its text: measured once built.
        let (records, given) = within(b"{\"event_id\":1e300}", Format::Json, 1, usize::MAX);
        let records = records.unwrap();
        assert!(given >= heap_of(&records[0]), "{given}");
    }

    #[test]
    fn gzip_asks_for_what_it_decompresses() {
        let data = b"{\"a\":1}\n".repeat(100_000);
        let mut allowance = Capped {
            left: usize::MAX,
            given: 0,
        };
        let out = gunzip_within(&gzip(&data), 1 << 20, &mut allowance).unwrap();
        assert_eq!(out, data);
        assert!(
            allowance.given >= out.capacity(),
            "{} < {}",
            allowance.given,
            out.capacity()
        );
        let mut small = Capped {
            left: 100_000,
            given: 0,
        };
        assert_eq!(
            gunzip_within(&gzip(&data), 1 << 20, &mut small),
            Err(BodyError::OverBudget { limit: 0 })
        );
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

    #[test]
    fn gzip_is_bounded() {
        let data = b"{\"a\":1}\n".repeat(1000);
        assert_eq!(gunzip(&gzip(&data), data.len()).unwrap(), data);
        assert_eq!(
            gunzip(&gzip(&data), data.len() - 1),
            Err(BodyError::TooLarge {
                limit: data.len() - 1,
                decompressed: true
            })
        );
        let bomb = gzip(&vec![b' '; 50 << 20]);
        assert!(bomb.len() < 1 << 20);
        assert!(matches!(
            gunzip(&bomb, 1 << 20),
            Err(BodyError::TooLarge { .. })
        ));
        assert!(matches!(gunzip(b"not gzip", 100), Err(BodyError::Gzip(_))));
    }
}
