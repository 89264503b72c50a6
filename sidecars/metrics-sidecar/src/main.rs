//! The metrics-sidecar binary; everything lives in [`metrics_sidecar::server`].

fn main() -> std::process::ExitCode {
    metrics_sidecar::server::main_with_args(std::env::args().skip(1))
}
