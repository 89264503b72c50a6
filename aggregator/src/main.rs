//! The `log-aggregator` binary; everything lives in the library (see `lib.rs`).

fn main() -> std::process::ExitCode {
    log_aggregator::server::main()
}
