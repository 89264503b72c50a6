//! `GET /logs` parameters checked and turned into a [`LogQuery`] the store can run.
//!
//! The cursor is the position of the last record of a page, `(timestamp, id)`, so a next
//! page is an index seek, never an offset scan, and records that arrive meanwhile neither
//! shift nor repeat a page.
//!
//! A text search costs about one pass over each of its words' postings, so its words
//! are bounded: a word repeated in a row counts once (`error error error` searches
//! `error`), and a search with more than `QUERY_MAX_TERMS` words is refused. The time a
//! query may take is the store's deadline (`QUERY_TIMEOUT`).

use chrono::DateTime;
use serde::Deserialize;

/// Which way pages go: `desc` (the default) starts at the newest record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// Where the previous page stopped, for the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub order: Order,
    pub ts_us: i64,
    pub id: i64,
}

impl Cursor {
    /// An opaque string for clients; its shape may change between versions.
    pub fn encode(&self) -> String {
        let o = match self.order {
            Order::Asc => 'a',
            Order::Desc => 'd',
        };
        format!("{o}{}.{}", signed_hex(self.ts_us), signed_hex(self.id))
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let order = match text.as_bytes().first()? {
            b'a' => Order::Asc,
            b'd' => Order::Desc,
            _ => return None,
        };
        let (ts, id) = text[1..].split_once('.')?;
        let ts_us = parse_signed_hex(ts)?;
        let id = parse_signed_hex(id)?;
        Some(Cursor { order, ts_us, id })
    }
}

/// `-1f` for -31: `{:x}` would write a negative number's two's complement, which does
/// not read back as an `i64`.
fn signed_hex(v: i64) -> String {
    if v < 0 {
        format!("-{:x}", v.unsigned_abs())
    } else {
        format!("{v:x}")
    }
}

/// The inverse of [`signed_hex`], and nothing else (no `+`, no upper case).
fn parse_signed_hex(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty()
        || !digits
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    i64::from_str_radix(text, 16).ok()
}

/// A checked query: every field is ready for SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub service: Option<String>,
    /// Upper-cased, as stored.
    pub level: Option<String>,
    pub request_id: Option<String>,
    /// Inclusive, microseconds since the epoch.
    pub since_us: Option<i64>,
    /// Exclusive, microseconds since the epoch.
    pub until_us: Option<i64>,
    /// An FTS5 phrase built by [`text_phrase`], safe to bind.
    pub text: Option<String>,
    pub limit: usize,
    pub order: Order,
    pub cursor: Option<Cursor>,
}

/// The query string of `GET /logs`, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct LogParams {
    pub service: Option<String>,
    pub level: Option<String>,
    pub request_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub q: Option<String>,
    pub limit: Option<String>,
    pub order: Option<String>,
    pub cursor: Option<String>,
}

/// A parameter that cannot be used, with the reason in words for the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {param}: {reason}")]
pub struct ParamError {
    pub param: &'static str,
    pub reason: String,
}

fn bad(param: &'static str, reason: impl Into<String>) -> ParamError {
    ParamError {
        param,
        reason: reason.into(),
    }
}

/// An empty value (`service=`) counts as absent; any other is used as sent.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl LogParams {
    /// [`LogParams::to_query_within`] with the default `QUERY_MAX_TERMS`.
    pub fn to_query(&self, default_limit: usize, max_limit: usize) -> Result<LogQuery, ParamError> {
        self.to_query_within(
            default_limit,
            max_limit,
            crate::config::DEFAULT_QUERY_MAX_TERMS,
        )
    }

    /// Checks every parameter; `limit` above `max_limit` is lowered to it; a search of
    /// more than `max_terms` words (repeats in a row folded) is refused.
    pub fn to_query_within(
        &self,
        default_limit: usize,
        max_limit: usize,
        max_terms: usize,
    ) -> Result<LogQuery, ParamError> {
        let time = |param: &'static str, value: &Option<String>| {
            present(value)
                .map(|v| {
                    DateTime::parse_from_rfc3339(v)
                        .map(|t| t.timestamp_micros())
                        .map_err(|e| {
                            bad(
                                param,
                                format!("{v:?} is not an RFC 3339 time such as 2024-05-01T12:00:00Z ({e})"),
                            )
                        })
                })
                .transpose()
        };
        let limit = match present(&self.limit) {
            None => default_limit,
            // A whole number too large for the machine is as good as the largest.
            Some(v)
                if v.bytes().all(|b| b.is_ascii_digit())
                    && v.trim_start_matches('0').len() > 18 =>
            {
                max_limit
            }
            Some(v) => match v.parse::<usize>() {
                Ok(0) | Err(_) => {
                    return Err(bad(
                        "limit",
                        format!("{v:?} is not a whole number between 1 and {max_limit}"),
                    ))
                }
                Ok(n) => n.min(max_limit),
            },
        };
        let order = match present(&self.order) {
            None | Some("desc" | "DESC") => Order::Desc,
            Some("asc" | "ASC") => Order::Asc,
            Some(other) => return Err(bad("order", format!("{other:?} is not asc or desc"))),
        };
        let cursor = match present(&self.cursor) {
            None => None,
            Some(v) => {
                let c = Cursor::decode(v).ok_or_else(|| {
                    bad("cursor", "not a next_cursor value returned by GET /logs")
                })?;
                if c.order != order {
                    return Err(bad(
                        "cursor",
                        "it was returned for the other order; pass the same order= again",
                    ));
                }
                Some(c)
            }
        };
        let text = match present(&self.q) {
            None => None,
            Some(q) => {
                let words = folded_words(q).len();
                if words > max_terms {
                    return Err(bad(
                        "q",
                        format!("it has {words} words; a search may have at most {max_terms} (QUERY_MAX_TERMS)"),
                    ));
                }
                Some(
                    phrase(q, max_terms)
                        .ok_or_else(|| bad("q", "it contains no letter or digit"))?,
                )
            }
        };
        Ok(LogQuery {
            service: present(&self.service).map(str::to_owned),
            level: present(&self.level).map(str::to_ascii_uppercase),
            request_id: present(&self.request_id).map(str::to_owned),
            since_us: time("since", &self.since)?,
            until_us: time("until", &self.until)?,
            text,
            limit,
            order,
            cursor,
        })
    }
}

/// The words of a search, in order, a word repeated in a row kept once (FTS5 folds
/// case, so `Error ERROR` is one word too).
pub fn folded_words(q: &str) -> Vec<&str> {
    let mut words: Vec<&str> = Vec::new();
    for word in q.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let repeat = words.last().is_some_and(|last| {
            last.len() == word.len()
                && last
                    .chars()
                    .flat_map(char::to_lowercase)
                    .eq(word.chars().flat_map(char::to_lowercase))
        });
        if !repeat {
            words.push(word);
        }
    }
    words
}

/// `q` as one FTS5 phrase: its words, in order, as whole words; a trailing `*` makes the
/// last word a prefix. Only letters and digits reach FTS5, so no input is a syntax error.
/// Repeats in a row are folded and at most `max_words` words are kept (a prefix of the
/// phrase matches a superset of what the whole phrase matches).
pub fn phrase(q: &str, max_words: usize) -> Option<String> {
    let mut words = folded_words(q);
    if words.is_empty() {
        return None;
    }
    let whole = words.len() <= max_words;
    words.truncate(max_words.max(1));
    let prefix = if whole && q.trim_end().ends_with('*') {
        "*"
    } else {
        ""
    };
    Some(format!("\"{}\"{prefix}", words.join(" ")))
}

/// [`phrase`] with the default word limit: the form the store uses to find a request id
/// through the text index, before it compares the id exactly, so a prefix suffices.
pub fn text_phrase(q: &str) -> Option<String> {
    phrase(q, crate::config::DEFAULT_QUERY_MAX_TERMS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameters as actix-web decodes them from a query string.
    fn params(pairs: &[(&str, &str)]) -> LogParams {
        let qs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        actix_web::web::Query::<LogParams>::from_query(&qs.join("&"))
            .unwrap()
            .into_inner()
    }

    #[test]
    fn defaults_and_clamping() {
        let q = params(&[]).to_query_within(100, 1000, 16).unwrap();
        assert_eq!(q.limit, 100);
        assert_eq!(q.order, Order::Desc);
        assert_eq!(q.cursor, None);
        let q = params(&[("limit", "5000"), ("order", "ASC"), ("level", "info")])
            .to_query_within(100, 1000, 16)
            .unwrap();
        assert_eq!(q.limit, 1000);
        assert_eq!(q.order, Order::Asc);
        let huge = params(&[("limit", "99999999999999999999999999")])
            .to_query(100, 1000)
            .unwrap();
        assert_eq!(huge.limit, 1000);
        assert_eq!(q.level.as_deref(), Some("INFO"));
        let q = params(&[("service", ""), ("since", "2024-05-01T00:00:00Z")])
            .to_query_within(100, 1000, 16)
            .unwrap();
        assert_eq!(q.service, None);
        assert_eq!(q.since_us, Some(1_714_521_600_000_000));
    }

    #[test]
    fn bad_parameters_are_named() {
        for (pairs, param) in [
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "ten")], "limit"),
            (vec![("order", "up")], "order"),
            (vec![("since", "yesterday")], "since"),
            (vec![("until", "2024-13-01T00:00:00Z")], "until"),
            (vec![("cursor", "zzz")], "cursor"),
            (vec![("cursor", "a1.2")], "cursor"),
            (vec![("q", "%21%21")], "q"),
        ] {
            let err = params(&pairs).to_query_within(100, 1000, 16).unwrap_err();
            assert_eq!(err.param, param, "{pairs:?}: {err}");
        }
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            order: Order::Desc,
            ts_us: 1_714_521_600_000_000,
            id: 77,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        // Records from before 1970 have negative times; their cursors read back too.
        for (ts_us, id) in [(-1, 1), (i64::MIN, i64::MAX), (i64::MAX, 0)] {
            let c = Cursor {
                order: Order::Asc,
                ts_us,
                id,
            };
            assert_eq!(Cursor::decode(&c.encode()), Some(c), "{}", c.encode());
        }
        assert_eq!(Cursor::decode(""), None);
        assert_eq!(Cursor::decode("d1"), None);
        assert_eq!(Cursor::decode("d+1.2"), None);
        assert_eq!(Cursor::decode("dA.2"), None);
        assert_eq!(Cursor::decode("d-.2"), None);
    }

    #[test]
    fn text_search_is_always_a_safe_phrase() {
        assert_eq!(
            text_phrase("connection refused").as_deref(),
            Some("\"connection refused\"")
        );
        assert_eq!(
            text_phrase("\"GET\" /users/42 OR x").as_deref(),
            Some("\"GET users 42 OR x\"")
        );
        assert_eq!(text_phrase("time*").as_deref(), Some("\"time\"*"));
        assert_eq!(text_phrase("*()"), None);
    }

    #[test]
    fn repeated_and_excess_words_are_folded_or_refused() {
        let repeated = vec!["error"; 1000].join(" ");
        let q = params(&[("q", &repeated)])
            .to_query_within(100, 1000, 16)
            .unwrap();
        assert_eq!(q.text.as_deref(), Some("\"error\""));
        assert_eq!(
            folded_words("Error ERROR error, warn error"),
            ["Error", "warn", "error"]
        );
        let many: Vec<String> = (0..17).map(|i| format!("w{i}")).collect();
        let err = params(&[("q", &many.join("+"))])
            .to_query_within(100, 1000, 16)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid q: it has 17 words; a search may have at most 16 (QUERY_MAX_TERMS)"
        );
        assert!(params(&[("q", &many[..16].join("+"))])
            .to_query_within(100, 1000, 16)
            .is_ok());
        // A request id's phrase is cut to a prefix; the exact comparison follows.
        let id = (0..40)
            .map(|i| format!("p{i}"))
            .collect::<Vec<_>>()
            .join("-");
        let p = text_phrase(&id).unwrap();
        assert_eq!(p.split(' ').count(), 16, "{p}");
        assert_eq!(phrase("conn refus*", 1).as_deref(), Some("\"conn\""));
    }
}
