//! Turning raw lines into the contract's records: the enricher's plain logic.
//!
//! A line that is a JSON object is kept byte for byte: it is validated, then the
//! sidecar's fields are spliced in before its closing brace, which is several times
//! cheaper than parsing it into a tree and serialising it again. Anything else becomes
//! `{"message": "<the line>", "sidecar_not_json": true, ...}`; invalid UTF-8 is replaced
//! with U+FFFD (and marked `sidecar_invalid_utf8`), a cut line is marked
//! `sidecar_truncated`. The added fields come last, so where the application used the
//! same key the sidecar's value is the one a JSON reader keeps (the last wins).
//!
//! A JSON object line is kept only when the record built from it passes
//! [`shared::record_check`], the very function the aggregator checks records with; one
//! that fails (a number out of range such as `1e999`, a lone surrogate escape in a
//! string or a key) goes as a message carrying the line, marked `sidecar_not_json` and
//! `sidecar_rejected` (the reason). Blank lines (empty or ASCII whitespace only) carry
//! nothing and are skipped, counted in the tally.
//!
//! `event_id` is the structured id of [`shared::event_id`]:
//! `<SERVICE_NAME>:<stream>:<start>-<end>`, where the stream (16 hex digits) names one
//! instance of one file (drawn when the sidecar first meets it, kept in the checkpoint)
//! and `start-end` are the line's bytes in it. The same line read again, after a retry,
//! a restart or a `kill -9`, gets the same id and is stored once; two different lines
//! never share one, even when files start alike.

use std::borrow::Cow;

use shared::record_check::{check_record, Rejection};

use shared::event_id::{stream_name, StreamSpan};

use crate::lines::Line;

/// How each line of a batch came out, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub records: usize,
    pub not_json: usize,
    pub invalid_utf8: usize,
    pub truncated: usize,
    /// JSON object lines the aggregator's rules refuse, sent as messages.
    pub rejected: usize,
    /// Empty or whitespace-only lines, skipped.
    pub blank: usize,
}

impl Tally {
    pub fn add(&mut self, t: &Tally) {
        self.records += t.records;
        self.not_json += t.not_json;
        self.invalid_utf8 += t.invalid_utf8;
        self.truncated += t.truncated;
        self.rejected += t.rejected;
        self.blank += t.blank;
    }
}

/// The per-sidecar part of every record, rendered once.
#[derive(Debug, Clone)]
pub struct Splicer {
    /// `","sidecar_forwarded_by":"…","environment":"…","event_id":"<service>:`
    forwarded_env_id: Vec<u8>,
    /// `{"service":"…",` for lines that are not JSON.
    service_field: Vec<u8>,
    /// Length of `<service>:` at the end of `forwarded_env_id`.
    id_prefix_len: usize,
}

impl Splicer {
    pub fn new(service_name: &str, forwarded_by: &str, environment: &str) -> Splicer {
        let mut forwarded_env_id = Vec::new();
        forwarded_env_id.extend_from_slice(b"\",\"sidecar_forwarded_by\":");
        json_string(&mut forwarded_env_id, forwarded_by);
        forwarded_env_id.extend_from_slice(b",\"environment\":");
        json_string(&mut forwarded_env_id, environment);
        forwarded_env_id.extend_from_slice(b",\"event_id\":\"");
        // A service name is checked at start to be [A-Za-z0-9._-], so it needs no escaping.
        forwarded_env_id.extend_from_slice(service_name.as_bytes());
        forwarded_env_id.push(b':');
        let mut service_field = b"{\"service\":".to_vec();
        json_string(&mut service_field, service_name);
        service_field.push(b',');
        Splicer {
            forwarded_env_id,
            service_field,
            id_prefix_len: service_name.len() + 1,
        }
    }

    /// Appends one NDJSON record per line to `out`; `timestamp` is RFC 3339 UTC.
    ///
    /// A JSON object line is kept only if the record made of it passes
    /// [`check_record`], the aggregator's own rules; otherwise it goes as a message
    /// marked `sidecar_rejected` with the reason, so no line can make the aggregator
    /// refuse a batch.
    pub fn enrich(
        &self,
        stream: u64,
        data: &[u8],
        lines: &[Line],
        timestamp: &str,
        out: &mut Vec<u8>,
    ) -> Tally {
        self.enrich_within(stream, data, lines, timestamp, usize::MAX, usize::MAX, out)
            .0
    }

    /// Like [`Splicer::enrich`], but stops before the line that would take the piece
    /// written to `out` past `max_records` records or `max_bytes` bytes (a piece holds at
    /// least one record); returns the tally and how many lines were taken.
    #[allow(clippy::too_many_arguments)]
    pub fn enrich_within(
        &self,
        stream: u64,
        data: &[u8],
        lines: &[Line],
        timestamp: &str,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> (Tally, usize) {
        let start = out.len();
        let mut tally = Tally::default();
        out.reserve((data.len() + lines.len() * (self.forwarded_env_id.len() + 96)).min(max_bytes));
        for (i, line) in lines.iter().enumerate() {
            let mark = out.len();
            let mut t = Tally::default();
            self.enrich_line(stream, data, line, timestamp, out, &mut t);
            if tally.records > 0
                && (tally.records + t.records > max_records || out.len() - start > max_bytes)
            {
                out.truncate(mark);
                return (tally, i);
            }
            tally.add(&t);
        }
        (tally, lines.len())
    }

    fn enrich_line(
        &self,
        stream: u64,
        data: &[u8],
        line: &Line,
        timestamp: &str,
        out: &mut Vec<u8>,
        tally: &mut Tally,
    ) {
        {
            let raw = &data[line.start as usize..(line.start + line.len) as usize];
            if !line.truncated && raw.iter().all(u8::is_ascii_whitespace) {
                // Nothing to say: skipped, counted (see the module comment).
                tally.blank += 1;
                return;
            }
            tally.records += 1;
            if line.truncated {
                tally.truncated += 1;
            }
            let text = String::from_utf8_lossy(raw);
            let invalid = matches!(text, Cow::Owned(_));
            if invalid {
                tally.invalid_utf8 += 1;
            }
            let mark = out.len();
            let mut rejected = None;
            if let Some(body) = object_body(&text).filter(|_| !line.truncated) {
                // A JSON object spoiled only by invalid UTF-8 keeps its fields.
                out.extend_from_slice(body.as_bytes());
                if has_members(body.as_bytes()) {
                    out.push(b',');
                }
                if invalid {
                    out.extend_from_slice(b"\"sidecar_invalid_utf8\":true,");
                }
                self.finish(out, stream, line, timestamp);
                // Every part written is UTF-8, so this only fails on a bug.
                let record = std::str::from_utf8(&out[mark..out.len() - 1])
                    .map_err(|e| Rejection::Json(e.to_string()));
                match record.and_then(check_record) {
                    Ok(()) => return,
                    Err(reason) => {
                        out.truncate(mark);
                        tally.rejected += 1;
                        rejected = Some(reason);
                    }
                }
            }
            tally.not_json += 1;
            out.extend_from_slice(&self.service_field);
            out.extend_from_slice(b"\"message\":");
            json_string(out, &text);
            out.extend_from_slice(b",\"sidecar_not_json\":true,");
            if let Some(reason) = rejected {
                out.extend_from_slice(b"\"sidecar_rejected\":");
                json_string(out, &reason.to_string());
                out.push(b',');
            }
            if invalid {
                out.extend_from_slice(b"\"sidecar_invalid_utf8\":true,");
            }
            if line.truncated {
                out.extend_from_slice(b"\"sidecar_truncated\":true,");
            }
            self.finish(out, stream, line, timestamp);
        }
    }

    /// The sidecar's fields, the record's closing brace and its newline.
    fn finish(&self, out: &mut Vec<u8>, stream: u64, line: &Line, timestamp: &str) {
        out.extend_from_slice(b"\"sidecar_timestamp\":\"");
        out.extend_from_slice(timestamp.as_bytes());
        out.extend_from_slice(&self.forwarded_env_id);
        push_stream(out, stream);
        out.push(b':');
        let (start, end) = span(line);
        push_hex(out, start);
        out.push(b'-');
        push_hex(out, end);
        out.extend_from_slice(b"\"}\n");
    }

    /// A record the aggregator refused on its own (`status`), rebuilt as a message that
    /// carries the record's text (at most [`MAX_REJECTED_TEXT_BYTES`] of it) and keeps
    /// its `event_id`, so that a re-send of either form is still stored once.
    ///
    /// `record` is one NDJSON record as [`Splicer::enrich`] wrote it, without its newline.
    pub fn rewrite_rejected(&self, record: &[u8], status: u16, timestamp: &str) -> Vec<u8> {
        let id = id_of_record(record);
        let cut = record.len() > MAX_REJECTED_TEXT_BYTES;
        let text = String::from_utf8_lossy(&record[..record.len().min(MAX_REJECTED_TEXT_BYTES)]);
        let mut out = Vec::with_capacity(text.len() + 256);
        out.extend_from_slice(&self.service_field);
        out.extend_from_slice(b"\"message\":");
        json_string(&mut out, &text);
        out.extend_from_slice(b",\"sidecar_not_json\":true,\"sidecar_rejected\":");
        json_string(&mut out, &format!("the aggregator answered {status}"));
        out.push(b',');
        if cut {
            out.extend_from_slice(b"\"sidecar_truncated\":true,");
        }
        out.extend_from_slice(b"\"sidecar_timestamp\":\"");
        out.extend_from_slice(timestamp.as_bytes());
        match id {
            Some(id) => {
                // `forwarded_env_id` ends with the service's id prefix, which `id` repeats.
                let prefix = self.forwarded_env_id.len() - self.id_prefix_len;
                out.extend_from_slice(&self.forwarded_env_id[..prefix]);
                out.extend_from_slice(id);
                out.extend_from_slice(b"\"}\n");
            }
            None => {
                // Not a record this sidecar wrote (cannot happen): no id to keep.
                let prefix = self.forwarded_env_id.len() - self.id_prefix_len - EVENT_ID_KEY.len();
                out.extend_from_slice(&self.forwarded_env_id[..prefix]);
                out.extend_from_slice(b"}\n");
            }
        }
        out
    }
}

/// Longest text of a refused record carried by its replacement.
pub const MAX_REJECTED_TEXT_BYTES: usize = 16 * 1024;

/// `,"event_id":"` as the splicer writes it.
const EVENT_ID_KEY: &[u8] = b",\"event_id\":\"";

/// The `event_id` at the end of a record this sidecar wrote.
pub fn id_of_record(record: &[u8]) -> Option<&[u8]> {
    let body = record.strip_suffix(b"\"}")?;
    let at = memchr::memmem::rfind(body, EVENT_ID_KEY)?;
    let id = &body[at + EVENT_ID_KEY.len()..];
    (!id.is_empty() && !id.contains(&b'"')).then_some(id)
}

/// The file offset of the line an `event_id` of this sidecar names.
pub fn offset_of_id(id: &[u8]) -> Option<u64> {
    let span = StreamSpan::parse(std::str::from_utf8(id).ok()?)?;
    Some(span.start)
}

/// The byte interval of its stream a line's record covers: the line's own bytes (its
/// newline and `\r` excluded; a record is never blank, so never empty). Records of
/// one stream never overlap, and a line read again covers the same interval.
pub fn span(line: &Line) -> (u64, u64) {
    (line.offset, line.offset + u64::from(line.len.max(1)))
}

/// The `event_id` [`Splicer::enrich`] gives `line` of the file instance `stream`.
pub fn event_id(service_name: &str, stream: u64, line: &Line) -> String {
    let (start, end) = span(line);
    StreamSpan {
        stream: &stream_name(service_name, stream),
        start,
        end,
    }
    .to_id()
}

/// For what looks like a JSON object, its text up to (not including) the closing brace;
/// whether it is a valid record is decided once the record is built.
fn object_body(text: &str) -> Option<&str> {
    let trimmed = text.trim_ascii();
    (trimmed.starts_with('{') && trimmed.ends_with('}')).then(|| &trimmed[..trimmed.len() - 1])
}

/// Whether an object body (`{` … without its `}`) has at least one member.
fn has_members(body: &[u8]) -> bool {
    body[1..].iter().any(|b| !b.is_ascii_whitespace())
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A stream as 16 lowercase hex digits, as [`shared::event_id`] requires.
fn push_stream(out: &mut Vec<u8>, stream: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(DIGITS[((stream >> (shift * 4)) & 15) as usize]);
    }
}

fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const STREAM: u64 = 0xabc;

    fn enrich_lines(lines: &[(&[u8], bool)]) -> (Vec<Value>, Tally) {
        let splicer = Splicer::new("user-service", "user-service-logging-sidecar", "test");
        let mut data = Vec::new();
        let mut spans = Vec::new();
        for (text, truncated) in lines {
            spans.push(Line {
                start: data.len() as u32,
                len: text.len() as u32,
                offset: 1000 + data.len() as u64,
                truncated: *truncated,
            });
            data.extend_from_slice(text);
            data.push(b'\n');
        }
        let mut out = Vec::new();
        let tally = splicer.enrich(STREAM, &data, &spans, "2026-01-02T03:04:05.006Z", &mut out);
        let text = String::from_utf8(out).expect("output is UTF-8");
        assert!(text.ends_with('\n'));
        let records = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("every record is JSON"))
            .collect();
        (records, tally)
    }

    #[test]
    fn json_objects_keep_their_fields_and_gain_the_sidecars() {
        let first = br#"{"timestamp":"t","service":"user-service","level":"INFO","message":"hi"}"#;
        let (records, tally) = enrich_lines(&[(first, false), (b"  {}  ", false)]);
        assert_eq!(
            records[0],
            json!({"timestamp":"t","service":"user-service","level":"INFO","message":"hi",
                "sidecar_timestamp":"2026-01-02T03:04:05.006Z",
                "sidecar_forwarded_by":"user-service-logging-sidecar",
                "environment":"test","event_id":"user-service:0000000000000abc:3e8-430"})
        );
        assert_eq!(
            records[1]["event_id"],
            event_id(
                "user-service",
                STREAM,
                &Line {
                    start: 0,
                    len: 6,
                    offset: 1000 + first.len() as u64 + 1,
                    truncated: false
                }
            )
        );
        assert_eq!(tally.not_json, 0);
    }

    #[test]
    fn other_lines_become_messages_with_a_marker() {
        let (records, tally) = enrich_lines(&[
            (b"plain \"text\"", false),
            (b"{\"broken\": ", false),
            (b"[1,2]", false),
            (b"", false),
            (b" \t ", false),
        ]);
        assert_eq!(records[0]["message"], "plain \"text\"");
        assert_eq!(records[0]["sidecar_not_json"], true);
        assert_eq!(records[0]["service"], "user-service");
        assert_eq!(records[1]["message"], "{\"broken\": ");
        assert_eq!(records[2]["message"], "[1,2]");
        assert_eq!(records.len(), 3, "blank lines are skipped");
        assert_eq!(tally.not_json, 3);
        assert_eq!(tally.blank, 2);
        assert_eq!(tally.records, 3);
    }

    #[test]
    fn lines_the_aggregator_would_refuse_go_as_messages() {
        let poison: [&[u8]; 5] = [
            br#"{"message":1e999}"#,
            br#"{"level":-1e400}"#,
            br#"{"message":"\ud800"}"#,
            br#"{"\ud800":"x"}"#,
            br#"{"a":[{"b":1e309}]}"#,
        ];
        let lines: Vec<(&[u8], bool)> = poison.iter().map(|l| (*l, false)).collect();
        let (records, tally) = enrich_lines(&lines);
        assert_eq!(tally.rejected, 5);
        assert_eq!(tally.not_json, 5);
        for (record, line) in records.iter().zip(poison) {
            assert_eq!(record["message"], std::str::from_utf8(line).unwrap());
            assert_eq!(record["sidecar_not_json"], true);
            assert!(record["sidecar_rejected"]
                .as_str()
                .unwrap()
                .contains("JSON"));
            // What is sent now passes the aggregator's rules.
            check_record(&record.to_string()).unwrap();
        }
        // The application's own numeric event_id is overridden by the sidecar's string.
        let (records, tally) = enrich_lines(&[(br#"{"event_id":42,"x":1}"#, false)]);
        assert_eq!(tally.rejected, 0);
        assert_eq!(records[0]["x"], 1);
    }

    #[test]
    fn a_refused_record_is_rewritten_with_its_id() {
        let splicer = Splicer::new("user-service", "user-service-logging-sidecar", "test");
        let data = b"{\"a\":1}\n";
        let mut out = Vec::new();
        let line = Line {
            start: 0,
            len: 7,
            offset: 0x1234,
            truncated: false,
        };
        splicer.enrich(STREAM, data, &[line], "2026-01-02T03:04:05.006Z", &mut out);
        let record = &out[..out.len() - 1];
        let id = id_of_record(record).unwrap();
        assert_eq!(id, event_id("user-service", STREAM, &line).as_bytes());
        assert_eq!(offset_of_id(id), Some(0x1234));
        let again = splicer.rewrite_rejected(record, 400, "2026-01-02T03:04:06.000Z");
        assert!(again.ends_with(b"\"}\n"));
        let v: Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(v["event_id"], std::str::from_utf8(id).unwrap());
        assert_eq!(v["message"], std::str::from_utf8(record).unwrap());
        assert_eq!(v["sidecar_rejected"], "the aggregator answered 400");
        assert_eq!(v["service"], "user-service");
        check_record(std::str::from_utf8(&again).unwrap()).unwrap();
        let long = vec![b'x'; MAX_REJECTED_TEXT_BYTES + 10];
        let v: Value = serde_json::from_slice(&splicer.rewrite_rejected(&long, 413, "t")).unwrap();
        assert_eq!(v["sidecar_truncated"], true);
        assert!(v.get("event_id").is_none());
        check_record(&v.to_string()).unwrap();
    }

    #[test]
    fn invalid_utf8_is_replaced_and_cut_lines_are_marked() {
        let (records, tally) = enrich_lines(&[
            (b"bad \xff byte", false),
            (b"{\"message\":\"caf\xe9\"}", false),
            (br#"{"message":"cut"#, true),
        ]);
        assert_eq!(records[0]["message"], "bad \u{fffd} byte");
        assert_eq!(records[0]["sidecar_invalid_utf8"], true);
        assert_eq!(records[1]["message"], "caf\u{fffd}");
        assert_eq!(records[1]["sidecar_invalid_utf8"], true);
        assert!(records[1].get("sidecar_not_json").is_none());
        assert_eq!(records[2]["sidecar_truncated"], true);
        assert_eq!(records[2]["sidecar_not_json"], true);
        assert_eq!(tally.invalid_utf8, 2);
        assert_eq!(tally.truncated, 1);
    }

    #[test]
    fn hex() {
        let mut out = Vec::new();
        push_hex(&mut out, 0);
        out.push(b' ');
        push_hex(&mut out, u64::MAX);
        assert_eq!(out, b"0 ffffffffffffffff");
    }
}
