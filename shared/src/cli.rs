//! The command line every binary shares: no argument serves, `healthcheck` probes.
//!
//! Settings come from the environment, not from flags, so the command line stays this
//! small on purpose.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse(Vec::<String>::new()), Ok(Command::Serve));
        assert_eq!(parse(["healthcheck"]), Ok(Command::Healthcheck));
        assert_eq!(parse(["--help"]), Ok(Command::Help));
        assert!(parse(["--frobnicate"]).is_err());
        assert!(parse(["serve", "extra"]).is_err());
    }
}
