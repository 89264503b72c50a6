//! LogQL text into tokens, each with the column it starts at (for error messages that
//! point at the place, as Loki's do).
//!
//! Strings are Go-quoted (`"a\"b"`, escapes included) or raw (`` `a\b` ``); numbers,
//! durations (`5m`, `1h30m`, `250ms`) and byte sizes (`20MB`, `1KiB`) are told apart by
//! what follows the digits.

use std::fmt;

/// One token of a LogQL expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    /// Nanoseconds.
    Duration(i64),
    /// Bytes.
    Bytes(f64),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Pipe,
    /// `|=`
    PipeEq,
    /// `|~`
    PipeRe,
    /// `=`
    Eq,
    /// `==`
    EqEq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    Nre,
    Gt,
    Ge,
    Lt,
    Le,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Tok::Ident(s) => return write!(f, "{s}"),
            Tok::Str(s) => return write!(f, "{s:?}"),
            Tok::Num(n) => return write!(f, "{n}"),
            Tok::Duration(_) => "duration",
            Tok::Bytes(_) => "byte size",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Pipe => "|",
            Tok::PipeEq => "|=",
            Tok::PipeRe => "|~",
            Tok::Eq => "=",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            Tok::Re => "=~",
            Tok::Nre => "!~",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Caret => "^",
            Tok::End => "end of input",
        };
        f.write_str(s)
    }
}

/// A token and the 1-based column of its first character.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub tok: Tok,
    pub col: usize,
}

/// A lexing failure, at a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub col: usize,
    pub message: String,
}

/// Splits `text` into tokens; the last one is [`Tok::End`].
pub fn lex(text: &str) -> Result<Vec<Spanned>, LexError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let col = |i: usize| i + 1;
    while i < chars.len() {
        let c = chars[i].1;
        let start = i;
        let two = |a: char, b: char| c == a && chars.get(i + 1).map(|x| x.1) == Some(b);
        let (tok, len) = if c.is_whitespace() {
            i += 1;
            continue;
        } else if c == '#' {
            // A comment runs to the end of the line.
            while i < chars.len() && chars[i].1 != '\n' {
                i += 1;
            }
            continue;
        } else if two('|', '=') {
            (Tok::PipeEq, 2)
        } else if two('|', '~') {
            (Tok::PipeRe, 2)
        } else if two('=', '=') {
            (Tok::EqEq, 2)
        } else if two('=', '~') {
            (Tok::Re, 2)
        } else if two('!', '=') {
            (Tok::Ne, 2)
        } else if two('!', '~') {
            (Tok::Nre, 2)
        } else if two('>', '=') {
            (Tok::Ge, 2)
        } else if two('<', '=') {
            (Tok::Le, 2)
        } else if c == '"' || c == '`' {
            let (s, next) = string(&chars, i).map_err(|message| LexError {
                col: col(start),
                message,
            })?;
            out.push(Spanned {
                tok: Tok::Str(s),
                col: col(start),
            });
            i = next;
            continue;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|x| x.1.is_ascii_digit()))
        {
            let (tok, next) = number(&chars, i).map_err(|message| LexError {
                col: col(start),
                message,
            })?;
            out.push(Spanned {
                tok,
                col: col(start),
            });
            i = next;
            continue;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].1.is_ascii_alphanumeric() || chars[j].1 == '_') {
                j += 1;
            }
            let word: String = chars[i..j].iter().map(|x| x.1).collect();
            out.push(Spanned {
                tok: Tok::Ident(word),
                col: col(start),
            });
            i = j;
            continue;
        } else {
            let tok = match c {
                '{' => Tok::LBrace,
                '}' => Tok::RBrace,
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                '[' => Tok::LBracket,
                ']' => Tok::RBracket,
                ',' => Tok::Comma,
                '|' => Tok::Pipe,
                '=' => Tok::Eq,
                '>' => Tok::Gt,
                '<' => Tok::Lt,
                '+' => Tok::Plus,
                '-' => Tok::Minus,
                '*' => Tok::Star,
                '/' => Tok::Slash,
                '%' => Tok::Percent,
                '^' => Tok::Caret,
                other => {
                    return Err(LexError {
                        col: col(start),
                        message: format!("unexpected character {other:?}"),
                    })
                }
            };
            (tok, 1)
        };
        out.push(Spanned {
            tok,
            col: col(start),
        });
        i += len;
    }
    out.push(Spanned {
        tok: Tok::End,
        col: col(chars.len()),
    });
    Ok(out)
}

/// A quoted string starting at `chars[i]`; returns it and the index after it.
fn string(chars: &[(usize, char)], i: usize) -> Result<(String, usize), String> {
    let quote = chars[i].1;
    let mut out = String::new();
    let mut j = i + 1;
    while j < chars.len() {
        let c = chars[j].1;
        if c == quote {
            return Ok((out, j + 1));
        }
        if quote == '"' && c == '\\' {
            let (ch, next) = escape(chars, j + 1)?;
            out.push(ch);
            j = next;
            continue;
        }
        if quote == '"' && c == '\n' {
            return Err("newline in a string".to_owned());
        }
        out.push(c);
        j += 1;
    }
    Err("unterminated string".to_owned())
}

/// A Go escape after a backslash at `chars[j - 1]`.
fn escape(chars: &[(usize, char)], j: usize) -> Result<(char, usize), String> {
    let c = chars.get(j).map(|x| x.1).ok_or("unterminated string")?;
    let simple = match c {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        '\\' => Some('\\'),
        '"' => Some('"'),
        '\'' => Some('\''),
        _ => None,
    };
    if let Some(ch) = simple {
        return Ok((ch, j + 1));
    }
    let (digits, radix) = match c {
        'x' => (2, 16),
        'u' => (4, 16),
        'U' => (8, 16),
        '0'..='7' => (3, 8),
        _ => return Err(format!("unknown escape sequence \\{c}")),
    };
    let first = if radix == 8 { j } else { j + 1 };
    let text: String = chars
        .get(first..first + digits)
        .ok_or("unterminated escape sequence")?
        .iter()
        .map(|x| x.1)
        .collect();
    let n = u32::from_str_radix(&text, radix).map_err(|_| format!("invalid escape \\{c}{text}"))?;
    let ch = char::from_u32(n).ok_or_else(|| format!("escape \\{c}{text} is not a character"))?;
    Ok((ch, first + digits))
}

/// A number, a duration or a byte size starting at `chars[i]`.
fn number(chars: &[(usize, char)], i: usize) -> Result<(Tok, usize), String> {
    let mut j = i;
    let take_digits = |j: &mut usize| {
        while *j < chars.len() && (chars[*j].1.is_ascii_digit() || chars[*j].1 == '.') {
            *j += 1;
        }
    };
    take_digits(&mut j);
    let unit_start = j;
    while j < chars.len() && (chars[j].1.is_ascii_alphanumeric() || chars[j].1 == 'µ') {
        j += 1;
    }
    let text: String = chars[i..j].iter().map(|x| x.1).collect();
    if unit_start == j {
        let n: f64 = text
            .parse()
            .map_err(|_| format!("invalid number {text:?}"))?;
        return Ok((Tok::Num(n), j));
    }
    if let Some(ns) = parse_duration(&text) {
        return Ok((Tok::Duration(ns), j));
    }
    if let Some(b) = parse_bytes(&text) {
        return Ok((Tok::Bytes(b), j));
    }
    Err(format!(
        "{text:?} is not a number, a duration (5m, 1h30m, 250ms) or a byte size (20MB, 1KiB)"
    ))
}

/// `5m`, `1h30m`, `1.5h`, `250ms`, `2d`, `1w`, `1y` in nanoseconds; `None` if not one.
pub fn parse_duration(text: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86_400e9,
            "w" => 7.0 * 86_400e9,
            "y" => 365.0 * 86_400e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * unit_ns;
    }
    (total.is_finite() && total.abs() < 9.2e18).then_some(total.round() as i64)
}

/// `20MB`, `1KiB`, `512B` (case-insensitive) in bytes; `None` if not one.
pub fn parse_bytes(text: &str) -> Option<f64> {
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let n: f64 = text[..digits].parse().ok()?;
    let factor = match text[digits..].to_ascii_lowercase().as_str() {
        "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        lex(text).unwrap().into_iter().map(|s| s.tok).collect()
    }

    #[test]
    fn operators_strings_and_units() {
        assert_eq!(
            toks(
                r#"{a="b\"c",d=~`x\d`} |= "e" != "f" |~ "g" !~ "h" | n >= 5 | d > 1m30s | s < 2KiB"#
            ),
            vec![
                Tok::LBrace,
                Tok::Ident("a".into()),
                Tok::Eq,
                Tok::Str("b\"c".into()),
                Tok::Comma,
                Tok::Ident("d".into()),
                Tok::Re,
                Tok::Str("x\\d".into()),
                Tok::RBrace,
                Tok::PipeEq,
                Tok::Str("e".into()),
                Tok::Ne,
                Tok::Str("f".into()),
                Tok::PipeRe,
                Tok::Str("g".into()),
                Tok::Nre,
                Tok::Str("h".into()),
                Tok::Pipe,
                Tok::Ident("n".into()),
                Tok::Ge,
                Tok::Num(5.0),
                Tok::Pipe,
                Tok::Ident("d".into()),
                Tok::Gt,
                Tok::Duration(90_000_000_000),
                Tok::Pipe,
                Tok::Ident("s".into()),
                Tok::Lt,
                Tok::Bytes(2048.0),
                Tok::End,
            ]
        );
        assert_eq!(toks(r#""\u00e9\x41\101\n""#)[0], Tok::Str("éAA\n".into()));
        assert_eq!(parse_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_bytes("20MB"), Some(20e6));
    }

    #[test]
    fn errors_point_at_the_column() {
        assert_eq!(lex(r#"{a="b}"#).unwrap_err().col, 4);
        assert_eq!(lex("{a=\"b\"} $").unwrap_err().col, 9);
        assert!(lex("5qq").is_err());
        assert!(lex(r#""\q""#).is_err());
        // A comment is skipped.
        assert_eq!(toks("{a=\"b\"} # note"), toks("{a=\"b\"}"));
    }
}
