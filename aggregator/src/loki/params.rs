//! The query parameters of Loki's API: times in nanoseconds, seconds or RFC 3339,
//! durations, directions and limits, read as Loki reads them.

use chrono::{DateTime, Utc};

use super::logql::lexer::parse_duration;

/// Nanoseconds in a second.
pub const NS: i64 = 1_000_000_000;

/// A parameter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameter {name:?}: {reason}")]
pub struct ParamError {
    pub name: &'static str,
    pub reason: String,
}

fn bad(name: &'static str, reason: impl Into<String>) -> ParamError {
    ParamError {
        name,
        reason: reason.into(),
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// A time as Loki takes it: a float is seconds; an integer of at most 10 digits is
/// seconds, a longer one nanoseconds; otherwise RFC 3339.
pub fn time(name: &'static str, value: Option<&str>, default: i64) -> Result<i64, ParamError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    if v.contains('.') && !v.contains('T') {
        if let Ok(secs) = v.parse::<f64>() {
            let ns = (secs * 1e9).round();
            if ns.is_finite() && ns.abs() < 9.2e18 {
                return Ok(ns as i64);
            }
        }
    }
    if let Ok(n) = v.parse::<i64>() {
        let digits = v.trim_start_matches('-').len();
        return if digits <= 10 {
            n.checked_mul(NS).ok_or_else(|| bad(name, "out of range"))
        } else {
            Ok(n)
        };
    }
    DateTime::parse_from_rfc3339(v)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            bad(
                name,
                format!("{v:?} is not a Unix time (nanoseconds or seconds) or an RFC 3339 time"),
            )
        })
}

/// A duration: `5m`, `1h30m`, or a number of seconds (`300`, `0.5`).
pub fn duration(name: &'static str, value: &str) -> Result<i64, ParamError> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        let ns = (secs * 1e9).round();
        if ns.is_finite() && ns > 0.0 && ns < 9.2e18 {
            return Ok(ns as i64);
        }
        return Err(bad(name, format!("{v:?} must be a positive duration")));
    }
    match parse_duration(v) {
        Some(ns) if ns > 0 => Ok(ns),
        _ => Err(bad(
            name,
            format!("{v:?} is not a duration such as 5m or a number of seconds"),
        )),
    }
}

/// `start` and `end` of a range, from `start`, `end` and `since` (Loki: `since` counts
/// back from `end`, or from now when `end` is in the future).
pub fn range(
    start: Option<&str>,
    end: Option<&str>,
    since: Option<&str>,
    default_span: i64,
) -> Result<(i64, i64), ParamError> {
    let now = now_ns();
    let end = time("end", end, now)?;
    let since = since
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| duration("since", s))
        .transpose()?;
    let anchor = end.min(now);
    let default_start = anchor.saturating_sub(since.unwrap_or(default_span));
    let start = time("start", start, default_start)?;
    if end < start {
        return Err(bad(
            "end",
            "the end timestamp must not be before the start time",
        ));
    }
    Ok((start, end))
}

/// Log order: `backward` (newest first, the default) or `forward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

impl Direction {
    pub fn parse(value: Option<&str>) -> Result<Direction, ParamError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("backward") => Ok(Direction::Backward),
            Some("forward") => Ok(Direction::Forward),
            Some(other) => Err(bad(
                "direction",
                format!("{other:?} is not forward or backward"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "FORWARD",
            Direction::Backward => "BACKWARD",
        }
    }
}

/// `limit`: 100 by default, at most `max` (Loki refuses more, naming the limit).
pub fn limit(value: Option<&str>, max: usize) -> Result<usize, ParamError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(100.min(max));
    };
    let n: usize = v
        .parse()
        .map_err(|_| bad("limit", format!("{v:?} is not a whole number")))?;
    if n == 0 {
        return Err(bad("limit", "limit must be a positive value"));
    }
    if n > max {
        return Err(bad(
            "limit",
            format!(
                "max entries limit per query exceeded, limit > max_entries_limit ({n} > {max})"
            ),
        ));
    }
    Ok(n)
}

/// Loki's default step: the range split in about 250 points, at least a second.
pub fn default_step(start: i64, end: i64) -> i64 {
    (((end - start) / NS) / 250).max(1) * NS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_loki_reads_them() {
        assert_eq!(time("t", Some("1588889221"), 0), Ok(1_588_889_221 * NS));
        assert_eq!(
            time("t", Some("1588889221123456789"), 0),
            Ok(1_588_889_221_123_456_789)
        );
        assert_eq!(
            time("t", Some("1588889221.5"), 0),
            Ok(1_588_889_221_500_000_000)
        );
        assert_eq!(
            time("t", Some("2020-05-07T22:07:01.5Z"), 0),
            Ok(1_588_889_221_500_000_000)
        );
        assert_eq!(time("t", Some("4000000000"), 0), Ok(4_000_000_000 * NS));
        assert_eq!(time("t", None, 7), Ok(7));
        assert!(time("t", Some("yesterday"), 0).is_err());
        assert_eq!(duration("step", "5m"), Ok(300 * NS));
        assert_eq!(duration("step", "0.5"), Ok(NS / 2));
        assert!(duration("step", "0").is_err());
        assert!(duration("step", "soon").is_err());
    }

    #[test]
    fn ranges_limits_and_directions() {
        let (s, e) = range(Some("100"), Some("200"), None, 3600 * NS).unwrap();
        assert_eq!((s, e), (100 * NS, 200 * NS));
        let (s, e) = range(None, Some("200"), Some("50s"), 3600 * NS).unwrap();
        assert_eq!((s, e), (150 * NS, 200 * NS));
        assert!(range(Some("300"), Some("200"), None, NS).is_err());
        assert_eq!(limit(None, 5000), Ok(100));
        assert_eq!(limit(Some("5000"), 5000), Ok(5000));
        assert!(limit(Some("5001"), 5000)
            .unwrap_err()
            .to_string()
            .contains("5001 > 5000"));
        assert_eq!(Direction::parse(Some("FORWARD")), Ok(Direction::Forward));
        assert!(Direction::parse(Some("up")).is_err());
        assert_eq!(default_step(0, 3600 * NS), 14 * NS);
        assert_eq!(default_step(0, 10 * NS), NS);
    }
}
