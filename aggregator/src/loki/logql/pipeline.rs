//! One log entry through a LogQL pipeline: line filters, the `json` and `logfmt`
//! parsers, label filters, `line_format`, `drop` and `keep`, with Loki's semantics:
//!
//! - a parser that fails keeps the entry and adds `__error__` (`JSONParserErr`,
//!   `LogfmtParserErr`) and `__error_details__`;
//! - an extracted label that is already a stream label is named `<name>_extracted`;
//! - a numeric label filter drops an entry without the label, and keeps an entry whose
//!   value is not a number, marked `__error__="LabelFilterErr"`; once an entry carries an
//!   error, only string filters can drop it.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat};

use super::ast::*;
use super::extract;
use super::lexer::{parse_bytes, parse_duration};
use crate::loki::labels::LabelSet;

pub const ERROR: &str = "__error__";
pub const ERROR_DETAILS: &str = "__error_details__";

/// The labels of one entry while it goes through the pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    pairs: Vec<(String, String)>,
    /// The first `original` pairs are the stream's labels and structured metadata.
    original: usize,
}

impl Labels {
    /// Labels that came with the entry (stream labels, then structured metadata; a
    /// metadata name that is also a stream label is dropped).
    pub fn new(
        stream: impl IntoIterator<Item = (String, String)>,
        metadata: impl IntoIterator<Item = (String, String)>,
    ) -> Labels {
        let mut pairs: Vec<(String, String)> = stream.into_iter().collect();
        for (k, v) in metadata {
            if !pairs.iter().any(|(n, _)| *n == k) {
                pairs.push((k, v));
            }
        }
        let original = pairs.len();
        Labels { pairs, original }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has_error(&self) -> bool {
        self.get(ERROR).is_some()
    }

    pub fn set(&mut self, name: &str, value: String) {
        match self.pairs.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.pairs.push((name.to_owned(), value)),
        }
    }

    /// A label found by a parser: renamed `<name>_extracted` when the stream has it.
    pub fn set_extracted(&mut self, name: String, value: String) {
        if self.pairs[..self.original].iter().any(|(k, _)| *k == name) {
            let renamed = format!("{name}_extracted");
            self.set(&renamed, value);
        } else {
            self.set(&name, value);
        }
    }

    fn error(&mut self, kind: &str, details: String) {
        if !self.has_error() {
            self.set(ERROR, kind.to_owned());
            self.set(ERROR_DETAILS, details);
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some(i) = self.pairs.iter().position(|(k, _)| k == name) {
            self.pairs.remove(i);
            if i < self.original {
                self.original -= 1;
            }
        }
    }

    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let mut i = 0;
        while i < self.pairs.len() {
            if keep(&self.pairs[i].0) {
                i += 1;
            } else {
                self.remove(&self.pairs[i].0.clone());
            }
        }
    }

    /// The final label set, sorted; empty values are no labels (as in Loki), except an
    /// error's details.
    pub fn into_set(self) -> LabelSet {
        let mut set: LabelSet = self
            .pairs
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        set.sort_by(|a, b| a.0.cmp(&b.0));
        set
    }
}

/// Whether the stages can change the labels (parsers, drop, keep), so that an entry's
/// output labels are not simply its stream's.
pub fn changes_labels(stages: &[Stage]) -> bool {
    stages.iter().any(|s| {
        matches!(
            s,
            Stage::Json | Stage::Logfmt | Stage::Drop(_) | Stage::Keep(_) | Stage::LabelFilter(_)
        )
    })
}

/// Runs `stages` on one entry; `None` when it is filtered out.
pub fn run<'a>(
    stages: &[Stage],
    ts_ns: i64,
    line: Cow<'a, str>,
    labels: &mut Labels,
) -> Option<Cow<'a, str>> {
    let mut line = line;
    for stage in stages {
        match stage {
            Stage::LineFilter { op, value, re } => {
                let keep = match op {
                    LineOp::Contains => line.contains(value.as_str()),
                    LineOp::NotContains => !line.contains(value.as_str()),
                    LineOp::Matches => re.as_ref().is_some_and(|r| r.is_match(&line)),
                    LineOp::NotMatches => !re.as_ref().is_some_and(|r| r.is_match(&line)),
                };
                if !keep {
                    return None;
                }
            }
            Stage::Json => match extract::json(&line) {
                Ok(pairs) => pairs
                    .into_iter()
                    .for_each(|(k, v)| labels.set_extracted(k, v)),
                Err(e) => labels.error("JSONParserErr", e),
            },
            Stage::Logfmt => match extract::logfmt(&line) {
                Ok(pairs) => pairs
                    .into_iter()
                    .for_each(|(k, v)| labels.set_extracted(k, v)),
                Err(e) => labels.error("LogfmtParserErr", e),
            },
            Stage::LabelFilter(expr) => {
                if !filter(expr, labels) {
                    return None;
                }
            }
            Stage::LineFormat(parts) => {
                let mut out = String::with_capacity(line.len());
                for p in parts {
                    match p {
                        TemplatePart::Text(t) => out.push_str(t),
                        TemplatePart::Label(name) => out.push_str(labels.get(name).unwrap_or("")),
                        TemplatePart::Line => out.push_str(&line),
                        TemplatePart::Timestamp => out.push_str(
                            &DateTime::from_timestamp_nanos(ts_ns)
                                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
                        ),
                    }
                }
                line = Cow::Owned(out);
            }
            Stage::Drop(items) => {
                for item in items {
                    let matches = match (&item.only, labels.get(&item.name)) {
                        (None, Some(_)) => true,
                        (Some(m), Some(v)) => m.matches(v),
                        (_, None) => false,
                    };
                    if matches {
                        labels.remove(&item.name);
                    }
                }
            }
            Stage::Keep(names) => labels.retain(|k| names.iter().any(|n| n == k)),
        }
    }
    Some(line)
}

/// Evaluates a label filter expression; it may mark the entry with an error.
fn filter(expr: &LabelExpr, labels: &mut Labels) -> bool {
    match expr {
        LabelExpr::And(a, b) => filter(a, labels) && filter(b, labels),
        LabelExpr::Or(a, b) => filter(a, labels) || filter(b, labels),
        LabelExpr::Str(m) => m.matches(labels.get(&m.name).unwrap_or("")),
        LabelExpr::Num {
            name,
            op,
            value,
            kind,
        } => {
            if labels.has_error() {
                return true;
            }
            let Some(text) = labels.get(name) else {
                return false;
            };
            let parsed = match kind {
                NumKind::Number => text.trim().parse::<f64>().ok(),
                NumKind::Duration => parse_duration(text.trim()).map(|ns| ns as f64 / 1e9),
                NumKind::Bytes => {
                    parse_bytes(text.trim()).or_else(|| text.trim().parse::<f64>().ok())
                }
            };
            match parsed {
                Some(x) => op.holds(x, *value),
                None => {
                    let details =
                        format!("cannot read {name}={text:?} as a {kind:?}").to_lowercase();
                    labels.error("LabelFilterErr", details);
                    true
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loki::logql::parser::parse;

    fn stages(q: &str) -> Vec<Stage> {
        match parse(q).unwrap() {
            Expr::Log(l) => l.stages,
            _ => panic!(),
        }
    }

    fn labels() -> Labels {
        Labels::new(
            [
                ("app".to_owned(), "shop".to_owned()),
                ("level".to_owned(), "info".to_owned()),
            ],
            [("trace_id".to_owned(), "t1".to_owned())],
        )
    }

    fn through(q: &str, line: &str) -> Option<(String, LabelSet)> {
        let mut l = labels();
        run(&stages(q), 1_000_000_000, Cow::Borrowed(line), &mut l)
            .map(|line| (line.into_owned(), l.into_set()))
    }

    fn get<'a>(set: &'a LabelSet, name: &str) -> Option<&'a str> {
        set.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn line_filters_chain() {
        let q = r#"{app="shop"} |= "GET" != "health" |~ "5[0-9]{2}" !~ "(?i)ignored""#;
        assert!(through(q, "GET /cart 500").is_some());
        assert!(through(q, "GET /health 500").is_none());
        assert!(through(q, "GET /cart 200").is_none());
        assert!(through(q, "GET /cart 503 IGNORED").is_none());
    }

    #[test]
    fn parsers_and_label_filters() {
        let line = r#"{"level":"error","status":503,"duration_ms":12.5,"user":{"id":7},"tags":["a"],"ok":false,"none":null}"#;
        let (_, set) = through(
            r#"{app="shop"} | json | status >= 500 and user_id = "7""#,
            line,
        )
        .unwrap();
        assert_eq!(get(&set, "level_extracted"), Some("error"));
        assert_eq!(get(&set, "level"), Some("info"));
        assert_eq!(get(&set, "duration_ms"), Some("12.5"));
        assert_eq!(get(&set, "ok"), Some("false"));
        assert_eq!(get(&set, "tags"), None);
        assert_eq!(get(&set, "trace_id"), Some("t1"));
        assert!(through(r#"{app="shop"} | json | status < 500"#, line).is_none());
        assert!(through(r#"{app="shop"} | json | missing > 1"#, line).is_none());
        assert!(through(
            r#"{app="shop"} | json | status = 404 or duration_ms > 10"#,
            line
        )
        .is_some());
        // Not JSON: kept, with the error, unless filtered on it.
        let (_, set) = through(r#"{app="shop"} | json"#, "plain").unwrap();
        assert_eq!(get(&set, "__error__"), Some("JSONParserErr"));
        assert!(through(r#"{app="shop"} | json | __error__ = """#, "plain").is_none());
        assert!(through(r#"{app="shop"} | json | __error__ != "" | x > 1"#, "plain").is_some());
        let (_, set) = through(
            r#"{app="shop"} | json | drop __error__, __error_details__"#,
            "plain",
        )
        .unwrap();
        assert_eq!(get(&set, "__error__"), None);

        let lf = r#"level=warn msg="took \"long\"" duration=1.5s size=3KB app=x"#;
        let (_, set) = through(
            r#"{app="shop"} | logfmt | duration > 1s and size >= 2KB"#,
            lf,
        )
        .unwrap();
        assert_eq!(get(&set, "msg"), Some("took \"long\""));
        assert_eq!(get(&set, "app_extracted"), Some("x"));
        let (_, set) = through(r#"{app="shop"} | logfmt | msg > 3"#, lf).unwrap();
        assert_eq!(get(&set, "__error__"), Some("LabelFilterErr"));
        let (_, set) = through(r#"{app="shop"} | logfmt"#, r#"a="unterminated"#).unwrap();
        assert_eq!(get(&set, "__error__"), Some("LogfmtParserErr"));
    }

    #[test]
    fn formatting_drop_and_keep() {
        let line = r#"{"status":200,"path":"/cart"}"#;
        let (out, _) = through(r#"{app="shop"} | json | line_format "{{.status}} {{.path}} {{.nope}}|{{__timestamp__}}""#, line).unwrap();
        assert_eq!(out, "200 /cart |1970-01-01T00:00:01Z");
        let (_, set) = through(r#"{app="shop"} | json | keep app, status"#, line).unwrap();
        assert_eq!(
            set,
            vec![
                ("app".into(), "shop".into()),
                ("status".into(), "200".into())
            ]
        );
        let (_, set) = through(r#"{app="shop"} | drop level="debug", trace_id"#, line).unwrap();
        assert_eq!(get(&set, "level"), Some("info"));
        assert_eq!(get(&set, "trace_id"), None);
        // A filter after line_format sees the new line.
        assert!(through(
            r#"{app="shop"} | json | line_format "{{.path}}" |= "cart" != "{""#,
            line
        )
        .is_some());
    }
}
