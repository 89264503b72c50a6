//! `event_id`s cannot collide: a file that starts like one seen before is still a new
//! file, and its lines are stored, each exactly once, through the real aggregator (whose
//! deduplication would drop any line whose id collided).
//!
//! - `a_new_file_with_an_identical_first_line_keeps_every_line`: the file is deleted
//!   and created again with the same banner line (once 999 of 1,000 lines lost).
//! - `a_file_rewritten_while_stopped_with_an_identical_first_line_keeps_every_line`:
//!   truncated and rewritten in place while the sidecar is stopped (once 1,999 of 3,000).

mod support;

use std::fs;

use support::{
    append_lines, append_raw, assert_none_lost_or_twice, tally_numbered, Receiver, Rig, TOKEN,
};

const BANNER: &[u8] = b"service starting, version 1.2.3\n";

fn env() -> [(&'static str, &'static str); 3] {
    [
        ("AGGREGATOR_TOKEN", TOKEN),
        ("CHECKPOINT_INTERVAL", "50ms"),
        ("ROTATE_WAIT", "100ms"),
    ]
}

#[actix_rt::test]
async fn a_new_file_with_an_identical_first_line_keeps_every_line() {
    let mut rig = Rig::with(Receiver::Aggregator);
    append_raw(&rig.log, BANNER);
    append_lines(&rig.log, 0..1000);
    rig.start_sidecar(&env()).await;
    rig.wait_unique(1001).await;
    fs::remove_file(&rig.log).unwrap();
    append_raw(&rig.log, BANNER);
    append_lines(&rig.log, 1000..2000);
    rig.wait_unique(2002).await;
    let records = rig.sink_records().await;
    let tally = tally_numbered(&records, 0..2000);
    assert_none_lost_or_twice(&tally, "identical first line in a new file");
    assert_eq!(tally.others.len(), 2, "both banners are stored");
}

#[actix_rt::test]
async fn a_file_rewritten_while_stopped_with_an_identical_first_line_keeps_every_line() {
    let mut rig = Rig::with(Receiver::Aggregator);
    append_raw(&rig.log, BANNER);
    append_lines(&rig.log, 0..1000);
    rig.start_sidecar(&env()).await;
    rig.wait_unique(1001).await;
    rig.stop_sidecar();
    // Truncated in place (same inode), then longer than before, same first line.
    let f = fs::OpenOptions::new().write(true).open(&rig.log).unwrap();
    f.set_len(0).unwrap();
    drop(f);
    append_raw(&rig.log, BANNER);
    append_lines(&rig.log, 1000..3000);
    rig.start_sidecar(&env()).await;
    rig.wait_unique(3002).await;
    let records = rig.sink_records().await;
    let tally = tally_numbered(&records, 0..3000);
    assert_none_lost_or_twice(&tally, "rewritten while stopped");
    assert_eq!(tally.others.len(), 2, "both banners are stored");
}
