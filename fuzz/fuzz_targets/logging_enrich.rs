//! Lines of a log file, as the logging sidecar's enricher turns them into records: split
//! as the tailer does, then enriched with the sidecar's fields.
//!
//! Checked: no panic; one record per line that is not blank, each a JSON object that a
//! strict reader takes (no lone surrogate, no number out of range) carrying the
//! sidecar's fields, whatever the line was (JSON, not JSON, invalid UTF-8, cut short).

#![no_main]

use libfuzzer_sys::fuzz_target;
use logging_sidecar::enrich::Splicer;
use logging_sidecar::lines::split;

fuzz_target!(|data: &[u8]| {
    let splicer = Splicer::new("svc", "svc-logging-sidecar", "fuzz");
    let lines = split(data, 0, 256, false, true).lines;
    let mut out = Vec::new();
    let tally = splicer.enrich(3, data, &lines, "2026-01-01T00:00:00Z", &mut out);
    assert_eq!(tally.records + tally.blank, lines.len());
    let records: Vec<&[u8]> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(records.len(), tally.records);
    for record in records {
        let object: serde_json::Map<String, serde_json::Value> =
            match serde_json::from_slice(record) {
                Ok(object) => object,
                Err(e) => panic!(
                    "not a JSON object ({e}): {:?}",
                    String::from_utf8_lossy(record)
                ),
            };
        for field in [
            "sidecar_forwarded_by",
            "environment",
            "event_id",
            "sidecar_timestamp",
        ] {
            assert!(object.contains_key(field), "{field} missing");
        }
    }
});
