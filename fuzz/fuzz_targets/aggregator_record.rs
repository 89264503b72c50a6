//! One record as the aggregator parses it: any text, checked as a JSON object, its
//! indexed fields read and `aggregator_received_at` spliced into its body.
//!
//! Checked: no panic; the one-pass parse gives what the full check and serde give;
//! an accepted record's body is a JSON object with the field, and
//! its level is upper case.

#![no_main]

use libfuzzer_sys::fuzz_target;
use log_aggregator::record::{self, Received, RECEIVED_AT};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The one-pass scan (and the shared check's fast path) decides exactly as the
    // full check and serde do: the same record or the same error.
    let received = Received::now();
    let parsed = record::parse(text, &received);
    assert_eq!(parsed, record::parse_full(text, &received), "{text:?}");
    let Ok(r) = parsed else {
        return;
    };
    // The shared record validator refuses what would not read back (a lone surrogate
    // escape, a number out of range), so every stored body reads back strictly.
    let object: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(&r.body) {
        Ok(object) => object,
        Err(e) => panic!("a stored body is not a JSON object: {e}: {:?}", r.body),
    };
    assert!(object[RECEIVED_AT].is_string());
    if let Some(level) = &r.level {
        assert_eq!(level, &level.to_ascii_uppercase());
    }
});
