//! A `GET /logs` query string, as the aggregator reads it into a query.
//!
//! Checked: no panic; the page size stays within its bounds; a text search is one safe
//! FTS5 phrase of at most the allowed words; a cursor reads back as written.

#![no_main]

use actix_web::web::Query;
use libfuzzer_sys::fuzz_target;
use log_aggregator::query::{Cursor, LogParams};

const MAX_TERMS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let qs = String::from_utf8_lossy(data);
    if let Some(c) = Cursor::decode(&qs) {
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
    }
    let Ok(params) = Query::<LogParams>::from_query(&qs) else {
        return;
    };
    let Ok(q) = params.to_query_within(100, 1000, MAX_TERMS) else {
        return;
    };
    assert!((1..=1000).contains(&q.limit));
    if let Some(phrase) = &q.text {
        let inner = phrase
            .strip_prefix('"')
            .and_then(|p| p.strip_suffix('*').unwrap_or(p).strip_suffix('"'))
            .expect("a quoted phrase");
        assert!(!inner.is_empty());
        assert!(inner.split(' ').count() <= MAX_TERMS);
        assert!(inner.chars().all(|c| c == ' ' || c.is_alphanumeric()));
    }
    if let Some(c) = q.cursor {
        assert_eq!(c.order, q.order);
    }
});
