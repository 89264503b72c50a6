//! The life of every binary, from its arguments to its exit status, written once.
//!
//! [`main`] is the whole of a binary's `main`: it installs the panic hook, parses the
//! arguments (`--help`, `--version`, `healthcheck`), reads the settings (every bad one
//! named, exit 64), starts logging, runs the component's `serve` inside an actix
//! system, and turns the outcome into an exit status:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | stopped on SIGTERM or SIGINT after draining, or `--help`, `--version`, a healthy `healthcheck` |
//! | 1 | a failure at run time (a port already taken, a store that cannot be opened), logged |
//! | 64 | a setting that is malformed or cannot be used, named on stderr |
//! | 70 | a panic: a bug; the process exits so that its supervisor (Docker's restart policy, the run script) starts it again |
//!
//! [`until_signal`] is the shared SIGTERM/SIGINT handling: both signals drain the same
//! way (actix-web's own handler would treat SIGINT as an immediate stop).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::cli;
use crate::config::{ConfigErrors, EXIT_CONFIG};
use crate::jsonlog;

/// Exit status after a panic (`EX_SOFTWARE` from sysexits.h).
pub const EXIT_PANIC: i32 = 70;
/// Exit status after a failure at run time.
pub const EXIT_FAILURE: u8 = 1;

/// What `--help` says about a binary.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    pub name: &'static str,
    pub about: &'static str,
    /// The settings with their defaults, one a line, as `--help` prints them.
    pub settings_help: &'static str,
}

/// What the skeleton needs to know of a component's typed settings.
pub trait Settings {
    /// Where the component serves; `healthcheck` probes it.
    fn listen_addr(&self) -> SocketAddr;
    /// The JSON-lines log file, for a component that writes one (the services).
    fn log_file(&self) -> Option<&Path> {
        None
    }
    /// The variable that names [`Settings::log_file`], for the error when it cannot be
    /// opened.
    fn log_file_var(&self) -> &'static str {
        "LOG_FILE"
    }
}

/// Why a component stopped other than on a signal.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A setting that parsed but cannot be used (a directory that cannot be written):
    /// reported like a malformed one, exit 64.
    #[error("configuration error: {var}={value:?}: {reason}")]
    Config {
        var: &'static str,
        value: String,
        reason: String,
    },
    /// Anything else: logged, exit 1.
    #[error("{0:#}")]
    Runtime(#[from] anyhow::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Runtime(e.into())
    }
}

/// The whole of a binary's `main`; `serve` runs inside an actix system until a signal.
pub fn main<C, F, Fut>(
    program: &Program,
    args: impl IntoIterator<Item = String>,
    read_settings: impl FnOnce() -> Result<C, ConfigErrors>,
    serve: F,
) -> ExitCode
where
    C: Settings,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    exit_on_panic(program.name);
    let config = match cli::start(
        program.name,
        program.about,
        program.settings_help,
        args,
        read_settings,
        C::listen_addr,
    ) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Err(e) = jsonlog::init(program.name, config.log_file()) {
        return match config.log_file() {
            Some(path) => {
                eprintln!(
                    "{}: configuration error: {}={:?}: {e}",
                    program.name,
                    config.log_file_var(),
                    path.display().to_string()
                );
                ExitCode::from(EXIT_CONFIG)
            }
            None => {
                eprintln!("{}: cannot start logging: {e}", program.name);
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    let outcome = actix_rt::System::new().block_on(serve(config));
    exit_code(program.name, outcome)
}

/// The end of a component's life as an exit status, logged.
pub fn exit_code(program: &str, outcome: Result<(), Failure>) -> ExitCode {
    match outcome {
        Ok(()) => {
            log::info!("Stopped.");
            ExitCode::SUCCESS
        }
        Err(e @ Failure::Config { .. }) => {
            // Said on stderr too: the log may go to a file nobody reads at start.
            eprintln!("{program}: {e}");
            log::error!("Cannot start: {e}.");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            log::error!("{program} failed: {e}.");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// A panic is a bug. Every component is built to be restarted at any moment (the
/// aggregator acknowledges only what it committed, the logging sidecar resumes from its
/// checkpoints), so the safe reaction is to exit with [`EXIT_PANIC`] and let the
/// supervisor of the process restart it, rather than run on with a thread or an actor
/// that died outside any supervision.
pub fn exit_on_panic(program: &'static str) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        log::error!(program = program; "A bug made the process panic; it exits so that its supervisor restarts it.");
        std::process::exit(EXIT_PANIC);
    }));
}

/// Resolves at the first SIGTERM or SIGINT, with the signal's name.
pub async fn signal() -> io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Runs an actix-web server (built with `disable_signals()`) until SIGTERM or SIGINT,
/// then stops it gracefully: no new connections, requests in flight finish within the
/// server's `shutdown_timeout`.
pub async fn until_signal(server: actix_web::dev::Server) -> io::Result<()> {
    let handle = server.handle();
    let mut running = actix_rt::spawn(server);
    tokio::select! {
        ended = &mut running => return ended.map_err(io::Error::other)?,
        received = signal() => {
            let name = received?;
            log::info!(signal = name; "Stopping: finishing the requests in flight.");
        }
    }
    handle.stop(true).await;
    running.await.map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_exit_statuses() {
        assert_eq!(exit_code("p", Ok(())), ExitCode::SUCCESS);
        let config = Failure::Config {
            var: "STATE_DIR",
            value: "/nope".into(),
            reason: "not writable".into(),
        };
        assert_eq!(
            config.to_string(),
            "configuration error: STATE_DIR=\"/nope\": not writable"
        );
        assert_eq!(exit_code("p", Err(config)), ExitCode::from(EXIT_CONFIG));
        let runtime = Failure::from(io::Error::other("port taken"));
        assert_eq!(exit_code("p", Err(runtime)), ExitCode::from(EXIT_FAILURE));
    }
}
