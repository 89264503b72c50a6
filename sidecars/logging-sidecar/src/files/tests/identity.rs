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
