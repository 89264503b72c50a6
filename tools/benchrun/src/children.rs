//! Every process the harness starts, and the promise that none outlives it.
//!
//! Each child runs in a process group of its own (so a benchmark's own helpers go with
//! it) and is told by the kernel to die with the harness (`PR_SET_PDEATHSIG`), which
//! covers even a `kill -9` of the harness. A [`Child`] kills its group when dropped. On
//! SIGINT or SIGTERM the handler kills every live group and raises [`interrupted`], so
//! the blocking waits return and the harness unwinds, dropping its temporary
//! directories on the way out.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// At most this many children at once (the harness starts ten at the most).
const MAX_CHILDREN: usize = 64;
/// Process group ids of the live children; 0 marks a free slot.
static GROUPS: [AtomicI32; MAX_CHILDREN] = [const { AtomicI32::new(0) }; MAX_CHILDREN];
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether SIGINT or SIGTERM has arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    for slot in &GROUPS {
        let pgid = slot.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) is async-signal-safe; a stale group only yields ESRCH.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Installs the SIGINT/SIGTERM handler; call once at start.
pub fn install_signal_handler() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches atomics and calls kill(2).
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// A started process (and its group), killed when dropped.
pub struct Child {
    pub name: String,
    child: std::process::Child,
    slot: Option<usize>,
}

/// Prepares `cmd` so its process lives in its own group and dies with the harness.
fn detach(cmd: &mut Command) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

impl Child {
    /// Starts `program` with `envs`, stdout to `stdout` (or nowhere) and stderr to
    /// `<dir>/<name>.stderr`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        envs: &[(&str, String)],
        dir: &Path,
        stdout: Option<File>,
    ) -> anyhow::Result<Child> {
        if interrupted() {
            anyhow::bail!("interrupted");
        }
        let stderr = File::create(dir.join(format!("{name}.stderr")))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(stdout.map_or_else(Stdio::null, Stdio::from))
            .stderr(stderr);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        detach(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", program.display()))?;
        let pid = child.id() as i32;
        let slot = GROUPS.iter().position(|s| {
            s.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        Ok(Child {
            name: name.to_owned(),
            child,
            slot,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout`; `None` if it is still running then (or the harness was
    /// interrupted).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline || interrupted() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, a grace period, then SIGKILL to the whole group.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_none() {
            // SAFETY: signalling our own child's group.
            unsafe {
                libc::kill(-(self.child.id() as i32), libc::SIGTERM);
            }
            self.wait_timeout(grace);
        }
        self.kill();
    }

    fn kill(&mut self) {
        // SAFETY: as above; the group outlives its leader only until this kill.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
        if let Some(slot) = self.slot.take() {
            GROUPS[slot].store(0, Ordering::SeqCst);
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command to completion in its own group, capturing stdout and stderr (the
/// same guarantees as [`Child`]); `None` when it did not finish within `timeout`.
pub fn run_captured(
    program: &str,
    args: &[&str],
    timeout: Duration,
    dir: &Path,
    name: &str,
) -> anyhow::Result<Option<(ExitStatus, String, String)>> {
    let out_path = dir.join(format!("{name}.stdout"));
    let stdout = File::create(&out_path)?;
    let mut child = Child::spawn(name, Path::new(program), args, &[], dir, Some(stdout))?;
    let status = child.wait_timeout(timeout);
    drop(child);
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(dir.join(format!("{name}.stderr"))).unwrap_or_default();
    Ok(status.map(|s| (s, out, err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_child_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Child::spawn(
            "sleeper",
            Path::new("sleep"),
            &["30"],
            &[],
            dir.path(),
            None,
        )
        .unwrap();
        let pid = child.pid();
        assert!(child.exited().is_none());
        assert!(shared::measure::cpu_seconds(pid).is_some());
        drop(child);
        // Killed and reaped by the drop: the pid is gone from /proc.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_captured_run_returns_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let (status, out, err) = run_captured(
            "sh",
            &["-c", "echo hello; echo oops >&2; exit 3"],
            Duration::from_secs(10),
            dir.path(),
            "sh",
        )
        .unwrap()
        .unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(out, "hello\n");
        assert_eq!(err, "oops\n");
    }

    #[test]
    fn a_run_past_its_timeout_is_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let result = run_captured(
            "sleep",
            &["30"],
            Duration::from_millis(100),
            dir.path(),
            "slow",
        )
        .unwrap();
        assert!(result.is_none());
    }
}
