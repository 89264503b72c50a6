//! Faults combined at random, end to end: a real sidecar and a real aggregator, while
//! numbered lines are appended at varying rates, go through random sequences of rename
//! rotation, copytruncate, truncation, deletion and recreation with an identical first
//! line, aggregator `kill -9`, SIGSTOP and outages of seconds, sidecar `kill -9` and
//! SIGTERM, and poison, blank, over-long and non-UTF-8 lines. The run ends by checking
//! that every numbered line is stored exactly once.
//!
//! - `combined_faults_lose_nothing_and_store_nothing_twice`
//!
//! A rotation waits until the sidecar has met the file it rotates (a file created and
//! rotated away before the sidecar ever met it is a documented limit). It prints its seed; `TORTURE_SEED=<seed>` replays the same sequence of faults (the
//! timing of the processes still varies), `TORTURE_SECS=<n>` sets how long faults are
//! injected (default 45, so CI can run it; `TORTURE_SECS=3600` for an hour).

mod support;

use shared::testkit::SeededRng;
use std::fs;
use std::time::{Duration, Instant};

use support::{
    append_lines, append_raw, assert_none_lost_or_twice, tally_numbered, Receiver, Rig, TOKEN,
};

const BANNER: &[u8] = b"service starting, version 1.2.3\n";

/// What was written that the aggregator should end up holding.
struct Written {
    numbered: u64,
    /// Records that are no numbered line (banners, garbage).
    others: u64,
}

fn write_garbage(rng: &mut SeededRng, rig: &Rig, w: &mut Written) {
    match rng.below(5) {
        0 => {
            let poison = [
                r#"{"message":1e999}"#,
                r#"{"level":-1e400}"#,
                r#"{"message":"\ud800"}"#,
                r#"{"\ud800":1}"#,
            ];
            let line = poison[rng.below(poison.len() as u64) as usize];
            append_raw(&rig.log, format!("{line}\n").as_bytes());
            w.others += 1;
        }
        1 => append_raw(&rig.log, &vec![b'\n'; 1 + rng.below(20_000) as usize]),
        2 => {
            let mut huge = vec![b'x'; 5000 + rng.below(20_000) as usize];
            huge.push(b'\n');
            append_raw(&rig.log, &huge);
            w.others += 1;
        }
        3 => {
            append_raw(&rig.log, b"bad \xff\xfe bytes\n");
            w.others += 1;
        }
        _ => {
            append_raw(&rig.log, b"plain text, not json\n");
            w.others += 1;
        }
    }
}

/// Waits until the sidecar has met the file now at the log path (its stream is in the
/// checkpoint file): a file created and rotated away before the sidecar ever met it
/// cannot be followed (a documented limit of polling), so rotations wait for this.
async fn met(rig: &Rig) {
    use std::os::unix::fs::MetadataExt;
    let deadline = Instant::now() + support::DEADLINE;
    let checkpoint = rig.state.join("logging-sidecar-checkpoints.json");
    loop {
        // By inode and first line: an inode is soon reused by a new file.
        let ino = fs::metadata(&rig.log).map(|m| m.ino()).unwrap_or(0);
        let fingerprint = fs::File::open(&rig.log)
            .ok()
            .and_then(|f| logging_sidecar::fingerprint::of_file(&f).ok().flatten())
            .map(|fp| format!("{fp:x}"));
        let known = fs::read(&checkpoint)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| {
                v["files"].as_array().is_some_and(|f| {
                    f.iter().any(|e| {
                        e["ino"].as_u64() == Some(ino)
                            && e["fingerprint"].as_str() == fingerprint.as_deref()
                    })
                })
            });
        if known {
            return;
        }
        assert!(Instant::now() < deadline, "the sidecar never met {ino}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the aggregator holds everything written so far; false if it never does
/// (the final tally then says what is missing).
async fn drained(rig: &Rig, w: &Written) -> bool {
    let deadline = Instant::now() + support::DEADLINE;
    while Instant::now() < deadline {
        if rig.sink_stats().await["unique"].as_u64().unwrap_or(0) >= w.numbered + w.others {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[actix_rt::test]
async fn combined_faults_lose_nothing_and_store_nothing_twice() {
    let seed = SeededRng::seed_from_env("TORTURE_SEED") | 1;
    let secs: u64 = std::env::var("TORTURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    println!("TORTURE_SEED={seed} TORTURE_SECS={secs}");
    let mut rng = SeededRng::new(seed);
    let batch_records = (50 + rng.below(5000)).to_string();
    let env = [
        ("AGGREGATOR_TOKEN", TOKEN),
        ("BATCH_MAX_RECORDS", batch_records.as_str()),
        ("CHECKPOINT_INTERVAL", "50ms"),
        ("RETRY_INITIAL", "20ms"),
        ("RETRY_MAX", "500ms"),
        ("REQUEST_TIMEOUT", "2s"),
        ("ROTATE_WAIT", "200ms"),
        ("MAX_LINE_BYTES", "4096"),
        ("SHUTDOWN_GRACE", "2s"),
    ];
    let mut rig = Rig::with(Receiver::Aggregator);
    let mut w = Written {
        numbered: 0,
        others: 1,
    };
    append_raw(&rig.log, BANNER);
    rig.start_sidecar(&env).await;
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut rotations, mut faults) = (0u32, Vec::new());
    while Instant::now() < end {
        // The writer: a burst of numbered lines, now and then some garbage.
        let n = 1 + rng.below(3000);
        append_lines(&rig.log, w.numbered..w.numbered + n);
        w.numbered += n;
        if rng.below(4) == 0 {
            write_garbage(&mut rng, &rig, &mut w);
        }
        let fault = rng.below(10);
        faults.push((w.numbered, fault));
        match fault {
            0 | 1 => {
                // Rename rotation, the writer going on in a new file.
                met(&rig).await;
                actix_rt::time::sleep(rng.millis(0, 200)).await;
                rotations += 1;
                fs::rename(
                    &rig.log,
                    rig.dir.path().join(format!("app.log.{rotations}")),
                )
                .unwrap();
            }
            2 => {
                // copytruncate; nothing is written between the copy and the truncate.
                met(&rig).await;
                rotations += 1;
                fs::copy(
                    &rig.log,
                    rig.dir.path().join(format!("app.log.{rotations}")),
                )
                .unwrap();
                fs::OpenOptions::new()
                    .write(true)
                    .open(&rig.log)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            3 => {
                // Truncation by the application, once everything was read, or deletion
                // and recreation with the same first line.
                if !drained(&rig, &w).await {
                    break;
                }
                if rng.below(2) == 0 {
                    fs::OpenOptions::new()
                        .write(true)
                        .open(&rig.log)
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                } else {
                    fs::remove_file(&rig.log).unwrap();
                    append_raw(&rig.log, BANNER);
                    w.others += 1;
                }
            }
            4 => {
                rig.kill_receiver();
                append_lines(&rig.log, w.numbered..w.numbered + 500);
                w.numbered += 500;
                actix_rt::time::sleep(rng.millis(100, 3000)).await;
                rig.restart_receiver().await;
            }
            5 => {
                rig.signal_receiver(libc::SIGSTOP);
                actix_rt::time::sleep(rng.millis(100, 3000)).await;
                rig.signal_receiver(libc::SIGCONT);
            }
            6 => {
                rig.kill_sidecar();
                rig.start_sidecar(&env).await;
            }
            7 => {
                rig.stop_sidecar();
                rig.start_sidecar(&env).await;
            }
            _ => {}
        }
        actix_rt::time::sleep(rng.millis(0, 700)).await;
    }
    drained(&rig, &w).await;
    let records = rig.sink_records().await;
    let tally = tally_numbered(&records, 0..w.numbered);
    println!(
        "TORTURE_SEED={seed}: {} numbered lines, {} other records expected, {} held, faults {:?}",
        w.numbered,
        w.others,
        records.len(),
        faults
    );
    for seq in tally.duplicated.iter().take(3) {
        for r in records.iter().filter(|r| r["seq"].as_u64() == Some(*seq)) {
            println!(
                "duplicated {seq}: {} at {}",
                r["event_id"], r["sidecar_timestamp"]
            );
        }
    }
    if !tally.lost.is_empty() {
        // Ranges of lost lines, to match against the faults (seq written before each).
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for &s in &tally.lost {
            match ranges.last_mut() {
                Some((_, end)) if *end + 1 == s => *end = s,
                _ => ranges.push((s, s)),
            }
        }
        println!("lost ranges: {ranges:?}");
        println!("sidecar stderr:\n{}", rig.sidecar_stderr());
    }
    assert_none_lost_or_twice(&tally, &format!("TORTURE_SEED={seed}"));
}
