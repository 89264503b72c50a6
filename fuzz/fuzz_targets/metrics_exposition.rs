//! A scraped exposition, as the metrics sidecar relabels it: the first byte picks the
//! dialect (Prometheus text or OpenMetrics), the rest is the body.
//!
//! Checked: no panic; what the relabeler writes is itself a valid text exposition in
//! which every sample carries the added labels.

#![no_main]

use libfuzzer_sys::fuzz_target;
use metrics_sidecar::exposition::{parse_line, Dialect, Line};
use metrics_sidecar::relabel::Relabeler;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let dialect = if mode & 1 == 0 {
        Dialect::Text
    } else {
        Dialect::OpenMetrics
    };
    let relabeler = Relabeler::new(
        &[
            ("sidecar", "true"),
            ("environment", "fuzz"),
            ("service", "svc"),
        ],
        "metrics_sidecar_",
    );
    let mut out = Vec::new();
    if relabeler.relabel(body, dialect, &mut out).is_err() {
        return;
    }
    let text = std::str::from_utf8(&out).expect("the output is UTF-8");
    let mut labels = Vec::new();
    for line in text.lines() {
        labels.clear();
        match parse_line(line, Dialect::Text, &mut labels) {
            Ok(Line::Sample { .. }) => {
                for added in ["sidecar", "environment", "service"] {
                    assert!(
                        labels.iter().any(|l| l.name == added),
                        "{added} missing in {line:?}"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => panic!("the relabeler wrote a line it cannot read: {line:?}: {e:?}"),
        }
    }
});
