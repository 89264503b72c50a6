//! File system events that wake the tailer, so that an idle sidecar does not poll.
//!
//! The directory the path or glob lives in is watched through the `notify` crate
//! (inotify on Linux): a write, a create, a rename or a deletion there wakes the tailer,
//! which then reads and, at most every poll interval, discovers. Accesses (opens,
//! reads) are ignored: the sidecar's own would wake it in a loop. The watch is only a
//! hint: the tailer still rescans every `RESCAN_INTERVAL` (a file renamed out of the
//! watched directory and written on raises no event there), and a directory that does
//! not exist yet is watched once it does, the tailer polling meanwhile.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use futures::channel::mpsc;
use notify::event::EventKind;
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

/// Something changed in a watched directory.
#[derive(Debug)]
pub struct Wake;

/// The watch on the log directory; the wake-ups arrive on the receiver it was made with.
pub struct Watch {
    watcher: RecommendedWatcher,
    dir: PathBuf,
    recursive: bool,
    /// The directory's device and inode while it is watched.
    watching: Option<(u64, u64)>,
}

impl Watch {
    /// A watch for `pattern` (a path or a glob). Only wake-ups are sent, at most one
    /// pending at a time: a burst of writes is one wake-up.
    pub fn new(pattern: &str) -> notify::Result<(Watch, mpsc::Receiver<Wake>)> {
        let (dir, recursive) = base_dir(pattern);
        // In single-path mode only the path and its rotation siblings matter.
        let prefix: Option<OsString> = (!is_glob(pattern))
            .then(|| Path::new(pattern).file_name().map(|n| n.to_owned()))
            .flatten();
        let (mut tx, rx) = mpsc::channel(0);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let wake = match event {
                Ok(event) => {
                    !matches!(event.kind, EventKind::Access(_))
                        && (event.paths.is_empty()
                            || event.paths.iter().any(|p| concerns(p, prefix.as_deref())))
                }
                // Events were lost (the queue overflowed): look at everything.
                Err(_) => true,
            };
            if wake {
                // Full: a wake-up is already pending, which is all that is needed.
                let _ = tx.try_send(Wake);
            }
        })?;
        let mut watch = Watch {
            watcher,
            dir,
            recursive,
            watching: None,
        };
        watch.ensure();
        Ok((watch, rx))
    }

    /// Watches the directory if it is not watched yet (it may not have existed), or
    /// again if it was replaced (removed and created anew, which ends a watch); true
    /// when it is watched. Called at every rescan: a stat.
    pub fn ensure(&mut self) -> bool {
        let now = fs::metadata(&self.dir).ok().map(|m| (m.dev(), m.ino()));
        if self.watching.is_some() && self.watching != now {
            let _ = self.watcher.unwatch(&self.dir);
            self.watching = None;
        }
        if self.watching.is_none() && now.is_some() {
            let mode = if self.recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            if self.watcher.watch(&self.dir, mode).is_ok() {
                self.watching = now;
                log::info!(dir = self.dir.display().to_string().as_str(), recursive = self.recursive; "Watching the log directory for changes.");
            }
        }
        self.watching.is_some()
    }
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Whether a change at `path` may concern the followed files: any, with a glob; with a
/// single path, that file and its rotation siblings (names starting with its name).
fn concerns(path: &Path, prefix: Option<&std::ffi::OsStr>) -> bool {
    match (prefix, path.file_name()) {
        (Some(prefix), Some(name)) => name
            .as_encoded_bytes()
            .starts_with(prefix.as_encoded_bytes()),
        _ => true,
    }
}

/// The directory to watch for `pattern`, and whether the pattern reaches below it: the
/// path's own directory, or the longest directory of a glob without wildcards.
pub fn base_dir(pattern: &str) -> (PathBuf, bool) {
    let path = Path::new(pattern);
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !is_glob(pattern) {
        return (parent(path), false);
    }
    let mut base = PathBuf::new();
    let mut components = path.components().peekable();
    while let Some(c) = components.next() {
        let text = c.as_os_str().to_string_lossy();
        if is_glob(&text) {
            // A wildcard in a directory name: its subdirectories must be watched too.
            let below = components.peek().is_some();
            let dir = if base.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                base
            };
            return (dir, below || text.contains("**"));
        }
        match c {
            Component::Normal(_) | Component::RootDir | Component::Prefix(_) => base.push(c),
            Component::CurDir | Component::ParentDir => base.push(c),
        }
    }
    (parent(path), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_watched_is_the_one_without_wildcards() {
        assert_eq!(base_dir("/logs/app.log"), (PathBuf::from("/logs"), false));
        assert_eq!(base_dir("app.log"), (PathBuf::from("."), false));
        assert_eq!(base_dir("/logs/*.log"), (PathBuf::from("/logs"), false));
        assert_eq!(base_dir("/logs/*/app.log"), (PathBuf::from("/logs"), true));
        assert_eq!(
            base_dir("/var/log/a/**/x.log"),
            (PathBuf::from("/var/log/a"), true)
        );
        assert_eq!(base_dir("*.log"), (PathBuf::from("."), false));
    }

    #[test]
    fn a_single_path_cares_for_itself_and_its_siblings_only() {
        let prefix = std::ffi::OsStr::new("app.log");
        assert!(concerns(Path::new("/l/app.log"), Some(prefix)));
        assert!(concerns(Path::new("/l/app.log.1"), Some(prefix)));
        assert!(!concerns(Path::new("/l/other.log"), Some(prefix)));
        assert!(concerns(Path::new("/l/other.log"), None));
    }

    #[test]
    fn a_write_wakes_and_a_read_does_not() {
        use std::io::{Read, Write};
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, b"one\n").unwrap();
        let (mut watch, mut rx) = Watch::new(log.to_str().unwrap()).unwrap();
        assert!(watch.ensure());
        let wait = |rx: &mut mpsc::Receiver<Wake>, within: Duration| {
            let deadline = Instant::now() + within;
            loop {
                if let Ok(Wake) = rx.try_recv() {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"two\n").unwrap();
        assert!(
            wait(&mut rx, Duration::from_secs(10)),
            "a write raised no wake-up"
        );
        // Drain what the write raised, then read: no wake-up may follow.
        while wait(&mut rx, Duration::from_millis(200)) {}
        let mut text = String::new();
        std::fs::File::open(&log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let _ = std::fs::read_dir(dir.path()).unwrap().count();
        std::fs::write(dir.path().join("unrelated.txt"), b"x").unwrap();
        assert!(
            !wait(&mut rx, Duration::from_millis(300)),
            "a read woke the tailer"
        );
    }
}
