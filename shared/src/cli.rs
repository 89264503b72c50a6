//! The command line every binary shares: no argument serves, `healthcheck` probes.
//!
//! Settings come from the environment, not from flags, so the command line stays this
//! small on purpose. [`start`] is the beginning of every binary's `main` (through
//! [`crate::startup::main`]), so that all of them answer `--help`, bad settings and
//! `healthcheck` the same way.

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::config::{ConfigErrors, EXIT_CONFIG};

/// What the process was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Run the component (no argument, or `serve`).
    Serve,
    /// Exit 0 when the component's own `/health` answers.
    Healthcheck,
    /// Print usage and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let args: Vec<S> = args.into_iter().collect();
    match args.as_slice() {
        [] => Ok(Command::Serve),
        [one] => match one.as_ref() {
            "serve" => Ok(Command::Serve),
            "healthcheck" => Ok(Command::Healthcheck),
            "-h" | "--help" | "help" => Ok(Command::Help),
            "-V" | "--version" => Ok(Command::Version),
            other => Err(format!("unknown argument {other:?}")),
        },
        _ => Err("expected at most one argument".to_owned()),
    }
}

/// The usage text; `settings` lists the environment variables with their defaults.
pub fn usage(program: &str, about: &str, settings: &str) -> String {
    format!(
        "{program} {version}\n{about}\n\nUSAGE:\n    {program} [serve]       run (the default)\n    {program} healthcheck   exit 0 when this component's /health answers\n\nSETTINGS (environment):\n{settings}",
        version = env!("CARGO_PKG_VERSION")
    )
}

/// What every binary does before its own work: parse the arguments, answer `--help` and
/// `--version`, read the settings (every bad one named, then exit 64), answer
/// `healthcheck`. `Ok(config)` means "serve with it"; `Err(code)` means "exit now".
pub fn start<C>(
    program: &str,
    about: &str,
    settings_help: &str,
    args: impl IntoIterator<Item = String>,
    read_config: impl FnOnce() -> Result<C, ConfigErrors>,
    listen_addr: impl FnOnce(&C) -> SocketAddr,
) -> Result<C, ExitCode> {
    let command = parse(args).map_err(|e| {
        eprintln!("{program}: {e}; try --help");
        ExitCode::from(EXIT_CONFIG)
    })?;
    match command {
        Command::Help => {
            print!("{}", usage(program, about, settings_help));
            return Err(ExitCode::SUCCESS);
        }
        Command::Version => {
            println!("{program} {}", env!("CARGO_PKG_VERSION"));
            return Err(ExitCode::SUCCESS);
        }
        Command::Serve | Command::Healthcheck => {}
    }
    let config = read_config().map_err(|e| {
        e.report(program);
        ExitCode::from(EXIT_CONFIG)
    })?;
    if command == Command::Healthcheck {
        return Err(crate::healthcheck::run(program, listen_addr(&config)));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_answers_help_and_bad_arguments_before_reading_settings() {
        let never = || -> Result<(), ConfigErrors> { panic!("settings read") };
        let addr = |_: &()| -> SocketAddr { unreachable!() };
        assert_eq!(
            start("p", "", "", ["--help".to_owned()], never, addr),
            Err(ExitCode::SUCCESS)
        );
        assert_eq!(
            start("p", "", "", ["--bogus".to_owned()], never, addr),
            Err(ExitCode::from(EXIT_CONFIG))
        );
        let bad = || -> Result<(), ConfigErrors> { Err(ConfigErrors(Vec::new())) };
        assert_eq!(
            start("p", "", "", Vec::new(), bad, addr),
            Err(ExitCode::from(EXIT_CONFIG))
        );
        assert_eq!(start("p", "", "", Vec::new(), || Ok(()), addr), Ok(()));
    }

    #[test]
    fn commands() {
        assert_eq!(parse(Vec::<String>::new()), Ok(Command::Serve));
        assert_eq!(parse(["healthcheck"]), Ok(Command::Healthcheck));
        assert_eq!(parse(["--help"]), Ok(Command::Help));
        assert!(parse(["--frobnicate"]).is_err());
        assert!(parse(["serve", "extra"]).is_err());
    }
}
