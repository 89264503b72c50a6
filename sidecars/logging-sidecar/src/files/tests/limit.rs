//! Unit tests of the open-file limit (`MAX_OPEN_FILES`).

use super::*;

/// A file set following `pattern` with at most `max` files open.
fn limited(pattern: &Path, max: usize) -> FileSet {
    let mut s = settings();
    s.max_open_files = max;
    let dir = pattern.parent().expect("a log file lives in a directory");
    FileSet::new(pattern.to_str().unwrap(), s, Checkpoints::empty(dir))
}

/// Discovers and drains `rounds` times, checking the open-file limit after each
/// discovery; every line read, in order, and every event.
fn follow(set: &mut FileSet, now: Instant, rounds: usize) -> (Vec<String>, Vec<Event>) {
    let (mut lines, mut events) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        events.extend(set.discover(now));
        assert!(
            set.open_files() <= set.settings.max_open_files,
            "{} open",
            set.open_files()
        );
        lines.extend(drain(set, now));
    }
    (lines, events)
}

/// Four rotated files and the current one, with two files open at most and delivery
/// stalled while they rotate: every line is still read, file after file, in order.
#[test]
fn four_rotated_files_over_a_limit_of_two_are_all_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let now = Instant::now();
    let mut set = limited(&log, 2);
    let mut want = Vec::new();
    let mut events = Vec::new();
    for k in 1..=5 {
        let lines: Vec<String> = (0..3).map(|i| format!("file{k} line{i}")).collect();
        append(&log, &(lines.join("\n") + "\n"));
        want.extend(lines);
        events.extend(set.discover(now));
        assert!(set.open_files() <= 2, "{} open", set.open_files());
        if k < 5 {
            fs::rename(&log, dir.path().join(format!("app.log.{k}"))).unwrap();
        }
    }
    let (got, more) = follow(&mut set, now, 8);
    events.extend(more);
    assert_eq!(got, want);
    assert!(
        events.iter().any(|e| matches!(e, Event::Parked { .. })),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Reopened { .. })),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::Lost { .. })),
        "{events:?}"
    );
    assert_eq!(set.len(), 1, "only the current file is left");
}

/// A parked rotated file deleted before it could be opened again is reported lost,
/// with what was not read of it; the files after it are still read.
#[test]
fn a_parked_file_deleted_before_it_is_reopened_is_reported_lost() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let now = Instant::now();
    let mut set = limited(&log, 1);
    let mut events = Vec::new();
    for k in 1..=3 {
        append(&log, &format!("file{k}\n"));
        events.extend(set.discover(now));
        if k < 3 {
            fs::rename(&log, dir.path().join(format!("app.log.{k}"))).unwrap();
        }
    }
    events.extend(set.discover(now));
    assert_eq!(set.open_files(), 1);
    let second = dir.path().join("app.log.2");
    fs::remove_file(&second).unwrap();
    let (got, more) = follow(&mut set, now, 6);
    events.extend(more);
    assert_eq!(got, ["file1", "file3"]);
    assert!(
        events.contains(&Event::Lost {
            path: second,
            unread: 6
        }),
        "{events:?}"
    );
}

/// With a glob naming more files than may be open, the files read to their end are
/// closed first and opened again when they grow: nothing written is missed.
#[test]
fn more_live_files_than_the_limit_are_all_followed() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["a.log", "b.log", "c.log", "d.log"];
    for n in names {
        append(&dir.path().join(n), &format!("{n} 0\n"));
    }
    let now = Instant::now();
    let mut set = limited(&dir.path().join("*.log"), 2);
    let (mut got, _) = follow(&mut set, now, 4);
    for round in 1..=3 {
        for n in names {
            append(&dir.path().join(n), &format!("{n} {round}\n"));
        }
        got.extend(follow(&mut set, now, 4).0);
    }
    let mut want: Vec<String> = (0..=3)
        .flat_map(|r| names.map(|n| format!("{n} {r}")))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(set.len(), 4);
}

/// Files renamed away while the sidecar was down, found again at start, stay within the
/// limit as they are found, and are all read to their end.
#[test]
fn files_recovered_at_start_stay_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["a", "b", "c"];
    let pattern = dir.path().join("*.log");
    let now = Instant::now();
    let mut set = limited(&pattern, 8);
    for n in names {
        append(&dir.path().join(format!("{n}.log")), &format!("{n} read\n"));
    }
    assert_eq!(follow(&mut set, now, 1).0.len(), 3);
    set.save_checkpoints().unwrap();
    for n in names {
        let log = dir.path().join(format!("{n}.log"));
        append(&log, &format!("{n} while down\n"));
        fs::rename(&log, dir.path().join(format!("{n}.old"))).unwrap();
    }
    let mut s = settings();
    s.max_open_files = 1;
    let mut again = FileSet::new(
        pattern.to_str().unwrap(),
        s,
        Checkpoints::load(dir.path()).unwrap(),
    );
    let mut events = again.discover(now);
    events.extend(again.recover(now));
    assert_eq!(again.open_files(), 1, "{events:?}");
    let (mut got, _) = follow(&mut again, now, 6);
    got.sort();
    assert_eq!(got, ["a while down", "b while down", "c while down"]);
    assert!(again.is_empty());
}
