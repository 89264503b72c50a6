//! The line that says where the figures were taken: CPU, cores, memory, kernel,
//! compiler, commit, and how busy the machine already was.

use std::path::Path;
use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn output(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `model name` of the first CPU in a `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `MemTotal` of a `/proc/meminfo` text, in GiB.
pub fn memory_gib(meminfo: &str) -> Option<f64> {
    let kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / (1024.0 * 1024.0))
}

/// The commit the figures come from; `+dirty` when the work tree has changes.
pub fn commit(root: &Path) -> String {
    let Some(hash) = output("git", &["rev-parse", "--short=10", "HEAD"], root) else {
        return "unknown".to_owned();
    };
    let dirty = output(
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
        root,
    )
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{hash}+dirty")
    } else {
        hash
    }
}

/// One line describing the machine right now.
pub fn describe(root: &Path) -> String {
    let cpu = cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = memory_gib(&read("/proc/meminfo")).map_or("?".to_owned(), |g| format!("{g:.0}"));
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let rustc = output("rustc", &["-V"], root).unwrap_or_else(|| "rustc ?".to_owned());
    let load: Vec<String> = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .map(str::to_owned)
        .collect();
    format!(
        "{cpu}, {cores} cores, {mem} GiB, Linux {kernel}, {rustc}, load average {} at start",
        load.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_are_read() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC   7B13 64-Core Processor\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("AMD EPYC 7B13 64-Core Processor")
        );
        assert_eq!(memory_gib("MemTotal:       25165824 kB\n"), Some(24.0));
        assert_eq!(memory_gib("nothing"), None);
    }

    #[test]
    fn this_machine_is_described() {
        let line = describe(Path::new("."));
        assert!(line.contains("cores"), "{line}");
        assert!(line.contains("rustc"), "{line}");
    }
}
