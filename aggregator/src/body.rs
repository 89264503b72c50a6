//! A `POST /logs` body turned into a batch of records, or a precise reason why not.
//!
//! Three shapes (one object, an array of objects, NDJSON), optionally gzip-compressed.
//! The size limit holds for the decompressed body too: decompression stops one byte past
//! the limit, so a small gzip bomb costs no more memory than an honest large body. Any
//! bad record rejects the whole batch, so a rejected request changes nothing.

use std::io::Read;

use serde_json::value::RawValue;

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
    #[error("cannot read the request body: {0}")]
    Read(String),
    #[error("invalid gzip body: {0}")]
    Gzip(String),
    #[error("request body is not valid UTF-8 (line {line})")]
    Utf8 { line: usize },
    #[error("line {line}: {error}")]
    Line { line: usize, error: RecordError },
    #[error("array element {index}: {error}")]
    Element { index: usize, error: RecordError },
    #[error("{0}")]
    Body(RecordError),
}

impl BodyError {
    /// A short, fixed label for the rejected-requests metric.
    pub fn reason(&self) -> &'static str {
        match self {
            BodyError::UnsupportedType(_) => "content_type",
            BodyError::UnsupportedEncoding(_) => "content_encoding",
            BodyError::TooLarge { .. } => "too_large",
            BodyError::Read(_) => "read",
            BodyError::Gzip(_) => "gzip",
            BodyError::Utf8 { .. } => "utf8",
            BodyError::Line { .. } | BodyError::Element { .. } | BodyError::Body(_) => "json",
        }
    }
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

/// Decompresses a gzip body (several members allowed), refusing more than `limit` bytes.
pub fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge {
            limit,
            decompressed: true,
        });
    }
    Ok(out)
}

/// Parses a whole (decompressed) body into records, all or nothing.
pub fn parse_batch(
    body: &[u8],
    format: Format,
    received: &Received,
) -> Result<Vec<Record>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::Utf8 {
        line: 1 + body[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
    })?;
    match format {
        Format::Ndjson => parse_ndjson(text, received),
        Format::Json => parse_json(text, received),
    }
}

fn parse_ndjson(text: &str, received: &Received) -> Result<Vec<Record>, BodyError> {
    // A line of a typical record is about 200 bytes; a close guess avoids regrowth.
    let mut records = Vec::with_capacity(text.len() / 160 + 1);
    for (index, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = record::parse(line, received).map_err(|error| BodyError::Line {
            line: index + 1,
            error: within_line(error),
        })?;
        records.push(record);
    }
    Ok(records)
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

fn parse_json(text: &str, received: &Received) -> Result<Vec<Record>, BodyError> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('[') {
        return record::parse(text, received)
            .map(|r| vec![r])
            .map_err(BodyError::Body);
    }
    let elements: Vec<&RawValue> = serde_json::from_str(text)
        .map_err(|e| BodyError::Body(RecordError::Json(e.to_string())))?;
    elements
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            record::parse(raw.get(), received).map_err(|error| BodyError::Element { index, error })
        })
        .collect()
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
        assert_eq!(parse_batch(b"[]", Format::Json, &r).unwrap().len(), 0);
        let nd = b"{\"a\":1}\r\n\n{\"b\":2}\n";
        assert_eq!(parse_batch(nd, Format::Ndjson, &r).unwrap().len(), 2);
        assert_eq!(parse_batch(b"", Format::Ndjson, &r).unwrap().len(), 0);
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
