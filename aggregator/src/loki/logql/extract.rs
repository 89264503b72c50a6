//! The `json` and `logfmt` parsers: a line into label pairs, named as Loki names them
//! (nested keys joined with `_`, every character outside `[a-zA-Z0-9_]` made `_`, a
//! leading digit prefixed with `_`).

use serde_json::Value;

/// Every scalar field of a JSON object line (nested objects flattened; arrays and nulls
/// skipped), or why the line is not a JSON object.
pub fn json(line: &str) -> Result<Vec<(String, String)>, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let Value::Object(map) = value else {
        return Err("the line is not a JSON object".to_owned());
    };
    let mut out = Vec::new();
    flatten(&mut out, "", map);
    Ok(out)
}

fn flatten(out: &mut Vec<(String, String)>, prefix: &str, map: serde_json::Map<String, Value>) {
    for (k, v) in map {
        let name = if prefix.is_empty() {
            sanitize(&k)
        } else {
            format!("{prefix}_{}", sanitize_part(&k))
        };
        if name.is_empty() {
            continue;
        }
        match v {
            Value::Object(inner) => flatten(out, &name, inner),
            Value::String(s) => out.push((name, s)),
            Value::Number(n) => out.push((name, n.to_string())),
            Value::Bool(b) => out.push((name, b.to_string())),
            Value::Null | Value::Array(_) => {}
        }
    }
}

/// A key as a label name.
pub fn sanitize(key: &str) -> String {
    let s = sanitize_part(key);
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{s}")
    } else {
        s
    }
}

fn sanitize_part(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every `key=value` pair of a logfmt line; bare keys and empty values are skipped.
pub fn logfmt(line: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] <= b' ' {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] > b' ' && b[i] != b'=' && b[i] != b'"' {
            i += 1;
        }
        let key = &line[start..i];
        if i < b.len() && b[i] == b'"' {
            return Err(format!("unexpected '\"' at position {i}"));
        }
        if i >= b.len() || b[i] != b'=' {
            // A bare key, or the end.
            continue;
        }
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            let (v, next) = quoted(line, i)?;
            i = next;
            v
        } else {
            let vs = i;
            while i < b.len() && b[i] > b' ' {
                if b[i] == b'"' {
                    return Err(format!("unexpected '\"' at position {i}"));
                }
                i += 1;
            }
            line[vs..i].to_owned()
        };
        if key.is_empty() {
            return Err(format!("a value without a key at position {start}"));
        }
        let name = sanitize(key);
        if !value.is_empty() && !name.is_empty() {
            out.push((name, value));
        }
    }
    Ok(out)
}

/// A quoted logfmt value starting at `line[i] == '"'`; returns it and the index after.
fn quoted(line: &str, i: usize) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = line[i + 1..].char_indices();
    while let Some((j, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1 + j + 1)),
            '\\' => match chars.next().map(|x| x.1) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated quoted value".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields() {
        let mut f =
            json(r#"{"a.b":1,"2x":"y","n":{"m-1":{"k":true}},"arr":[1],"z":null}"#).unwrap();
        f.sort();
        assert_eq!(
            f,
            vec![
                ("_2x".to_owned(), "y".to_owned()),
                ("a_b".to_owned(), "1".to_owned()),
                ("n_m_1_k".to_owned(), "true".to_owned())
            ]
        );
        assert!(json("[1]").is_err());
        assert!(json("nope").is_err());
    }

    #[test]
    fn logfmt_pairs() {
        assert_eq!(
            logfmt(r#"ts=1 level=info msg="a \"b\" c" bare empty= x.y=z"#).unwrap(),
            vec![
                ("ts".to_owned(), "1".to_owned()),
                ("level".to_owned(), "info".to_owned()),
                ("msg".to_owned(), "a \"b\" c".to_owned()),
                ("x_y".to_owned(), "z".to_owned())
            ]
        );
        assert!(logfmt(r#"a="b"#).is_err());
        assert!(logfmt(r#"a=b"c"#).is_err());
        assert!(logfmt("=b").is_err());
    }
}
