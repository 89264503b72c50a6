//! The table and the text of every statement: quoting, the schema, and the filters of
//! `GET /logs` and of scans as SQL conditions.
//!
//! Values go into the text as string literals (ClickHouse 18.16 has no query
//! parameters), each through [`quote`], which escapes every byte that could end one.

use std::fmt::Write as _;

use crate::embedded::filter::Phrase;
use crate::query::{LogQuery, Order};
use crate::store::ScanQuery;

/// A string literal holding exactly `v`.
pub fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('\'');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The record time column is clamped into what a `Date` holds (1970 to 2096) for the
/// partition only; the column itself keeps any time. The constants are typed, so that
/// no version has to find a common type of `Int64` and `UInt64`; the day number stays
/// below 65536, which every version's `toDate` reads as days.
pub const PARTITION_BY: &str = "toDate(intDiv(greatest(least(ts, toInt64(4000000000000000)), toInt64(0)), toInt64(86400000000)))";

/// What the server can do, found at start from its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Per-column compression codecs (`CODEC(...)`), from 19.x; 18.16 compresses every
    /// column with the server's default (LZ4).
    pub codecs: bool,
    /// The setting `max_partitions_per_insert_block` exists (19.x on): a batch of
    /// records spread over more than 100 days would otherwise be refused.
    pub partition_limit: bool,
}

impl Capabilities {
    /// From `SELECT version()`, such as `18.16.1` or `24.8.4.13`.
    pub fn of_version(version: &str) -> Capabilities {
        let mut parts = version
            .trim()
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let major = parts.next().unwrap_or(0);
        let modern = major >= 20;
        Capabilities {
            codecs: modern,
            partition_limit: modern,
        }
    }
}

/// `CREATE TABLE IF NOT EXISTS` for `table` (already `db`.`name`, quoted).
///
/// `ReplacingMergeTree(ver)` ordered by `(ts, dedup_key)`: the copies of a record sent
/// twice (same `event_id`, same own `timestamp`) have the same sorting key, so a merge
/// keeps one, and `FINAL` shows one before the merge; `ver` is larger for a smaller
/// id, so the copy kept is the first stored. A record without an `event_id` gets a
/// `dedup_key` of its own id and never collapses with another.
pub fn create_table(table: &str, caps: Capabilities) -> String {
    let (delta, zstd) = if caps.codecs {
        (" CODEC(Delta, ZSTD(1))", " CODEC(ZSTD(3))")
    } else {
        ("", "")
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    ts Int64{delta},
    id Int64{zstd},
    ver UInt64{zstd},
    dedup_key String{zstd},
    event_id Nullable(String){zstd},
    service Nullable(String),
    level Nullable(String),
    request_id Nullable(String){zstd},
    message Nullable(String){zstd},
    body String{zstd}
) ENGINE = ReplacingMergeTree(ver)
PARTITION BY {PARTITION_BY}
ORDER BY (ts, dedup_key)"
    )
}

/// The columns of an insert, in the order [`super::write`] writes them.
pub const INSERT_COLUMNS: &str =
    "ts, id, ver, dedup_key, event_id, service, level, request_id, message, body";

/// The key that makes two rows the same record.
pub fn dedup_key(event_id: Option<&str>, id: i64) -> String {
    match event_id {
        Some(e) => format!("e:{e}"),
        None => format!("n:{id}"),
    }
}

/// The `event_id` back from a [`dedup_key`].
pub fn event_id_of(dedup_key: &str) -> Option<String> {
    dedup_key.strip_prefix("e:").map(str::to_owned)
}

/// A regular expression (RE2) matching the phrase in lowercased text: its words in
/// order, whole, separated by anything but letters and digits; the last one a prefix
/// when the phrase says so. Words hold only letters and digits, which RE2 reads
/// literally. (Case is folded by `lowerUTF8` on the column rather than `(?i)`: 18.16
/// checks a pattern's literal part case-sensitively before running it.)
pub fn phrase_regex(phrase: &Phrase) -> Option<String> {
    if phrase.words.is_empty() {
        return None;
    }
    const SEP: &str = "[^\\pL\\pN]";
    let mut re = format!("(^|{SEP})");
    re.push_str(&phrase.words.join(&format!("{SEP}+")));
    if !phrase.prefix {
        re.push_str(&format!("({SEP}|$)"));
    }
    Some(re)
}

/// `(ts, id)` after `(ts_us, id)` in `order`.
pub fn after(order: Order, ts_us: i64, id: i64) -> String {
    let cmp = match order {
        Order::Asc => '>',
        Order::Desc => '<',
    };
    format!("(ts {cmp} {ts_us} OR (ts = {ts_us} AND id {cmp} {id}))")
}

/// `ORDER BY` of a page in `order`.
pub fn order_by(order: Order) -> &'static str {
    match order {
        Order::Asc => "ORDER BY ts ASC, id ASC",
        Order::Desc => "ORDER BY ts DESC, id DESC",
    }
}

/// The conditions of a `GET /logs` query, without its cursor.
pub fn log_conditions(q: &LogQuery) -> Vec<String> {
    let mut conds = Vec::new();
    if let Some(s) = &q.service {
        conds.push(format!("service = {}", quote(s)));
    }
    if let Some(l) = &q.level {
        conds.push(format!("level = {}", quote(l)));
    }
    if let Some(r) = &q.request_id {
        conds.push(format!("request_id = {}", quote(r)));
    }
    if let Some(t) = q.since_us {
        conds.push(format!("ts >= {t}"));
    }
    if let Some(t) = q.until_us {
        conds.push(format!("ts < {t}"));
    }
    if let Some(text) = &q.text {
        match phrase_regex(&Phrase::from_query_text(text)) {
            Some(re) => conds.push(format!("match(lowerUTF8(message), {})", quote(&re))),
            // A phrase without a word matches nothing (the API refuses it anyway).
            None => conds.push("0".to_owned()),
        }
    }
    conds
}

/// The conditions of a scan, without its position.
pub fn scan_conditions(q: &ScanQuery) -> Vec<String> {
    let mut conds = vec![
        format!("ts >= {}", q.since_us),
        format!("ts < {}", q.until_us),
    ];
    if let Some(s) = &q.service {
        conds.push(format!("service = {}", quote(s)));
    }
    if let Some(l) = &q.level {
        conds.push(format!("level = {}", quote(l)));
    }
    conds
}

/// ` WHERE a AND b`, or nothing.
pub fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::text_phrase;

    #[test]
    fn literals_hold_any_text() {
        assert_eq!(quote("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(quote("\u{0}\n"), "'\\x00\\x0a'");
        assert_eq!(quote("é"), "'é'");
    }

    #[test]
    fn phrases_become_word_patterns() {
        let p = Phrase::from_query_text(&text_phrase("Payment refused").unwrap());
        assert_eq!(
            phrase_regex(&p).unwrap(),
            "(^|[^\\pL\\pN])payment[^\\pL\\pN]+refused([^\\pL\\pN]|$)"
        );
        let p = Phrase::from_query_text(&text_phrase("time*").unwrap());
        assert_eq!(phrase_regex(&p).unwrap(), "(^|[^\\pL\\pN])time");
    }

    #[test]
    fn versions_say_what_the_schema_may_use() {
        assert_eq!(Capabilities::of_version("18.16.1"), Capabilities::default());
        assert!(Capabilities::of_version("24.8.4.13").codecs);
        assert!(!create_table("t", Capabilities::default()).contains("CODEC"));
        assert!(create_table("t", Capabilities::of_version("23.3")).contains("CODEC"));
        assert_eq!(dedup_key(Some("x"), 1), "e:x");
        assert_eq!(event_id_of(&dedup_key(Some("x"), 1)).as_deref(), Some("x"));
        assert_eq!(event_id_of(&dedup_key(None, 7)), None);
    }
}
