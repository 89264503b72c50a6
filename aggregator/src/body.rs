//! A `POST /logs` body as bytes: its framing, its encoding, its buffer, and every
//! reason to refuse it ([`BodyError`]); [`crate::batch`] turns it into records.
//!
//! Three shapes (one object, an array of objects, NDJSON), optionally gzip-compressed.
//! The size limit holds for the decompressed body too: decompression stops one byte past
//! the limit, so a small gzip bomb costs no more memory than an honest large body. Every
//! buffer growth is first asked of an [`Allowance`] (the request's share of the ingest
//! memory budget), so reading and decompressing never take memory the budget lacks.

use std::fmt;
use std::io::Read;

use crate::admission::Reservation;
use crate::record::RecordError;

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
    /// Returns bytes taken but not kept (an upper bound once the real size is known).
    fn give_back(&mut self, bytes: usize);
}

impl Allowance for Reservation {
    fn take(&mut self, bytes: usize) -> Result<(), BodyError> {
        self.grow(bytes)
            .map_err(|e| BodyError::OverBudget { limit: e.limit })
    }

    fn give_back(&mut self, bytes: usize) {
        self.shrink(bytes);
    }
}

/// No budget: for tools, tests and benchmarks that parse a body on their own.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unmetered;

impl Allowance for Unmetered {
    fn take(&mut self, _: usize) -> Result<(), BodyError> {
        Ok(())
    }

    fn give_back(&mut self, _: usize) {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
