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
//! `event_id` is `<SERVICE_NAME>-<fingerprint hex>-<offset hex>`: the same line read
//! again, after a restart or a lost checkpoint, gets the same id, and the aggregator
//! stores it once.

use serde::de::IgnoredAny;

use crate::fingerprint::FileKey;
use crate::lines::Line;

/// How each line of a batch came out, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub records: usize,
    pub not_json: usize,
    pub invalid_utf8: usize,
    pub truncated: usize,
}

/// The per-sidecar part of every record, rendered once.
#[derive(Debug, Clone)]
pub struct Splicer {
    /// `","sidecar_forwarded_by":"…","environment":"…","event_id":"<service>-`
    forwarded_env_id: Vec<u8>,
    /// `{"service":"…",` for lines that are not JSON.
    service_field: Vec<u8>,
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
        forwarded_env_id.push(b'-');
        let mut service_field = b"{\"service\":".to_vec();
        json_string(&mut service_field, service_name);
        service_field.push(b',');
        Splicer {
            forwarded_env_id,
            service_field,
        }
    }

    /// Appends one NDJSON record per line to `out`; `timestamp` is RFC 3339 UTC.
    pub fn enrich(
        &self,
        key: &FileKey,
        data: &[u8],
        lines: &[Line],
        timestamp: &str,
        out: &mut Vec<u8>,
    ) -> Tally {
        let mut tally = Tally::default();
        out.reserve(data.len() + lines.len() * (self.forwarded_env_id.len() + 96));
        for line in lines {
            let raw = &data[line.start as usize..(line.start + line.len) as usize];
            tally.records += 1;
            if line.truncated {
                tally.truncated += 1;
            }
            let kept = if line.truncated {
                None
            } else {
                json_object_body(raw)
            };
            match kept {
                Some(body) => {
                    out.extend_from_slice(body);
                    if has_members(body) {
                        out.push(b',');
                    }
                }
                None => {
                    let text = String::from_utf8_lossy(raw);
                    let invalid = matches!(text, std::borrow::Cow::Owned(_));
                    if invalid {
                        tally.invalid_utf8 += 1;
                    }
                    // A JSON object spoiled only by invalid UTF-8 keeps its fields.
                    let repaired = if invalid && !line.truncated {
                        json_object_body(text.as_bytes())
                    } else {
                        None
                    };
                    match repaired {
                        Some(body) => {
                            out.extend_from_slice(body);
                            if has_members(body) {
                                out.push(b',');
                            }
                        }
                        None => {
                            tally.not_json += 1;
                            out.extend_from_slice(&self.service_field);
                            out.extend_from_slice(b"\"message\":");
                            json_string(out, &text);
                            out.extend_from_slice(b",\"sidecar_not_json\":true,");
                        }
                    }
                    if invalid {
                        out.extend_from_slice(b"\"sidecar_invalid_utf8\":true,");
                    }
                }
            }
            if line.truncated {
                out.extend_from_slice(b"\"sidecar_truncated\":true,");
            }
            out.extend_from_slice(b"\"sidecar_timestamp\":\"");
            out.extend_from_slice(timestamp.as_bytes());
            out.extend_from_slice(&self.forwarded_env_id);
            push_hex(out, key.fingerprint);
            out.push(b'-');
            push_hex(out, line.offset);
            out.extend_from_slice(b"\"}\n");
        }
        tally
    }
}

/// The `event_id` [`Splicer::enrich`] gives the line at `offset` of the file `key`.
pub fn event_id(service_name: &str, key: &FileKey, offset: u64) -> String {
    format!("{service_name}-{:x}-{offset:x}", key.fingerprint)
}

/// For a valid JSON object, its text up to (not including) the closing brace.
fn json_object_body(raw: &[u8]) -> Option<&[u8]> {
    let trimmed = raw.trim_ascii();
    if trimmed.first() != Some(&b'{') || trimmed.last() != Some(&b'}') {
        return None;
    }
    // serde_json skips the bytes of ignored strings without checking their UTF-8.
    let text = std::str::from_utf8(trimmed).ok()?;
    serde_json::from_str::<IgnoredAny>(text).ok()?;
    Some(&trimmed[..trimmed.len() - 1])
}

/// Whether an object body (`{` … without its `}`) has at least one member.
fn has_members(body: &[u8]) -> bool {
    body[1..].iter().any(|b| !b.is_ascii_whitespace())
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
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

    const KEY: FileKey = FileKey {
        dev: 1,
        ino: 2,
        fingerprint: 0xabc,
    };

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
        let tally = splicer.enrich(&KEY, &data, &spans, "2026-01-02T03:04:05.006Z", &mut out);
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
                "environment":"test","event_id":"user-service-abc-3e8"})
        );
        assert_eq!(
            records[1]["event_id"],
            event_id("user-service", &KEY, 1000 + first.len() as u64 + 1)
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
        ]);
        assert_eq!(records[0]["message"], "plain \"text\"");
        assert_eq!(records[0]["sidecar_not_json"], true);
        assert_eq!(records[0]["service"], "user-service");
        assert_eq!(records[1]["message"], "{\"broken\": ");
        assert_eq!(records[2]["message"], "[1,2]");
        assert_eq!(records[3]["message"], "");
        assert_eq!(tally.not_json, 4);
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
