//! What the sidecar's benchmark examples share: starting a binary quietly.

use std::path::Path;

use shared::testkit::Process;

/// Starts `bin` with `envs` and warnings only in its log, its stderr in `log`
/// (`<dir>/<name>.stderr`); killed when dropped.
pub fn spawn(bin: &Path, envs: &[(&str, String)], log: &Path) -> Process {
    let mut envs = envs.to_vec();
    envs.push(("RUST_LOG", "warn".to_owned()));
    let name = log
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("process");
    let dir = log.parent().unwrap_or(Path::new("."));
    Process::spawn(name, bin, &[], &envs, dir).unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
}
