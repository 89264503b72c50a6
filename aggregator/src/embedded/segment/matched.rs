//! The number of records a filter matched in one segment, kept for the filters asked
//! most recently.
//!
//! A text search or a request-id lookup counts its `total` over every row group that
//! may hold a match, which means reading and checking the messages (or bodies) of the
//! whole store; paging through the results with a cursor asks the same count again for
//! each page. A segment never changes once written, so its count for a filter stays
//! true for as long as the segment is open, and the next query with that filter reads
//! only the groups that can still place a row on its page.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::embedded::filter::Filter;

/// Filters remembered per segment: a few hundred bytes each.
pub const MATCH_COUNTS_KEPT: usize = 16;

/// The counts of the last [`MATCH_COUNTS_KEPT`] filters, oldest first.
#[derive(Debug, Default)]
pub struct MatchCounts(Mutex<VecDeque<(String, u64)>>);

impl MatchCounts {
    /// The count stored for `f`, if it is one of the remembered filters.
    pub fn get(&self, f: &Filter) -> Option<u64> {
        let key = key_of(f);
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().find(|(k, _)| *k == key).map(|&(_, n)| n)
    }

    /// Remembers that `f` matches `n` records here, forgetting the oldest filter when
    /// full.
    pub fn put(&self, f: &Filter, n: u64) {
        let key = key_of(f);
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.iter().any(|(k, _)| *k == key) {
            return;
        }
        if kept.len() >= MATCH_COUNTS_KEPT {
            kept.pop_front();
        }
        kept.push_back((key, n));
    }
}

/// Everything of a filter that decides which records match (never the page's cursor,
/// order or limit).
fn key_of(f: &Filter) -> String {
    let phrase = f.phrase.as_ref().map(|p| (&p.words, p.prefix));
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        f.service, f.level, f.request_id, f.since_us, f.until_us, phrase
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::filter::Phrase;

    fn filter(text: Option<&str>, service: Option<&str>) -> Filter {
        Filter {
            service: service.map(str::to_owned),
            level: None,
            request_id: None,
            since_us: None,
            until_us: None,
            phrase: text.map(|t| Phrase::from_query_text(&crate::query::text_phrase(t).unwrap())),
        }
    }

    #[test]
    fn counts_are_kept_per_filter_and_the_oldest_forgotten() {
        let m = MatchCounts::default();
        let a = filter(Some("timeout"), None);
        assert_eq!(m.get(&a), None);
        m.put(&a, 7);
        assert_eq!(m.get(&a), Some(7));
        assert_eq!(m.get(&filter(Some("timeout"), Some("x"))), None);
        assert_eq!(m.get(&filter(Some("timeouts"), None)), None);
        for i in 0..MATCH_COUNTS_KEPT {
            m.put(&filter(Some(&format!("w{i}")), None), i as u64);
        }
        assert_eq!(m.get(&a), None);
        assert_eq!(m.get(&filter(Some("w3"), None)), Some(3));
    }
}
