//! Typed configuration from the environment.
//!
//! Each binary describes its settings as one struct built through a [`Reader`]. The reader
//! keeps going after a bad value so that every mistake is reported at once, naming the
//! variable, and tests hand it a map instead of the process environment.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Exit status for a configuration error (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG: u8 = 64;

/// Where settings come from: the process environment, or a map in tests.
pub trait Source {
    /// The value of `key`; `Err` carries a lossy rendering of a value that is not UTF-8.
    fn get(&self, key: &str) -> Option<Result<String, String>>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, key: &str) -> Option<Result<String, String>> {
        std::env::var_os(key).map(|v| {
            v.into_string()
                .map_err(|v| v.to_string_lossy().into_owned())
        })
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<Result<String, String>> {
        HashMap::get(self, key).cloned().map(Ok)
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, key: &str) -> Option<Result<String, String>> {
        HashMap::get(self, key).map(|v| Ok((*v).to_owned()))
    }
}

/// One bad variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.var, self.value, self.reason)
    }
}

/// Every bad variable found while reading one configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// Prints every error on stderr, one a line, naming the variable.
    pub fn report(&self, program: &str) {
        for e in &self.0 {
            eprintln!("{program}: configuration error: {e}");
        }
    }
}

/// Reads variables, collecting every error instead of stopping at the first.
pub struct Reader<'a> {
    source: &'a dyn Source,
    errors: Vec<ConfigError>,
}

impl<'a> Reader<'a> {
    pub fn new(source: &'a dyn Source) -> Self {
        Reader {
            source,
            errors: Vec::new(),
        }
    }

    /// The raw value; an empty value counts as unset.
    fn raw(&mut self, key: &str) -> Option<String> {
        match self.source.get(key) {
            None => None,
            Some(Ok(v)) if v.is_empty() => None,
            Some(Ok(v)) => Some(v),
            Some(Err(lossy)) => {
                self.fail(key, &lossy, "not valid UTF-8");
                None
            }
        }
    }

    /// Records a bad value; the caller goes on with its default.
    pub fn fail(&mut self, key: &str, value: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            var: key.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        });
    }

    pub fn string(&mut self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or_else(|| default.to_owned())
    }

    pub fn optional_string(&mut self, key: &str) -> Option<String> {
        self.raw(key)
    }

    pub fn path(&mut self, key: &str, default: &str) -> PathBuf {
        PathBuf::from(self.string(key, default))
    }

    /// Any `FromStr` value, such as an integer or a socket address.
    pub fn parse<T>(&mut self, key: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(key) {
            None => default,
            Some(v) => match v.trim().parse() {
                Ok(parsed) => parsed,
                Err(e) => {
                    self.fail(key, &v, e.to_string());
                    default
                }
            },
        }
    }

    /// A number that must lie within `range`.
    pub fn bounded<T>(&mut self, key: &str, default: T, range: std::ops::RangeInclusive<T>) -> T
    where
        T: FromStr + PartialOrd + Copy + fmt::Display,
        T::Err: fmt::Display,
    {
        let raw = self.raw(key);
        let value = match &raw {
            None => return default,
            Some(v) => match v.trim().parse::<T>() {
                Ok(parsed) => parsed,
                Err(e) => {
                    self.fail(key, v, e.to_string());
                    return default;
                }
            },
        };
        if range.contains(&value) {
            value
        } else {
            let v = raw.unwrap_or_default();
            self.fail(
                key,
                &v,
                format!("must be between {} and {}", range.start(), range.end()),
            );
            default
        }
    }

    pub fn socket_addr(&mut self, key: &str, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default.parse().expect("default socket address is valid");
        self.parse(key, fallback)
    }

    /// A duration such as `500ms`, `2s`, `5m` or `1h`.
    pub fn duration(&mut self, key: &str, default: Duration) -> Duration {
        match self.raw(key) {
            None => default,
            Some(v) => match parse_duration(&v) {
                Ok(d) => d,
                Err(reason) => {
                    self.fail(key, &v, reason);
                    default
                }
            },
        }
    }

    /// A size in bytes: a plain number, or one with a `KiB`, `MiB` or `GiB` suffix.
    pub fn bytes(&mut self, key: &str, default: u64) -> u64 {
        match self.raw(key) {
            None => default,
            Some(v) => match parse_bytes(&v) {
                Ok(n) => n,
                Err(reason) => {
                    self.fail(key, &v, reason);
                    default
                }
            },
        }
    }

    /// An `http://` or `https://` URL, kept as text for the HTTP client.
    pub fn url(&mut self, key: &str, default: &str) -> String {
        let v = self.string(key, default);
        match v.parse::<awc::http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http") | Some("https"))
                    && uri.host().is_some() =>
            {
                v
            }
            _ => {
                self.fail(key, &v, "expected an http:// or https:// URL");
                default.to_owned()
            }
        }
    }

    /// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
    pub fn flag(&mut self, key: &str, default: bool) -> bool {
        match self.raw(key) {
            None => default,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    self.fail(key, &v, "expected true or false");
                    default
                }
            },
        }
    }

    /// Ends reading: `Ok(())` when every variable was good.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// Parses `500ms`, `2s`, `1.5s`, `5m`, `1h`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| "expected a duration such as 500ms, 2s or 5m".to_owned())?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?}; use ms, s, m or h")),
    };
    let secs = n * scale;
    if !secs.is_finite() || secs > 365.0 * 86400.0 {
        return Err("duration out of range".to_owned());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration the way settings write it: `500ms`, `2s`, `1.5s`, `5m`, `1h`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

/// Parses `1048576`, `64KiB`, `16MiB`, `1GiB` (also `k`, `M`, `G` as binary units).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| "expected a size such as 1048576, 64KiB or 16MiB".to_owned())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?}; use KiB, MiB or GiB")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| "size out of range".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let env: HashMap<&str, &str> = [("EMPTY", "")].into();
        let mut r = Reader::new(&env);
        assert_eq!(r.string("MISSING", "x"), "x");
        assert_eq!(r.string("EMPTY", "y"), "y");
        assert_eq!(
            r.duration("D", Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert!(r.finish().is_ok());
    }

    #[test]
    fn every_bad_variable_is_reported() {
        let env: HashMap<&str, &str> = [
            ("PORTISH", "abc"),
            ("WAIT", "10 parsecs"),
            ("URL", "ftp://x"),
            ("N", "5000"),
            ("ON", "maybe"),
        ]
        .into();
        let mut r = Reader::new(&env);
        r.parse::<u16>("PORTISH", 1);
        r.duration("WAIT", Duration::ZERO);
        r.url("URL", "http://localhost");
        r.bounded::<u32>("N", 1, 1..=1000);
        r.flag("ON", false);
        let errors = r.finish().unwrap_err();
        let vars: Vec<_> = errors.0.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(vars, ["PORTISH", "WAIT", "URL", "N", "ON"]);
        assert!(errors.to_string().contains("WAIT=\"10 parsecs\""));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1e999s").is_err());
        assert_eq!(parse_bytes("64KiB").unwrap(), 65536);
        assert_eq!(parse_bytes("16MiB").unwrap(), 16 << 20);
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("99999999999999999999GiB").is_err());
    }

    #[test]
    fn urls_and_addresses() {
        let env: HashMap<&str, &str> =
            [("A", "http://user-service:8080"), ("L", "127.0.0.1:0")].into();
        let mut r = Reader::new(&env);
        assert_eq!(r.url("A", "http://x"), "http://user-service:8080");
        assert_eq!(r.socket_addr("L", "0.0.0.0:8080").port(), 0);
        assert!(r.finish().is_ok());
    }

    #[test]
    fn durations_are_written_as_they_are_read() {
        for text in ["500ms", "2s", "1.5s", "5m", "1h", "0s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
