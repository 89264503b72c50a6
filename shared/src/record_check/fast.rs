//! A one-pass byte scan that accepts the common record without serde.
//!
//! Nearly every record a service writes is plain JSON: no `\u` escape, short numbers
//! without an exponent, a few levels of nesting. For such a text the rules of
//! [`super`] reduce to JSON's grammar plus two facts about the top-level object (it has
//! a member; its last `event_id` is a string or `null`), which one scan over the bytes
//! decides several times faster than decoding every value. Anything the scan is not
//! sure of — a `\u` escape (a lone surrogate?), an exponent or a long number (out of
//! range?), deep nesting (the recursion limit?), or any error at all — makes it answer
//! "unsure", and the full check decides, so the verdict (and every error message) is the
//! full check's. The scan only ever says "accepted" for a text the full check accepts;
//! `record_check`'s differential test and the fuzz target hold it to that.
//!
//! The aggregator reads a record's indexed fields in the same pass
//! ([`scan_members`]), so a plain record is read once, not checked and then parsed.

use std::borrow::Cow;

/// Nesting the scan follows; deeper texts go to the full check (serde_json's limit is
/// 128 levels).
const MAX_DEPTH: usize = 64;
/// The longest number the scan accepts: with no exponent, 24 characters cannot reach
/// `f64::MAX` (about 1.8e308), so every such number is finite.
const MAX_NUMBER_LEN: usize = 24;

/// `true` when `text` (trimmed) is certainly accepted by the full check; `false` when
/// the scan is unsure, whatever the full check would say.
pub(super) fn surely_accepted(text: &str) -> bool {
    scan_members(text, |_, _| {})
}

/// A top-level member's value, as the scan saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raw<'a> {
    /// A string: the text between its quotes, and whether it holds an escape (then
    /// only the simple ones, `\"` `\\` `\/` `\b` `\f` `\n` `\r` `\t`: see [`unescape`]).
    Str(&'a str, bool),
    Null,
    /// A number, `true` or `false`, as written.
    Literal(&'a str),
    /// An array or an object.
    Compound,
}

/// Scans `text` (trimmed) and calls `on_member` with each top-level member in order,
/// its key decoded; `true` when the full check certainly accepts the text. When it
/// returns `false` the calls made say nothing: the caller must decide another way.
pub fn scan_members<'a>(text: &'a str, mut on_member: impl FnMut(Cow<'a, str>, Raw<'a>)) -> bool {
    let mut s = Scan {
        t: text,
        b: text.as_bytes(),
        i: 0,
    };
    s.record(&mut on_member).unwrap_or(false) && s.i == s.b.len()
}

/// The text of a string that has only simple escapes (as [`Raw::Str`] gives it).
pub fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            // `"`, `\`, `/`: the character itself (the scan let no other through).
            Some(c) => c,
            None => break,
        });
    }
    out
}

struct Scan<'a> {
    t: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// The text from `start` to the scan's position (both at ASCII bytes, so at
    /// character boundaries).
    fn since(&self, start: usize) -> Option<&'a str> {
        self.t.get(start..self.i)
    }

    /// The top-level object: `Some(true)` when it has a member and its last `event_id`
    /// is a string or `null`; `None` when unsure.
    fn record(&mut self, on_member: &mut impl FnMut(Cow<'a, str>, Raw<'a>)) -> Option<bool> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            return None;
        }
        let mut id_is_text = true;
        loop {
            let (key, escaped) = self.string()?;
            let key = match escaped {
                false => Cow::Borrowed(key),
                true => Cow::Owned(unescape(key)),
            };
            self.ws();
            self.eat(b':')?;
            self.ws();
            let start = self.i;
            let first = self.peek()?;
            let raw = match first {
                b'"' => {
                    let (text, escaped) = self.string()?;
                    Raw::Str(text, escaped)
                }
                _ => {
                    self.value(1)?;
                    match first {
                        b'n' => Raw::Null,
                        b'[' | b'{' => Raw::Compound,
                        _ => Raw::Literal(self.since(start)?),
                    }
                }
            };
            if key == "event_id" {
                id_is_text = matches!(raw, Raw::Str(..) | Raw::Null);
            }
            on_member(key, raw);
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Some(id_is_text);
                }
                _ => return None,
            }
        }
    }

    /// One value at nesting `depth` (the top-level object is 1).
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => {
                let depth = self.deeper(depth)?;
                self.ws();
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.value(depth)?;
                    self.ws();
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            self.ws();
                        }
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                let depth = self.deeper(depth)?;
                self.ws();
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.value(depth)?;
                    self.ws();
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            self.ws();
                        }
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn deeper(&mut self, depth: usize) -> Option<usize> {
        self.i += 1;
        (depth < MAX_DEPTH).then_some(depth + 1)
    }

    fn word(&mut self, w: &[u8]) -> Option<()> {
        let end = self.i + w.len();
        (self.b.get(self.i..end)? == w).then(|| self.i = end)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, at most [`MAX_NUMBER_LEN`] long; an exponent
    /// makes the scan unsure.
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) || self.i - start > MAX_NUMBER_LEN {
            return None;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    /// A string starting at the quote: its text between the quotes and whether it has
    /// an escape. A `\u` escape or a control character makes the scan unsure.
    fn string(&mut self) -> Option<(&'a str, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            // Bytes of multi-byte characters are ≥ 0x80: the text is a `str`, so they
            // are valid UTF-8 and need no look.
            self.i += special(self.b.get(self.i..)?)?;
            match self.b[self.i] {
                b'"' => {
                    let text = self.since(start)?;
                    self.i += 1;
                    return Some((text, escaped));
                }
                b'\\' => match self.b.get(self.i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                        escaped = true;
                        self.i += 2;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }
}

/// The position of the first `"`, `\` or control character in `bytes`, eight bytes at
/// a time: in each 64-bit word a byte's high bit is set in `m` where it equals `"` or
/// `\` or is below 0x20 (a borrow can set it in bytes above a match, never below one,
/// so the lowest bit set is exact).
fn special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        let m = (zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if m != 0 {
            return Some(at + (m.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = words.remainder();
    rest.iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| at + p)
}

#[cfg(test)]
mod tests {
    use super::super::{check_record, check_record_full as check_full};
    use super::surely_accepted;
    use crate::testkit::SeededRng;

    /// Values that sit on either side of a rule: numbers near and past `f64`'s range,
    /// every kind of escape (lone and paired surrogates), control characters, keywords
    /// cut short.
    const ATOMS: &[&str] = &[
        "0",
        "-0",
        "01",
        "1.",
        ".5",
        "-",
        "1.5",
        "-3.25",
        "1e5",
        "1E5",
        "1e-999",
        "1e999",
        "-1e400",
        "1e308",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "18446744073709551616",
        "123456789012345678901234",
        "1234567890123456789012345",
        "-12345678901234567890123",
        "true",
        "false",
        "null",
        "nul",
        "tru",
        "\"\"",
        "\"plain\"",
        "\"caf\u{e9} \u{2713}\"",
        "\"a\\\"b\"",
        "\"\\\\\"",
        "\"\\/\\b\\f\\n\\r\\t\"",
        "\"\\x\"",
        "\"\\u00e9\"",
        "\"\\ud800\"",
        "\"\\udc00x\"",
        "\"\\ud83d\\ude00\"",
        "\"\\uD83D\\uDE00\"",
        "\"\\u12\"",
        "\"tab\there\"",
        "\"nl\nx\"",
        "\"\u{0}\"",
        "\"\u{7f}\"",
        "[]",
        "{}",
        "[1,]",
        "{\"a\":}",
        "\"unterminated",
    ];
    const KEYS: &[&str] = &[
        "\"event_id\"",
        "\"a\"",
        "\"message\"",
        "\"event\\u005fid\"",
        "\"event_id \"",
        "\"k\\n\"",
        "\"\\ud800\"",
        "\"\"",
        "a",
        "\"event_i\\d\"",
    ];
    const NOISE: &[u8] = b"{}[],:\"\\ 0e-.\tu";

    fn value(rng: &mut SeededRng, depth: u64, out: &mut String) {
        match rng.below(if depth == 0 { 1 } else { 4 }) {
            0 => out.push_str(ATOMS[rng.below(ATOMS.len() as u64) as usize]),
            1 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    value(rng, depth - 1, out);
                }
                out.push(']');
            }
            _ => object(rng, depth - 1, out),
        }
    }

    fn object(rng: &mut SeededRng, depth: u64, out: &mut String) {
        out.push('{');
        for i in 0..rng.below(5) {
            if i > 0 {
                out.push(',');
            }
            out.push_str(KEYS[rng.below(KEYS.len() as u64) as usize]);
            out.push_str([":", " : ", ":\n"][rng.below(3) as usize]);
            value(rng, depth, out);
        }
        out.push('}');
    }

    /// A record-like text: an object of tricky values, sometimes deeply nested,
    /// sometimes with a byte of noise inserted or one removed.
    fn text(rng: &mut SeededRng) -> String {
        let mut out = String::new();
        if rng.below(8) == 0 {
            out.push_str(&"[".repeat(rng.below(140) as usize));
            let n = out.len();
            let mut inner = String::new();
            object(rng, 1, &mut inner);
            let text = format!("{{\"a\":{out}{inner}{}}}", "]".repeat(n));
            return text;
        }
        object(rng, 3, &mut out);
        match rng.below(4) {
            0 if !out.is_empty() => {
                let at = rng.below(out.len() as u64) as usize;
                if out.is_char_boundary(at) {
                    out.insert(at, NOISE[rng.below(NOISE.len() as u64) as usize] as char);
                }
            }
            1 if !out.is_empty() => {
                let at = rng.below(out.len() as u64) as usize;
                if out.is_char_boundary(at) && out.is_char_boundary(at + 1) {
                    out.remove(at);
                }
            }
            _ => {}
        }
        if rng.below(10) == 0 {
            out.push_str([" ", " x", "}", "\u{a0}", "\n"][rng.below(5) as usize]);
        }
        out
    }

    #[test]
    fn the_scan_accepts_only_what_the_full_check_accepts() {
        let seed = SeededRng::seed_from_env("RECORD_CHECK_SEED");
        println!("RECORD_CHECK_SEED={seed}");
        let mut rng = SeededRng::new(seed);
        let (mut surely, mut accepted) = (0, 0);
        for _ in 0..200_000 {
            let t = text(&mut rng);
            let full = check_full(&t);
            if surely_accepted(t.trim()) {
                surely += 1;
                assert_eq!(full, Ok(()), "the scan accepted {t:?} (seed {seed})");
            }
            accepted += usize::from(full.is_ok());
            assert_eq!(check_record(&t), full, "{t:?} (seed {seed})");
        }
        // The generator reaches both sides, and the scan takes a fair share of the
        // accepted texts (the others hold an escape, an exponent or deep nesting).
        assert!(
            accepted > 10_000 && accepted < 190_000,
            "{accepted} accepted"
        );
        assert!(surely > accepted / 10, "{surely} of {accepted} by the scan");
    }

    #[test]
    fn special_bytes_are_found_eight_at_a_time_as_one_by_one() {
        let seed = SeededRng::seed_from_env("RECORD_CHECK_SEED");
        let mut rng = SeededRng::new(seed);
        let alphabet = [
            b'a',
            b'"',
            b'\\',
            0x1f,
            0x20,
            0x00,
            0x7f,
            0x80,
            0xff,
            b'!',
            0x5c ^ 1,
        ];
        for _ in 0..20_000 {
            let len = rng.below(40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.below(4) {
                    0 => alphabet[rng.below(alphabet.len() as u64) as usize],
                    _ => rng.below(256) as u8,
                })
                .collect();
            let want = bytes
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            assert_eq!(super::special(&bytes), want, "{bytes:?} (seed {seed})");
        }
    }

    #[test]
    fn the_scan_takes_ordinary_records_and_defers_the_tricky_ones() {
        for t in [
            r#"{"a":1}"#,
            r#"{"timestamp":"2024-05-01T10:00:00Z","level":"info","message":"GET /users 200 \"ok\"","n":[1,-2.5,0,{"x":null,"y":true}],"event_id":"svc:00000000000000ab:0-10"}"#,
            r#"{ "event_id" : 42 , "event_id" : "e" }"#,
            r#"{"event_id":null}"#,
            "{\"message\":\"caf\u{e9}\"}",
        ] {
            assert!(surely_accepted(t), "{t}");
        }
        for t in [
            "{}",
            r#"{"event_id":42}"#,
            r#"{"event_id":"e","event_id":[1]}"#,
            r#"{"a":1e5}"#,
            r#"{"a":"\u00e9"}"#,
            r#"{"a":1234567890123456789012345}"#,
            r#"{"a":1} x"#,
            r#"{"a":01}"#,
            "{\"a\":\"\t\"}",
        ] {
            assert!(!surely_accepted(t), "{t}");
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70));
        assert!(!surely_accepted(&deep));
        assert_eq!(check_full(&deep), Ok(()));
    }
}
