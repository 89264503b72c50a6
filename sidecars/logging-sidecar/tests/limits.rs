//! `BATCH_MAX_RECORDS` and `BATCH_MAX_BYTES` hold for every input.
//!
//! - `a_run_of_blank_lines_is_skipped_and_counted`: 128 KiB of empty lines (once a
//!   single POST of 131,072 records) between numbered lines.
//! - `a_flood_of_one_byte_lines_keeps_the_batch_limits`: 100,000 lines of `x` (once a
//!   batch of over 50,000 records against a limit of 5,000).

mod support;

use support::{append_lines, append_raw, assert_none_lost_or_twice, tally_numbered, Rig};

#[actix_rt::test]
async fn a_run_of_blank_lines_is_skipped_and_counted() {
    let mut rig = Rig::new();
    append_lines(&rig.log, 0..100);
    append_raw(&rig.log, &vec![b'\n'; 128 * 1024]);
    append_raw(&rig.log, b"  \t \n");
    append_lines(&rig.log, 100..200);
    rig.start_sidecar(&[]).await;
    rig.wait_unique(200).await;
    rig.wait_metric("logging_sidecar_lines_blank_total 131073")
        .await;
    let records = rig.sink_records().await;
    let tally = tally_numbered(&records, 0..200);
    assert_none_lost_or_twice(&tally, "blank run");
    assert!(tally.others.is_empty());
    let stats = rig.sink_stats().await;
    assert!(
        stats["max_batch_records"].as_u64().unwrap() <= 5000,
        "{stats}"
    );
}

#[actix_rt::test]
async fn a_flood_of_one_byte_lines_keeps_the_batch_limits() {
    let mut rig = Rig::new();
    let max_bytes = 256 * 1024;
    append_lines(&rig.log, 0..100);
    append_raw(&rig.log, "x\n".repeat(100_000).as_bytes());
    append_lines(&rig.log, 100..200);
    rig.start_sidecar(&[
        ("BATCH_MAX_RECORDS", "5000"),
        ("BATCH_MAX_BYTES", &max_bytes.to_string()),
    ])
    .await;
    rig.wait_unique(100_200).await;
    let stats = rig.sink_stats().await;
    println!("sink: {stats}");
    assert!(
        stats["max_batch_records"].as_u64().unwrap() <= 5000,
        "{stats}"
    );
    assert!(
        stats["max_batch_bytes"].as_u64().unwrap() <= max_bytes,
        "{stats}"
    );
    let records = rig.sink_records().await;
    let tally = tally_numbered(&records, 0..200);
    assert_none_lost_or_twice(&tally, "one-byte flood");
    assert_eq!(tally.others.len(), 100_000);
    assert!(tally.others.iter().all(|r| r["message"] == "x"));
}
