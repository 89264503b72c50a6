//! Stream label sets: parsed from a push, checked as Loki checks them, kept sorted.

use super::logql::lexer::{lex, Tok};

/// A stream's labels, sorted by name, names unique.
pub type LabelSet = Vec<(String, String)>;

/// Loki's default per-stream limits (`max_label_names_per_series`,
/// `max_label_name_length`, `max_label_value_length`).
pub const MAX_LABELS: usize = 15;
pub const MAX_NAME_BYTES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 2048;

/// Why a push's labels are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("error parsing labels {0:?}: {1}")]
    Syntax(String, String),
    #[error("error at least one label pair is required per stream")]
    Empty,
    #[error(
        "invalid label name {0:?}: a name is letters, digits and _, not starting with a digit"
    )]
    Name(String),
    #[error("duplicate label name {0:?}")]
    Duplicate(String),
    #[error("stream has {0} labels, more than the limit of {MAX_LABELS}")]
    TooMany(usize),
    #[error("label name {0:?}... is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong(String),
    #[error("the value of label {0:?} is longer than {MAX_VALUE_BYTES} bytes")]
    ValueTooLong(String),
}

/// Whether `name` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks and sorts pairs into a label set; an empty value means "no such label", as in
/// Prometheus and Loki, so it is dropped.
pub fn normalize(pairs: Vec<(String, String)>) -> Result<LabelSet, LabelError> {
    let mut set: LabelSet = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        if name.len() > MAX_NAME_BYTES {
            return Err(LabelError::NameTooLong(name.chars().take(40).collect()));
        }
        if !valid_name(&name) {
            return Err(LabelError::Name(name));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(LabelError::ValueTooLong(name));
        }
        if !value.is_empty() {
            set.push((name, value));
        }
    }
    set.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = set.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(LabelError::Duplicate(w[0].0.clone()));
    }
    if set.is_empty() {
        return Err(LabelError::Empty);
    }
    if set.len() > MAX_LABELS {
        return Err(LabelError::TooMany(set.len()));
    }
    Ok(set)
}

/// Parses the label string of a protobuf push, `{a="b", c="d"}` (Prometheus quoting).
pub fn parse(text: &str) -> Result<LabelSet, LabelError> {
    let syntax = |m: &str| LabelError::Syntax(text.chars().take(200).collect(), m.to_owned());
    let toks = lex(text).map_err(|e| syntax(&e.message))?;
    let mut it = toks.into_iter().map(|s| s.tok);
    if it.next() != Some(Tok::LBrace) {
        return Err(syntax("expected {"));
    }
    let mut pairs = Vec::new();
    loop {
        match it.next() {
            Some(Tok::RBrace) => break,
            Some(Tok::Ident(name)) => {
                if it.next() != Some(Tok::Eq) {
                    return Err(syntax("expected = after a label name"));
                }
                match it.next() {
                    Some(Tok::Str(value)) => pairs.push((name, value)),
                    _ => return Err(syntax("expected a quoted label value")),
                }
                match it.next() {
                    Some(Tok::Comma) => {}
                    Some(Tok::RBrace) => break,
                    _ => return Err(syntax("expected , or }")),
                }
            }
            _ => return Err(syntax("expected a label name")),
        }
    }
    if it.next() != Some(Tok::End) {
        return Err(syntax("unexpected text after }"));
    }
    normalize(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        assert_eq!(
            parse(r#"{job="api", env="a \"b\"\n"}"#).unwrap(),
            vec![
                ("env".to_owned(), "a \"b\"\n".to_owned()),
                ("job".to_owned(), "api".to_owned())
            ]
        );
        assert_eq!(parse(r#"{a="1",}"#).unwrap().len(), 1);
        assert_eq!(parse("{}"), Err(LabelError::Empty));
        assert_eq!(parse(r#"{a=""}"#), Err(LabelError::Empty));
        assert!(matches!(
            parse(r#"{a="1", a="2"}"#),
            Err(LabelError::Duplicate(_))
        ));
        assert!(matches!(parse(r#"{a="1"} x"#), Err(LabelError::Syntax(..))));
        assert!(matches!(parse(r#"{a=~"1"}"#), Err(LabelError::Syntax(..))));
        assert!(matches!(parse("job"), Err(LabelError::Syntax(..))));
        let many: Vec<String> = (0..16).map(|i| format!("l{i}=\"v\"")).collect();
        assert_eq!(
            parse(&format!("{{{}}}", many.join(","))),
            Err(LabelError::TooMany(16))
        );
        assert!(matches!(
            normalize(vec![("1x".into(), "v".into())]),
            Err(LabelError::Name(_))
        ));
        assert!(valid_name("_a1") && !valid_name("a-b") && !valid_name(""));
    }
}
