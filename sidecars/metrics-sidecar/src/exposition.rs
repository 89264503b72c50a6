//! The Prometheus text exposition format, read one line at a time.
//!
//! First stage of the enricher: it turns a line of a scraped body into a [`Line`] that
//! borrows from the body, so parsing a sample allocates nothing (the labels go into a
//! vector the caller reuses). It follows the grammar of format 0.0.4: `# HELP` and
//! `# TYPE` comments, other comments, blank lines, and samples
//! `name{label="value",...} value [timestamp]` with escaped label values, NaN, ±Inf and
//! optional millisecond timestamps. The OpenMetrics dialect adds `# UNIT`, `# EOF`,
//! float-second timestamps and exemplars. Validation is as strict as `promtool`'s, so
//! what passes here is still valid once relabeled.

use std::fmt;

/// Which text format a body is written in, from the response's content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `text/plain; version=0.0.4`, the classic Prometheus text format.
    Text,
    /// `application/openmetrics-text`.
    OpenMetrics,
}

impl Dialect {
    /// The dialect announced by a `Content-Type` header; anything else is read as text.
    pub fn from_content_type(content_type: Option<&str>) -> Dialect {
        match content_type {
            Some(ct)
                if ct
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/openmetrics-text") =>
            {
                Dialect::OpenMetrics
            }
            _ => Dialect::Text,
        }
    }
}

/// The type of a metric family, as a `# TYPE` line declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
    /// OpenMetrics only: exposed as a gauge named `<family>_info`.
    Info,
    /// OpenMetrics only: exposed as a gauge.
    StateSet,
    /// OpenMetrics only: has no equivalent in format 0.0.4.
    GaugeHistogram,
}

impl MetricType {
    fn parse(token: &str, dialect: Dialect) -> Option<MetricType> {
        Some(match (token, dialect) {
            ("counter", _) => MetricType::Counter,
            ("gauge", _) => MetricType::Gauge,
            ("histogram", _) => MetricType::Histogram,
            ("summary", _) => MetricType::Summary,
            ("untyped", Dialect::Text) | ("unknown", Dialect::OpenMetrics) => MetricType::Untyped,
            ("info", Dialect::OpenMetrics) => MetricType::Info,
            ("stateset", Dialect::OpenMetrics) => MetricType::StateSet,
            ("gaugehistogram", Dialect::OpenMetrics) => MetricType::GaugeHistogram,
            _ => return None,
        })
    }

    /// The name of the type in format 0.0.4.
    pub fn text_name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge | MetricType::Info | MetricType::StateSet => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped | MetricType::GaugeHistogram => "untyped",
        }
    }
}

/// One label of a sample; `value` is still escaped, exactly as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// One line of an exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// An empty or all-blank line.
    Blank,
    /// A comment that is neither HELP nor TYPE (nor, in OpenMetrics, UNIT or EOF).
    Comment,
    /// `# HELP name text`; `text` is still escaped.
    Help { name: &'a str, text: &'a str },
    /// `# TYPE name type`.
    Type { name: &'a str, kind: MetricType },
    /// OpenMetrics `# UNIT name unit`.
    Unit { name: &'a str },
    /// OpenMetrics `# EOF`.
    Eof,
    /// A sample; its labels are in the vector handed to [`parse_line`].
    Sample {
        name: &'a str,
        value: &'a str,
        timestamp: Option<&'a str>,
    },
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("invalid metric name")]
    InvalidMetricName,
    #[error("invalid label name")]
    InvalidLabelName,
    #[error("expected '=' after a label name")]
    ExpectedEquals,
    #[error("expected '\"' to open a label value")]
    ExpectedQuote,
    #[error("unterminated label value")]
    UnterminatedLabelValue,
    #[error("invalid escape sequence in a label value")]
    InvalidEscape,
    #[error("expected ',' or '}}' after a label")]
    ExpectedCommaOrBrace,
    #[error("label {0:?} appears twice")]
    DuplicateLabel(String),
    #[error("missing sample value")]
    MissingValue,
    #[error("invalid sample value {0:?}")]
    InvalidValue(String),
    #[error("invalid timestamp {0:?}")]
    InvalidTimestamp(String),
    #[error("unexpected text after the sample")]
    TrailingText,
    #[error("unknown metric type {0:?}")]
    UnknownType(String),
    #[error("metric type gaugehistogram has no equivalent in the text format")]
    UnsupportedType,
    #[error("second HELP line for {0:?}")]
    DuplicateHelp(String),
    #[error("second TYPE line for {0:?}")]
    DuplicateType(String),
    #[error("TYPE line for {0:?} after its samples")]
    TypeAfterSamples(String),
    #[error("sample {0:?} does not fit the type of its family")]
    NotInFamily(String),
    #[error("histogram bucket with a non-numeric \"le\" label")]
    InvalidBucketBound,
    #[error("summary sample with a non-numeric \"quantile\" label")]
    InvalidQuantile,
    #[error("content after # EOF")]
    AfterEof,
    #[error("OpenMetrics body without # EOF")]
    MissingEof,
}

/// An error and the 1-based line where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ExpositionError {
    pub line: usize,
    pub kind: ErrorKind,
}

impl fmt::Display for ExpositionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "line {}: {}", self.line, self.kind)
        }
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && is_blank(bytes[i]) {
        i += 1;
    }
    i
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// The end of the metric name that starts at `i`, or `None` when none starts there.
fn metric_name_end(bytes: &[u8], i: usize) -> Option<usize> {
    if i >= bytes.len() || !is_name_start(bytes[i]) {
        return None;
    }
    let mut j = i + 1;
    while j < bytes.len() && is_name_char(bytes[j]) {
        j += 1;
    }
    Some(j)
}

/// Whether `name` is a valid metric name.
pub fn is_metric_name(name: &str) -> bool {
    metric_name_end(name.as_bytes(), 0) == Some(name.len())
}

/// Whether `name` is a valid label name (a metric name without colons).
pub fn is_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The end of the token (a run of non-blank bytes) that starts at `i`.
fn token_end(bytes: &[u8], i: usize) -> usize {
    let mut j = i;
    while j < bytes.len() && !is_blank(bytes[j]) {
        j += 1;
    }
    j
}

/// Whether `text` is a sample value: a float, `NaN` or `±Inf` in any case.
pub fn is_value(text: &str) -> bool {
    // Rust and Go agree on decimal floats, `inf`, `infinity` and `nan`, in any case.
    !text.is_empty() && text.parse::<f64>().is_ok()
}

/// Parses one line (without its newline). Sample labels are appended to `labels`,
/// which the caller clears between lines.
pub fn parse_line<'a>(
    line: &'a str,
    dialect: Dialect,
    labels: &mut Vec<Label<'a>>,
) -> Result<Line<'a>, ErrorKind> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let bytes = line.as_bytes();
    let start = skip_blanks(bytes, 0);
    if start == bytes.len() {
        return Ok(Line::Blank);
    }
    if bytes[start] == b'#' {
        return parse_comment(line, start + 1, dialect);
    }
    parse_sample(line, start, dialect, labels)
}

fn parse_comment(line: &str, after_hash: usize, dialect: Dialect) -> Result<Line<'_>, ErrorKind> {
    let bytes = line.as_bytes();
    let i = skip_blanks(bytes, after_hash);
    let end = token_end(bytes, i);
    let keyword = &line[i..end];
    let is_keyword = matches!(keyword, "HELP" | "TYPE")
        || (dialect == Dialect::OpenMetrics && matches!(keyword, "UNIT" | "EOF"));
    if !is_keyword {
        return Ok(Line::Comment);
    }
    if keyword == "EOF" {
        return if skip_blanks(bytes, end) == bytes.len() {
            Ok(Line::Eof)
        } else {
            Err(ErrorKind::TrailingText)
        };
    }
    let name_start = skip_blanks(bytes, end);
    if name_start == end && end < bytes.len() {
        return Err(ErrorKind::InvalidMetricName);
    }
    let name_end = metric_name_end(bytes, name_start).ok_or(ErrorKind::InvalidMetricName)?;
    if name_end < bytes.len() && !is_blank(bytes[name_end]) {
        return Err(ErrorKind::InvalidMetricName);
    }
    let name = &line[name_start..name_end];
    let rest_start = skip_blanks(bytes, name_end);
    let rest = &line[rest_start..];
    match keyword {
        "HELP" => Ok(Line::Help { name, text: rest }),
        "TYPE" => {
            let kind_end = token_end(bytes, rest_start);
            if skip_blanks(bytes, kind_end) != bytes.len() {
                return Err(ErrorKind::TrailingText);
            }
            let token = &line[rest_start..kind_end];
            if token.is_empty() {
                // `# TYPE name` and nothing more: readers ignore it, and so do we.
                return Ok(Line::Comment);
            }
            match MetricType::parse(token, dialect) {
                Some(MetricType::GaugeHistogram) => Err(ErrorKind::UnsupportedType),
                Some(kind) => Ok(Line::Type { name, kind }),
                None => Err(ErrorKind::UnknownType(token.to_owned())),
            }
        }
        _ => Ok(Line::Unit { name }),
    }
}

fn parse_sample<'a>(
    line: &'a str,
    start: usize,
    dialect: Dialect,
    labels: &mut Vec<Label<'a>>,
) -> Result<Line<'a>, ErrorKind> {
    let bytes = line.as_bytes();
    let name_end = metric_name_end(bytes, start).ok_or(ErrorKind::InvalidMetricName)?;
    let name = &line[start..name_end];
    let mut i = skip_blanks(bytes, name_end);
    if i < bytes.len() && bytes[i] == b'{' {
        i = parse_labels(line, i + 1, labels)?;
        i = skip_blanks(bytes, i);
    } else if i == name_end && i < bytes.len() {
        // Something glued to the name that is neither a blank nor a brace.
        return Err(ErrorKind::InvalidMetricName);
    }
    if i == bytes.len() {
        return Err(ErrorKind::MissingValue);
    }
    let value_end = token_end(bytes, i);
    let value = &line[i..value_end];
    if !is_value(value) {
        return Err(ErrorKind::InvalidValue(value.to_owned()));
    }
    let mut i = skip_blanks(bytes, value_end);
    let mut timestamp = None;
    if i < bytes.len() && bytes[i] != b'#' {
        let ts_end = token_end(bytes, i);
        let ts = &line[i..ts_end];
        let valid = match dialect {
            Dialect::Text => ts.parse::<i64>().is_ok(),
            Dialect::OpenMetrics => ts.parse::<f64>().is_ok_and(f64::is_finite),
        };
        if !valid {
            return Err(ErrorKind::InvalidTimestamp(ts.to_owned()));
        }
        timestamp = Some(ts);
        i = skip_blanks(bytes, ts_end);
    }
    if i < bytes.len() {
        // OpenMetrics allows an exemplar (`# {...} value`) here; the text format does not.
        if dialect == Dialect::Text || bytes[i] != b'#' || i == value_end {
            return Err(ErrorKind::TrailingText);
        }
    }
    Ok(Line::Sample {
        name,
        value,
        timestamp,
    })
}

/// Reads `name="value"` pairs up to the closing brace; returns the index after it.
fn parse_labels<'a>(
    line: &'a str,
    mut i: usize,
    labels: &mut Vec<Label<'a>>,
) -> Result<usize, ErrorKind> {
    let bytes = line.as_bytes();
    let first = labels.len();
    loop {
        i = skip_blanks(bytes, i);
        if i < bytes.len() && bytes[i] == b'}' {
            break;
        }
        let name_start = i;
        if i >= bytes.len() || !(bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
            return Err(ErrorKind::InvalidLabelName);
        }
        i += 1;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let name = &line[name_start..i];
        i = skip_blanks(bytes, i);
        if i >= bytes.len() || bytes[i] != b'=' {
            return Err(ErrorKind::ExpectedEquals);
        }
        i = skip_blanks(bytes, i + 1);
        if i >= bytes.len() || bytes[i] != b'"' {
            return Err(ErrorKind::ExpectedQuote);
        }
        i += 1;
        let value_start = i;
        loop {
            match bytes.get(i) {
                None => return Err(ErrorKind::UnterminatedLabelValue),
                Some(b'"') => break,
                Some(b'\\') => match bytes.get(i + 1) {
                    Some(b'\\' | b'"' | b'n') => i += 2,
                    None => return Err(ErrorKind::UnterminatedLabelValue),
                    Some(_) => return Err(ErrorKind::InvalidEscape),
                },
                Some(_) => i += 1,
            }
        }
        let value = &line[value_start..i];
        if labels[first..].iter().any(|l| l.name == name) {
            return Err(ErrorKind::DuplicateLabel(name.to_owned()));
        }
        labels.push(Label { name, value });
        i = skip_blanks(bytes, i + 1);
        match bytes.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => break,
            _ => return Err(ErrorKind::ExpectedCommaOrBrace),
        }
    }
    Ok(i + 1)
}

/// Decodes an escaped label value (`\\`, `\"`, `\n`) into `out`.
pub fn unescape_label_value(raw: &str, out: &mut String) {
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
}

/// Escapes a label value for the text format.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes a HELP text so that it is valid in format 0.0.4, whatever the input wrote.
///
/// Only `\\` and `\n` are escapes there. An OpenMetrics `\"` becomes a plain quote, and
/// any other backslash is taken literally and escaped, so a sloppy HELP text never costs
/// the whole scrape.
pub fn write_help_text(raw: &str, out: &mut Vec<u8>) {
    let bytes = raw.as_bytes();
    if !bytes.contains(&b'\\') {
        out.extend_from_slice(bytes);
        return;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => {
                out.extend_from_slice(b"\\\\");
                i += 2;
            }
            Some(b'n') => {
                out.extend_from_slice(b"\\n");
                i += 2;
            }
            Some(b'"') => {
                out.push(b'"');
                i += 2;
            }
            _ => {
                out.extend_from_slice(b"\\\\");
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed sample as owned parts: name, labels, value, timestamp.
    type Parts = (String, Vec<(String, String)>, String, Option<String>);

    fn sample(line: &str) -> Result<Parts, ErrorKind> {
        let mut labels = Vec::new();
        match parse_line(line, Dialect::Text, &mut labels)? {
            Line::Sample {
                name,
                value,
                timestamp,
            } => Ok((
                name.to_owned(),
                labels
                    .iter()
                    .map(|l| (l.name.to_owned(), l.value.to_owned()))
                    .collect(),
                value.to_owned(),
                timestamp.map(str::to_owned),
            )),
            other => panic!("not a sample: {other:?}"),
        }
    }

    #[test]
    fn label_values_may_hold_braces_commas_and_escaped_quotes() {
        let (name, labels, value, ts) =
            sample(r#"m{a="x{y}z",b="1,2",c="say \"hi\"",d="back\\slash\n"} 3.5 1700000000000"#)
                .unwrap();
        assert_eq!(name, "m");
        assert_eq!(labels[0], ("a".into(), "x{y}z".into()));
        assert_eq!(labels[1], ("b".into(), "1,2".into()));
        assert_eq!(labels[2], ("c".into(), r#"say \"hi\""#.into()));
        assert_eq!(labels[3], ("d".into(), r"back\\slash\n".into()));
        assert_eq!(value, "3.5");
        assert_eq!(ts.as_deref(), Some("1700000000000"));
        let mut decoded = String::new();
        unescape_label_value(&labels[2].1, &mut decoded);
        assert_eq!(decoded, "say \"hi\"");
    }

    #[test]
    fn blanks_trailing_commas_and_special_values() {
        let (_, labels, value, _) = sample("m { a = \"1\" , } NaN").unwrap();
        assert_eq!(labels, [("a".into(), "1".into())]);
        assert_eq!(value, "NaN");
        for v in ["+Inf", "-Inf", "inf", "1e-3", "-0", "17"] {
            assert_eq!(sample(&format!("m {v}")).unwrap().2, v);
        }
        assert_eq!(sample("m{} 1").unwrap().1, vec![]);
    }

    #[test]
    fn comments() {
        let mut l = Vec::new();
        assert_eq!(
            parse_line("# HELP m  some \\n text", Dialect::Text, &mut l),
            Ok(Line::Help {
                name: "m",
                text: "some \\n text"
            })
        );
        assert_eq!(
            parse_line("# TYPE m histogram", Dialect::Text, &mut l),
            Ok(Line::Type {
                name: "m",
                kind: MetricType::Histogram
            })
        );
        assert_eq!(
            parse_line("# just words", Dialect::Text, &mut l),
            Ok(Line::Comment)
        );
        assert_eq!(parse_line("#", Dialect::Text, &mut l), Ok(Line::Comment));
        assert_eq!(
            parse_line("# TYPE m ", Dialect::Text, &mut l),
            Ok(Line::Comment)
        );
        assert_eq!(
            parse_line("# EOF", Dialect::Text, &mut l),
            Ok(Line::Comment)
        );
        assert_eq!(
            parse_line("# EOF", Dialect::OpenMetrics, &mut l),
            Ok(Line::Eof)
        );
        assert_eq!(parse_line("   ", Dialect::Text, &mut l), Ok(Line::Blank));
        assert_eq!(
            parse_line("# TYPE m bogus", Dialect::Text, &mut l),
            Err(ErrorKind::UnknownType("bogus".into()))
        );
    }

    #[test]
    fn rejections() {
        let bad = [
            ("m{a=\"1} 1", ErrorKind::UnterminatedLabelValue),
            ("m{a=\"\\x\"} 1", ErrorKind::InvalidEscape),
            ("m{a=1} 1", ErrorKind::ExpectedQuote),
            ("m{a\"1\"} 1", ErrorKind::ExpectedEquals),
            ("m{1a=\"1\"} 1", ErrorKind::InvalidLabelName),
            ("m{a=\"1\" b=\"2\"} 1", ErrorKind::ExpectedCommaOrBrace),
            (
                "m{a=\"1\",a=\"2\"} 1",
                ErrorKind::DuplicateLabel("a".into()),
            ),
            ("m", ErrorKind::MissingValue),
            ("m{}", ErrorKind::MissingValue),
            ("m one", ErrorKind::InvalidValue("one".into())),
            ("m 1 12.5", ErrorKind::InvalidTimestamp("12.5".into())),
            ("m 1 2 3", ErrorKind::TrailingText),
            ("1m 1", ErrorKind::InvalidMetricName),
            ("m-x 1", ErrorKind::InvalidMetricName),
        ];
        for (line, want) in bad {
            assert_eq!(sample(line).unwrap_err(), want, "{line}");
        }
    }

    #[test]
    fn dialect_from_content_type() {
        let om = Some("application/openmetrics-text; version=1.0.0; charset=utf-8");
        assert_eq!(Dialect::from_content_type(om), Dialect::OpenMetrics);
        let text = Some("text/plain; version=0.0.4");
        assert_eq!(Dialect::from_content_type(text), Dialect::Text);
        assert_eq!(Dialect::from_content_type(None), Dialect::Text);
    }

    #[test]
    fn help_text_is_made_valid() {
        let mut out = Vec::new();
        write_help_text(r#"a \\ b \n c \d \" e\"#, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"a \\ b \n c \\d " e\\"#);
    }
}
