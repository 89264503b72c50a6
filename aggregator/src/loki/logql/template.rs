//! The `line_format` templates of the subset: text with `{{.label}}`, `{{__line__}}` and
//! `{{__timestamp__}}` actions (Go's `{{-` and `-}}` trim markers included). Anything
//! else in an action (a pipe, a function) is refused by name.

use super::ast::TemplatePart;
use super::parser::ParseError;

/// Parses a template into its parts.
pub fn parse(text: &str) -> Result<Vec<TemplatePart>, ParseError> {
    let mut parts = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut literal = &rest[..open];
        if trim_next {
            literal = literal.trim_start();
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| ParseError::Invalid(format!("line_format {text:?}: unclosed {{{{")))?;
        let mut action = &after[..close];
        if let Some(a) = action.strip_prefix('-') {
            literal = literal.trim_end();
            action = a;
        }
        trim_next = false;
        if let Some(a) = action.strip_suffix('-') {
            trim_next = true;
            action = a;
        }
        if !literal.is_empty() {
            parts.push(TemplatePart::Text(literal.to_owned()));
        }
        parts.push(part(action.trim(), text)?);
        rest = &after[close + 2..];
    }
    let literal = if trim_next { rest.trim_start() } else { rest };
    if !literal.is_empty() {
        parts.push(TemplatePart::Text(literal.to_owned()));
    }
    Ok(parts)
}

fn part(action: &str, text: &str) -> Result<TemplatePart, ParseError> {
    match action {
        "__line__" => return Ok(TemplatePart::Line),
        "__timestamp__" => return Ok(TemplatePart::Timestamp),
        _ => {}
    }
    if let Some(name) = action.strip_prefix('.') {
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if valid {
            return Ok(TemplatePart::Label(name.to_owned()));
        }
    }
    let first = action
        .split(|c: char| c.is_whitespace() || c == '|' || c == '(')
        .find(|w| !w.is_empty() && !w.starts_with('.'))
        .unwrap_or(action);
    Err(ParseError::Unsupported(format!(
        "the template action {{{{{action}}}}} of line_format {text:?} ({first:?}; only {{{{.label}}}}, {{{{__line__}}}} and {{{{__timestamp__}}}} are evaluated)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use TemplatePart::*;

    #[test]
    fn actions_and_text() {
        assert_eq!(
            parse("{{.status}} took {{ .duration_ms }}ms: {{__line__}}").unwrap(),
            vec![
                Label("status".into()),
                Text(" took ".into()),
                Label("duration_ms".into()),
                Text("ms: ".into()),
                Line
            ]
        );
        assert_eq!(
            parse("a  {{- .x -}}  b").unwrap(),
            vec![Text("a".into()), Label("x".into()), Text("b".into())]
        );
        assert_eq!(parse("plain").unwrap(), vec![Text("plain".into())]);
        assert!(parse("{{.a").is_err());
        let err = parse("{{ .a | ToUpper }}").unwrap_err().to_string();
        assert!(err.contains("ToUpper"), "{err}");
        assert!(parse("{{ printf \"%s\" .a }}")
            .unwrap_err()
            .to_string()
            .contains("printf"));
    }
}
