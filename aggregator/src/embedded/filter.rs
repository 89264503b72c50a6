//! A `GET /logs` query as a predicate over rows, and the words text search sees.
//!
//! Text search matches the words of `q`, in order, as whole words, case-insensitive; a
//! trailing `*` makes the last word a prefix. A word is a run of letters and digits,
//! exactly as [`crate::query::text_phrase`] splits `q`, so both sides agree.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::query::{LogQuery, Order};

/// The lowercased words of `text`, in order, appended to `out`.
pub fn words_into(text: &str, out: &mut Vec<String>) {
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        if !w.is_empty() {
            out.push(lower(w));
        }
    }
}

/// `w` lowercased; ASCII without a new allocation for the check.
pub fn lower(w: &str) -> String {
    if w.is_ascii() {
        w.to_ascii_lowercase()
    } else {
        w.to_lowercase()
    }
}

/// The words of a query, to be found in this order.
#[derive(Debug, Clone)]
pub struct Phrase {
    pub words: Vec<String>,
    /// The last word is a prefix (`conn*`).
    pub prefix: bool,
    /// A substring searcher per whole word, built once per query rather than per row.
    finders: Vec<memchr::memmem::Finder<'static>>,
}

impl PartialEq for Phrase {
    fn eq(&self, other: &Phrase) -> bool {
        self.words == other.words && self.prefix == other.prefix
    }
}

impl Eq for Phrase {}

impl Phrase {
    /// From the phrase [`crate::query::text_phrase`] built: `"w1 w2"` or `"w1 w2"*`.
    pub fn from_query_text(text: &str) -> Phrase {
        let prefix = text.ends_with('*');
        let mut words = Vec::new();
        words_into(text, &mut words);
        let whole = words.len() - usize::from(prefix && !words.is_empty());
        let finders = words[..whole]
            .iter()
            .map(|w| memchr::memmem::Finder::new(w.as_bytes()).into_owned())
            .collect();
        Phrase {
            words,
            prefix,
            finders,
        }
    }

    /// Whether `text` holds the phrase. Cheap rejections first: for ASCII text, every
    /// word but a prefix must appear in the lowercased text (a SIMD substring search)
    /// before the text's words are compared exactly, without allocating.
    pub fn matches(&self, text: &str, _scratch: &mut Vec<String>) -> bool {
        if self.words.is_empty() {
            return false;
        }
        if text.is_ascii() {
            let present = LOWER.with(|buf| {
                let mut buf = buf.borrow_mut();
                buf.clear();
                buf.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
                self.finders.iter().all(|f| f.find(&buf).is_some())
            });
            if !present {
                return false;
            }
        }
        self.matches_words(text)
    }

    /// The substring searchers of the whole words (all but a prefix), in order.
    pub fn finders(&self) -> &[memchr::memmem::Finder<'static>] {
        &self.finders
    }

    /// Whether `text`'s words hold the phrase: the exact comparison alone, for a text
    /// that a cheaper test has not rejected.
    pub fn matches_words(&self, text: &str) -> bool {
        if self.words.is_empty() {
            return false;
        }
        let n = self.words.len();
        let got: Vec<&str> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        if got.len() < n {
            return false;
        }
        (0..=got.len() - n).any(|start| {
            self.words.iter().enumerate().all(|(i, w)| {
                let g = got[start + i];
                if i == n - 1 && self.prefix {
                    if g.is_ascii() {
                        g.len() >= w.len()
                            && g.as_bytes()[..w.len()].eq_ignore_ascii_case(w.as_bytes())
                    } else {
                        lower(g).starts_with(w.as_str())
                    }
                } else if g.is_ascii() {
                    g.eq_ignore_ascii_case(w)
                } else {
                    lower(g) == *w
                }
            })
        })
    }
}

thread_local! {
    /// The lowercased text being searched, reused between rows.
    static LOWER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A query ready to test rows against.
#[derive(Debug, Clone)]
pub struct Filter {
    pub service: Option<String>,
    pub level: Option<String>,
    pub request_id: Option<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub phrase: Option<Phrase>,
}

impl Filter {
    pub fn new(q: &LogQuery) -> Filter {
        Filter {
            service: q.service.clone(),
            level: q.level.clone(),
            request_id: q.request_id.clone(),
            since_us: q.since_us,
            until_us: q.until_us,
            phrase: q.text.as_deref().map(Phrase::from_query_text),
        }
    }

    /// No filter at all: every record matches.
    pub fn is_all(&self) -> bool {
        self.service.is_none()
            && self.level.is_none()
            && self.request_id.is_none()
            && self.since_us.is_none()
            && self.until_us.is_none()
            && self.phrase.is_none()
    }

    /// Only service and level filter, which per-source counts answer.
    pub fn only_labels(&self) -> bool {
        self.request_id.is_none()
            && self.since_us.is_none()
            && self.until_us.is_none()
            && self.phrase.is_none()
    }

    pub fn time_ok(&self, ts: i64) -> bool {
        self.since_us.map_or(true, |s| ts >= s) && self.until_us.map_or(true, |u| ts < u)
    }

    /// Whether a source whose times lie in `[min, max]` can hold a match.
    pub fn time_overlaps(&self, min: i64, max: i64) -> bool {
        self.since_us.map_or(true, |s| max >= s) && self.until_us.map_or(true, |u| min < u)
    }

    pub fn labels_ok(&self, service: Option<&str>, level: Option<&str>) -> bool {
        self.service.as_deref().map_or(true, |s| service == Some(s))
            && self.level.as_deref().map_or(true, |l| level == Some(l))
    }

    pub fn request_ok(&self, request_id: Option<&str>) -> bool {
        self.request_id
            .as_deref()
            .map_or(true, |r| request_id == Some(r))
    }

    pub fn text_ok(&self, message: Option<&str>, scratch: &mut Vec<String>) -> bool {
        match &self.phrase {
            None => true,
            Some(p) => message.is_some_and(|m| p.matches(m, scratch)),
        }
    }
}

/// Where a page starts: rows strictly after this position in the page's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub order: Order,
    pub at: Option<(i64, i64)>,
}

impl After {
    /// Whether the row at `key` comes after the cursor in this order.
    pub fn admits(&self, key: (i64, i64)) -> bool {
        match (self.at, self.order) {
            (None, _) => true,
            (Some(c), Order::Asc) => key > c,
            (Some(c), Order::Desc) => key < c,
        }
    }
}

/// The `request_id` of a stored body as the record parser read it (a string as it is,
/// a number or boolean written out, anything else none); `None` for a body that is not
/// an object.
pub fn request_id_of(body: &str) -> Option<String> {
    field_of(body, "request_id")
}

/// A top-level field of a stored body, as the record parser reads it.
pub fn field_of(body: &str, name: &'static str) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(body);
    de.deserialize_map(FieldVisitor(name)).ok().flatten()
}

struct FieldVisitor(&'static str);

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Option<String>, M::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.0 {
                let v: serde_json::Value = map.next_value()?;
                found = match v {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Number(n) => Some(if let Some(i) = n.as_i64() {
                        i.to_string()
                    } else if let Some(u) = n.as_u64() {
                        u.to_string()
                    } else {
                        n.as_f64().map(|f| f.to_string()).unwrap_or_default()
                    }),
                    serde_json::Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phrase(q: &str) -> Phrase {
        Phrase::from_query_text(&crate::query::text_phrase(q).unwrap())
    }

    #[test]
    fn phrases_match_whole_words_in_order() {
        let mut s = Vec::new();
        let p = phrase("Connection refused");
        assert!(p.matches("upstream: connection REFUSED by peer", &mut s));
        assert!(!p.matches("refused connection", &mut s));
        assert!(!p.matches("connections refused", &mut s));
        assert!(phrase("conn*").matches("Connection lost", &mut s));
        assert!(!phrase("conn*").matches("reconnect", &mut s));
        assert!(phrase("GET users 42").matches("\"GET\" /users/42 OR x", &mut s));
        assert!(phrase("straße").matches("Die STRASSE, die Straße", &mut s));
        assert!(phrase("200").matches("GET /x 200 12ms", &mut s));
        assert!(!phrase("200").matches("GET /x 2000 12ms", &mut s));
    }

    #[test]
    fn request_ids_read_as_the_parser_reads_them() {
        let r = crate::record::parse(
            r#"{"request_id":42,"x":{"request_id":"no"}}"#,
            &crate::record::Received::now(),
        )
        .unwrap();
        assert_eq!(request_id_of(&r.body), r.request_id);
        assert_eq!(
            request_id_of(r#"{"a":[1],"request_id":"r-1"}"#).as_deref(),
            Some("r-1")
        );
        assert_eq!(request_id_of(r#"{"request_id":null}"#), None);
        assert_eq!(request_id_of("[]"), None);
    }

    #[test]
    fn cursors_admit_rows_strictly_after() {
        let a = After {
            order: Order::Asc,
            at: Some((10, 5)),
        };
        assert!(a.admits((10, 6)) && a.admits((11, 0)) && !a.admits((10, 5)));
        let d = After {
            order: Order::Desc,
            at: Some((10, 5)),
        };
        assert!(d.admits((10, 4)) && d.admits((9, 9)) && !d.admits((10, 5)));
    }
}
