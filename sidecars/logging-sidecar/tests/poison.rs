//! Lines the aggregator refuses never stall delivery: each is stored as a message that
//! carries its text, and every other line is stored exactly once.
//!
//! - `poison_lines_are_stored_as_messages_through_the_real_aggregator`: `1e999`,
//!   `-1e400`, lone surrogates in a value and in a key, between numbered lines, through
//!   the real `log-aggregator` (which refused whole batches over them before).
//! - `records_a_stricter_aggregator_refuses_are_isolated`: the counting sink refuses
//!   (400) any batch holding a marker the sidecar's rules accept; the forwarder splits
//!   the batches down to the refused records and re-sends each as a message.

mod support;

use support::{
    append_lines, append_raw, assert_none_lost_or_twice, tally_numbered, Receiver, Rig, TOKEN,
};

const POISON: [&str; 5] = [
    r#"{"message":1e999}"#,
    r#"{"level":-1e400}"#,
    r#"{"message":"\ud800"}"#,
    r#"{"\ud800":"key"}"#,
    r#"{"nested":[{"n":1e309}]}"#,
];

#[actix_rt::test]
async fn poison_lines_are_stored_as_messages_through_the_real_aggregator() {
    let mut rig = Rig::with(Receiver::Aggregator);
    let blocks = 10u64;
    for b in 0..blocks {
        append_lines(&rig.log, b * 300..(b + 1) * 300);
        let poison = POISON[b as usize % POISON.len()];
        append_raw(&rig.log, format!("{poison}\n").as_bytes());
    }
    rig.start_sidecar(&[("AGGREGATOR_TOKEN", TOKEN), ("BATCH_MAX_RECORDS", "200")])
        .await;
    rig.wait_unique(blocks * 300 + blocks).await;
    rig.wait_metric("logging_sidecar_lines_rejected_total 10")
        .await;
    let records = rig.sink_records().await;
    let tally = tally_numbered(&records, 0..blocks * 300);
    assert_none_lost_or_twice(&tally, "poison through the aggregator");
    assert_eq!(tally.others.len(), blocks as usize);
    let mut messages: Vec<&str> = Vec::new();
    for r in &tally.others {
        assert_eq!(r["sidecar_not_json"], true, "{r}");
        assert!(r["sidecar_rejected"].is_string(), "{r}");
        messages.push(r["message"].as_str().unwrap());
    }
    messages.sort_unstable();
    let mut written: Vec<&str> = (0..blocks as usize)
        .map(|b| POISON[b % POISON.len()])
        .collect();
    written.sort_unstable();
    assert_eq!(messages, written);
    // Nothing was refused by the aggregator: the sidecar applied its rules first.
    let metrics = rig.sidecar_metrics().await;
    assert!(
        !metrics.contains("error_type=\"http_400\""),
        "the aggregator refused a batch:\n{metrics}"
    );
}

#[actix_rt::test]
async fn records_a_stricter_aggregator_refuses_are_isolated() {
    let mut rig = Rig::new();
    rig.sink_refuse(Some("\"forbidden\":true")).await;
    let mut expected_isolated = 0;
    for b in 0..20u64 {
        append_lines(&rig.log, b * 500..(b + 1) * 500 - 1);
        let seq = (b + 1) * 500 - 1;
        append_raw(
            &rig.log,
            format!("{{\"seq\":{seq},\"message\":\"line {seq}\",\"forbidden\":true}}\n").as_bytes(),
        );
        expected_isolated += 1;
    }
    rig.start_sidecar(&[("BATCH_MAX_RECORDS", "1000")]).await;
    rig.wait_unique(10_000).await;
    rig.wait_metric(&format!(
        "logging_sidecar_records_isolated_total {expected_isolated}"
    ))
    .await;
    let records = rig.sink_records().await;
    let tally = tally_numbered(&records, 0..10_000);
    assert_none_lost_or_twice(&tally, "records isolated by the forwarder");
    assert!(tally.others.is_empty(), "{:?}", &tally.others[..1]);
    let isolated: Vec<_> = records
        .iter()
        .filter(|r| r["sidecar_rejected"] == "the aggregator answered 400")
        .collect();
    assert_eq!(isolated.len(), expected_isolated);
    let stderr = rig.sidecar_stderr();
    assert!(
        stderr.contains("The aggregator refused one record") && stderr.contains("app.log"),
        "no warning naming the file:\n{stderr}"
    );
    // Delivery goes on afterwards, and the checkpoint moved past the refused records.
    append_lines(&rig.log, 10_000..10_100);
    rig.wait_unique(10_100).await;
    rig.stop_sidecar();
}
