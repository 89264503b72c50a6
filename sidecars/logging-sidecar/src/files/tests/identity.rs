//! Unit tests of file identity at offset 0, where a checkpoint has no tail hash: a new
//! file with the inode and first line of a checkpointed one is a new instance.

use super::*;

/// The stream of the first chunk of `set` (read, never acknowledged: its lines may
/// have been stored before a crash), after the checkpoint file was written.
fn first_stream(set: &mut FileSet, now: Instant) -> u64 {
    set.discover(now);
    let chunk = set.read(now).expect("a chunk");
    set.save_checkpoints().unwrap();
    chunk.stream
}

/// Gives the checkpoint entry of the only file the device and inode of `path`, as if
/// the file system had given the checkpointed file's freed inode to `path`.
fn renumber_checkpoint(dir: &Path, path: &Path) {
    let file = dir.join(crate::checkpoint::CHECKPOINT_FILE);
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    let (dev, ino) = inode(path);
    json["files"][0]["dev"] = dev.into();
    json["files"][0]["ino"] = ino.into();
    fs::write(&file, serde_json::to_vec(&json).unwrap()).unwrap();
}

fn restarted(log: &Path) -> FileSet {
    let dir = log.parent().unwrap();
    FileSet::new(
        log.to_str().unwrap(),
        settings(),
        Checkpoints::load(dir).unwrap(),
    )
}

fn born(path: &Path) -> std::time::SystemTime {
    fs::metadata(path).unwrap().created().unwrap()
}

/// A new file given the inode of a file checkpointed at offset 0, with the same first
/// line and other lines after it, gets a stream of its own: with the old one, its lines
/// took the ids of the old file's lines, and the aggregator dropped them as repeats.
#[test]
fn a_new_file_on_a_reused_inode_at_offset_0_is_a_new_instance() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "banner\nold1\n");
    let now = Instant::now();
    let old = first_stream(&mut watching(&log), now);
    fs::remove_file(&log).unwrap();
    append(&log, "banner\nnew1\n");
    renumber_checkpoint(dir.path(), &log);
    let mut again = restarted(&log);
    again.discover(now);
    let chunk = again.read(now).expect("a chunk");
    assert_ne!(chunk.stream, old, "the new file took the old file's stream");
    assert_eq!(chunk.position.end_offset, 12, "read from its start");
}

/// The same with the very same bytes: only its birth time tells it from the old file.
#[test]
fn a_new_file_with_the_same_bytes_is_told_apart_by_its_birth() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "banner\nsame\n");
    let first = born(&log);
    let now = Instant::now();
    let old = first_stream(&mut watching(&log), now);
    // File times come from a coarse clock: recreated until it is born later.
    fs::remove_file(&log).unwrap();
    append(&log, "banner\nsame\n");
    while born(&log) == first {
        fs::remove_file(&log).unwrap();
        std::thread::yield_now();
        append(&log, "banner\nsame\n");
    }
    renumber_checkpoint(dir.path(), &log);
    let mut again = restarted(&log);
    again.discover(now);
    let chunk = again.read(now).expect("a chunk");
    assert_ne!(chunk.stream, old, "the new file took the old file's stream");
}

/// A file checkpointed at offset 0 and rewritten in place (same inode, same birth, same
/// first line) while the sidecar was down is a new instance, read from its start.
#[test]
fn a_file_rewritten_in_place_at_offset_0_is_a_new_instance() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "banner\nline1\n");
    let now = Instant::now();
    let old = first_stream(&mut watching(&log), now);
    truncate(&log);
    append(&log, "banner\nother\n");
    let mut again = restarted(&log);
    let events = again.discover(now);
    assert!(
        events.contains(&Event::Truncated { path: log.clone() }),
        "{events:?}"
    );
    let chunk = again.read(now).expect("a chunk");
    assert_ne!(chunk.stream, old, "the rewritten file kept the old stream");
}

/// The same file met again after a restart at offset 0 keeps its stream: what was sent
/// before the restart is re-sent with the same ids.
#[test]
fn the_same_file_at_offset_0_keeps_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "banner\nline1\n");
    let now = Instant::now();
    let old = first_stream(&mut watching(&log), now);
    append(&log, "line2\n");
    let mut again = restarted(&log);
    again.discover(now);
    let chunk = again.read(now).expect("a chunk");
    assert_eq!(chunk.stream, old);
    assert_eq!(chunk.lines.len(), 3);
}

/// Everything `set` reads from now on, with the stream each line came under.
fn drain_streams(set: &mut FileSet, now: Instant) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    while let Some(chunk) = set.read(now) {
        for l in &chunk.lines {
            let text = &chunk.data[l.start as usize..(l.start + l.len) as usize];
            out.push((chunk.stream, String::from_utf8_lossy(text).into_owned()));
        }
        set.handed_over(chunk.position);
    }
    out
}

/// A young file (checkpointed below 1,088 bytes, nothing acknowledged), copied by
/// copytruncate and truncated just before a crash the sidecar had not seen them: at
/// restart its copy, an unknown sibling, continues its stream from the checkpoint. It
/// was taken for history and its lines were lost (the hour-long combined-fault run).
#[test]
fn a_young_file_copied_and_truncated_before_a_crash_is_followed_through_its_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let lines: Vec<String> = (1..=30).map(|i| format!("line {i}")).collect();
    append(&log, &format!("first\n{}\n", lines.join("\n")));
    let now = Instant::now();
    let stream = first_stream(&mut watching(&log), now);
    // copytruncate, then the application writes on; the sidecar is down meanwhile.
    fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    truncate(&log);
    append(&log, "other\nnew 1\n");
    let mut again = restarted(&log);
    again.discover(now);
    again.recover(now);
    let got = drain_streams(&mut again, now);
    let copied: Vec<&str> = got
        .iter()
        .filter(|(s, _)| *s == stream)
        .map(|(_, l)| l.as_str())
        .collect();
    let mut want = vec!["first"];
    want.extend(lines.iter().map(String::as_str));
    assert_eq!(
        copied, want,
        "the copy continues the checkpointed stream: {got:?}"
    );
    let fresh: Vec<&str> = got
        .iter()
        .filter(|(s, _)| *s != stream)
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(fresh, ["other", "new 1"]);
}

/// The same restart, but the sibling that starts alike is older than the checkpointed
/// file (born before it): no copy of it, so it is left alone as history.
#[test]
fn an_older_sibling_that_starts_alike_is_no_copy_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let text = "first\nline 1\nline 2\n";
    append(&dir.path().join("app.log.1"), text);
    append(&log, text);
    assert!(born(&dir.path().join("app.log.1")) <= born(&log));
    let now = Instant::now();
    let stream = first_stream(&mut watching(&log), now);
    truncate(&log);
    append(&log, "other\n");
    let mut again = restarted(&log);
    again.discover(now);
    again.recover(now);
    let got = drain_streams(&mut again, now);
    assert!(got.iter().all(|(s, _)| *s != stream), "{got:?}");
    let texts: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(texts, ["other"]);
}
