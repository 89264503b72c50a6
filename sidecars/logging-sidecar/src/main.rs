//! The `logging-sidecar` binary; everything lives in [`logging_sidecar::server`].

fn main() -> std::process::ExitCode {
    logging_sidecar::server::main()
}
