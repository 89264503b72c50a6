//! Per row group, how many rows hold each frequent word and each frequent pair of
//! adjacent words: the `total` of a search for one word or two is then known without
//! reading the group's messages.
//!
//! A search counts its matches exactly, so a word in most row groups used to cost a
//! pass over every message of the store (the Bloom filter of words prunes only the
//! groups without it). A word or pair held by at least [`TERM_MIN_ROWS`] rows of a group
//! is a *term* of that group, stored with its row count in the footer's index. A search
//! for one whole word, or for two (`connection refused`: the phrase matches exactly the
//! rows where the pair is adjacent, in order), takes a group's count from its terms;
//! one whose words are rare in the group, a prefix (`conn*`), or three words or more
//! reads the group as before. Terms are exact: each is stored as its text, and a row is
//! counted once however often it holds the term; two terms whose hashes collide while
//! counting are both left out (the groups holding them are read).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The rows of a group that must hold a word or pair for it to be a term: rarer ones are
/// found by reading the group (after its Bloom filter), and would make the index large.
pub const TERM_MIN_ROWS: u32 = 32;
/// The most terms kept per row group (the most frequent), so that the footer stays
/// small whatever the messages.
pub const TERMS_KEPT: usize = 512;
/// The longest word that can be part of a term: a longer one (a token, an encoded
/// blob) is found by reading the group, and the footer holds at most [`TERMS_KEPT`]
/// terms of at most about twice this (about 64 KiB per row group).
pub const TERM_WORD_MAX_BYTES: usize = 64;

/// The terms of a row group with the rows holding each: a lowercased word, or two
/// adjacent ones joined by a space (a word never holds one), sorted by text. Held as one
/// string and two arrays (every open segment's terms stay in memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terms {
    /// The terms one after the other, in order.
    text: String,
    /// Term `i` ends at `ends[i]` in `text`.
    ends: Vec<u32>,
    /// The rows holding term `i`.
    rows: Vec<u32>,
}

impl Terms {
    /// From stored pairs, in any order; a term given twice, or longer than a term can
    /// be, is an error.
    pub fn from_pairs(mut pairs: Vec<(String, u32)>) -> Result<Terms, String> {
        pairs.sort_unstable();
        if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err("a term is given twice".to_owned());
        }
        if pairs.len() > TERMS_KEPT
            || pairs
                .iter()
                .any(|(t, _)| t.len() > 2 * TERM_WORD_MAX_BYTES + 1)
        {
            return Err("more terms, or longer ones, than a group keeps".to_owned());
        }
        let mut t = Terms {
            text: String::with_capacity(pairs.iter().map(|(t, _)| t.len()).sum()),
            ends: Vec::with_capacity(pairs.len()),
            rows: Vec::with_capacity(pairs.len()),
        };
        for (term, n) in pairs {
            t.text.push_str(&term);
            t.ends.push(t.text.len() as u32);
            t.rows.push(n);
        }
        Ok(t)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn term(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize).unwrap_or("")
    }

    /// Every term with its rows, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        (0..self.len()).map(|i| (self.term(i), self.rows[i]))
    }

    /// The rows holding `term`, when it is one of the terms.
    pub fn rows_with(&self, term: &str) -> Option<u32> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.term(mid).cmp(term) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.rows[mid]),
            }
        }
        None
    }

    /// The rows holding the adjacent words `a` then `b`, when that pair is a term.
    pub fn rows_with_pair(&self, a: &str, b: &str) -> Option<u32> {
        self.rows_with(&format!("{a} {b}"))
    }

    pub fn bytes(&self) -> usize {
        self.text.len() + 8 * self.rows.len() + 72
    }
}

/// Counts the words and pairs of a row group's messages, row by row.
#[derive(Default)]
pub struct TermCounter {
    seen: HashMap<u64, Counted, BuildHasherDefault<Spread>>,
}

struct Counted {
    text: String,
    rows: u32,
    /// The last row counted, so that a row holding a term twice counts once.
    last_row: u32,
    /// Another term had the same hash: the count may mix both, so neither is kept.
    collided: bool,
}

impl TermCounter {
    /// Word `w` (lowercased, hash `h` from [`crate::embedded::index::key_hash`]) is in
    /// row `row`.
    pub fn word(&mut self, row: u32, h: u64, w: &str) {
        if w.len() <= TERM_WORD_MAX_BYTES {
            self.add(row, h, w, None);
        }
    }

    /// Words `a` (hash `ha`) then `b` (hash `hb`) are adjacent in row `row`.
    pub fn pair(&mut self, row: u32, ha: u64, a: &str, hb: u64, b: &str) {
        if a.len() > TERM_WORD_MAX_BYTES || b.len() > TERM_WORD_MAX_BYTES {
            return;
        }
        let mut h = (ha.rotate_left(23) ^ hb).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
        self.add(row, h, a, Some(b));
    }

    fn add(&mut self, row: u32, h: u64, a: &str, b: Option<&str>) {
        match self.seen.get_mut(&h) {
            Some(c) => {
                let same = match b {
                    None => c.text == a,
                    Some(b) => {
                        c.text.len() == a.len() + 1 + b.len()
                            && c.text.starts_with(a)
                            && c.text.as_bytes()[a.len()] == b' '
                            && c.text.ends_with(b)
                    }
                };
                if !same {
                    c.collided = true;
                } else if c.last_row != row {
                    c.rows += 1;
                    c.last_row = row;
                }
            }
            None => {
                let text = match b {
                    None => a.to_owned(),
                    Some(b) => format!("{a} {b}"),
                };
                self.seen.insert(
                    h,
                    Counted {
                        text,
                        rows: 1,
                        last_row: row,
                        collided: false,
                    },
                );
            }
        }
    }

    /// The terms: held by at least [`TERM_MIN_ROWS`] rows, at most [`TERMS_KEPT`] of
    /// them (the most frequent).
    pub fn finish(self) -> Terms {
        let mut kept: Vec<(String, u32)> = self
            .seen
            .into_values()
            .filter(|c| c.rows >= TERM_MIN_ROWS && !c.collided)
            .map(|c| (c.text, c.rows))
            .collect();
        if kept.len() > TERMS_KEPT {
            kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            kept.truncate(TERMS_KEPT);
        }
        Terms::from_pairs(kept).unwrap_or_default()
    }
}

/// A hasher for keys that are well-spread hashes already: it takes them as they are.
#[derive(Default)]
pub struct Spread(u64);

impl Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::filter::Phrase;
    use crate::embedded::index::{GroupIndex, IdSummary, SegmentIndex};
    use crate::embedded::segment::Row;
    use crate::record::{parse, Received};

    #[test]
    fn rows_count_once_and_rare_words_are_left_out() {
        let mut c = TermCounter::default();
        for row in 0..TERM_MIN_ROWS {
            c.word(row, 1, "timeout");
            c.word(row, 1, "timeout");
            c.pair(row, 1, "timeout", 2, "again");
        }
        c.word(0, 3, "rare");
        let long = "x".repeat(TERM_WORD_MAX_BYTES + 1);
        for row in 0..TERM_MIN_ROWS {
            c.word(row, 4, &long);
            c.pair(row, 1, "timeout", 4, &long);
        }
        let t = c.finish();
        assert_eq!(t.rows_with(&long), None);
        assert_eq!(t.rows_with_pair("timeout", &long), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.rows_with("timeout"), Some(TERM_MIN_ROWS));
        assert_eq!(t.rows_with_pair("timeout", "again"), Some(TERM_MIN_ROWS));
        assert_eq!(t.rows_with("rare"), None);
        assert_eq!(t.rows_with("again"), None);
    }

    #[test]
    fn terms_whose_hashes_collide_are_both_left_out() {
        let mut c = TermCounter::default();
        for row in 0..TERM_MIN_ROWS * 2 {
            c.word(row, 7, if row % 2 == 0 { "a" } else { "b" });
            c.word(row, 8, "kept");
        }
        let t = c.finish();
        assert_eq!((t.rows_with("a"), t.rows_with("b")), (None, None));
        assert_eq!(t.rows_with("kept"), Some(TERM_MIN_ROWS * 2));
    }

    #[test]
    fn only_the_most_frequent_terms_are_kept() {
        let mut c = TermCounter::default();
        for i in 0..TERMS_KEPT as u64 + 10 {
            let w = format!("w{i}");
            // w0 in the most rows, the last ones in the fewest.
            for row in 0..TERM_MIN_ROWS + (TERMS_KEPT as u32 + 10 - i as u32) {
                c.word(row, i, &w);
            }
        }
        let t = c.finish();
        assert_eq!(t.len(), TERMS_KEPT);
        assert!(t.rows_with("w0").is_some());
        assert!(t.rows_with(&format!("w{}", TERMS_KEPT + 9)).is_none());
        assert!(Terms::from_pairs(vec![("a".into(), 1), ("a".into(), 2)]).is_err());
    }

    #[test]
    fn terms_count_phrases_and_are_absent_from_older_footers() {
        let received = Received::now();
        let records: Vec<_> = (0..100)
            .map(|i| parse(&format!(r#"{{"message":"Slow upstream {i}"}}"#), &received).unwrap())
            .collect();
        let rows: Vec<Row> = records
            .iter()
            .enumerate()
            .map(|(i, record)| Row {
                id: i as i64,
                record,
            })
            .collect();
        let g = GroupIndex::build(&rows);
        let p = |q: &str| Phrase::from_query_text(&crate::query::text_phrase(q).unwrap());
        assert_eq!(g.phrase_count(&p("slow")), Some(100));
        assert_eq!(g.phrase_count(&p("SLOW upstream")), Some(100));
        // Not a term: the group must be read.
        assert_eq!(g.phrase_count(&p("upstream slow")), None);
        assert_eq!(g.phrase_count(&p("slow upstream 7")), None);
        assert_eq!(g.phrase_count(&p("slow*")), None);
        assert_eq!(g.phrase_count(&p("7")), None);
        let encoded = SegmentIndex {
            groups: vec![g.clone()],
            ids: IdSummary::default(),
        }
        .encode();
        assert_eq!(SegmentIndex::decode(&encoded).unwrap().groups, vec![g]);
        let mut v: serde_json::Value = serde_json::from_str(&encoded).unwrap();
        v["groups"][0].as_object_mut().unwrap().remove("terms");
        let old = SegmentIndex::decode(&v.to_string()).unwrap();
        assert_eq!(old.groups[0].terms, None);
        assert_eq!(old.groups[0].phrase_count(&p("slow")), None);
        v["groups"][0]["terms"] = serde_json::json!([["slow", 101]]);
        assert!(SegmentIndex::decode(&v.to_string()).is_err());
        v["groups"][0]["terms"] = serde_json::json!([["slow", 1], ["slow", 2]]);
        assert!(SegmentIndex::decode(&v.to_string()).is_err());
    }
}
