//! One record as the aggregator parses it: any text, checked as a JSON object, its
//! indexed fields read and `aggregator_received_at` spliced into its body.
//!
//! Checked: no panic; an accepted record's body is a JSON object with the field, and
//! its level is upper case.

#![no_main]

use libfuzzer_sys::fuzz_target;
use log_aggregator::record::{self, Received, RECEIVED_AT};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = record::parse(text, &Received::now()) else {
        return;
    };
    let object: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(&r.body) {
        Ok(object) => object,
        Err(e) if known_gap(&e) => return,
        Err(e) => panic!("a stored body is not a JSON object: {e}: {:?}", r.body),
    };
    assert!(object[RECEIVED_AT].is_string());
    if let Some(level) = &r.level {
        assert_eq!(level, &level.to_ascii_uppercase());
    }
});

/// Known, and being closed by the shared record validator: a field the aggregator does
/// not index is skipped unchecked, so a lone surrogate escape (`"\ud800"`, or
/// `"\ud83d\t"`) or a number out of range (`1e400`) is stored, and the stored body no
/// longer reads back. Remove this exception once the validator refuses such records.
fn known_gap(e: &serde_json::Error) -> bool {
    let text = e.to_string();
    ["surrogate", "hex escape", "number out of range"]
        .iter()
        .any(|gap| text.contains(gap))
}
