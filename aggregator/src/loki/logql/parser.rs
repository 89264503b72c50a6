//! LogQL tokens into an [`Expr`]: a recursive-descent parser for the subset this
//! aggregator evaluates.
//!
//! A query that is valid LogQL but outside the subset is refused with
//! [`ParseError::Unsupported`], naming the part (`the "pattern" parser`, `the function
//! "quantile_over_time"`), so the user knows it is not a typo.

use regex::Regex;

use super::ast::*;
use super::lexer::{lex, Spanned, Tok};
use super::template;

/// Why a query cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not LogQL: Loki's own wording, `parse error at line 1, col N: ...`.
    #[error("parse error at line 1, col {col}: {message}")]
    Syntax { col: usize, message: String },
    /// LogQL, but outside the documented subset.
    #[error("unsupported LogQL: {0} is outside this aggregator's LogQL subset (see docs/loki.md)")]
    Unsupported(String),
    /// Valid, but refused as Loki refuses it (a selector that matches everything).
    #[error("parse error : {0}")]
    Invalid(String),
}

/// Label matchers that can match the empty value do not select anything by themselves.
pub const EMPTY_SELECTOR: &str = "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";

const RANGE_FUNCS: [(&str, RangeFunc); 4] = [
    ("count_over_time", RangeFunc::CountOverTime),
    ("rate", RangeFunc::Rate),
    ("bytes_over_time", RangeFunc::BytesOverTime),
    ("bytes_rate", RangeFunc::BytesRate),
];
const VECTOR_OPS: [(&str, VectorOp); 7] = [
    ("sum", VectorOp::Sum),
    ("count", VectorOp::Count),
    ("avg", VectorOp::Avg),
    ("min", VectorOp::Min),
    ("max", VectorOp::Max),
    ("topk", VectorOp::Topk),
    ("bottomk", VectorOp::Bottomk),
];
/// LogQL functions that exist but are not evaluated here.
const OTHER_FUNCS: [&str; 22] = [
    "avg_over_time",
    "sum_over_time",
    "min_over_time",
    "max_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "quantile_over_time",
    "first_over_time",
    "last_over_time",
    "absent_over_time",
    "rate_counter",
    "stddev",
    "stdvar",
    "sort",
    "sort_desc",
    "approx_topk",
    "label_replace",
    "absent",
    "count_values",
    "quantile",
    "group",
    "limitk",
];
/// Pipeline stages that exist but are not evaluated here.
const OTHER_STAGES: [&str; 8] = [
    "regexp",
    "pattern",
    "unpack",
    "label_format",
    "unwrap",
    "decolorize",
    "distinct",
    "ip",
];

/// Parses a whole query.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let toks = lex(text).map_err(|e| ParseError::Syntax {
        col: e.col,
        message: e.message,
    })?;
    let mut p = Parser { toks, pos: 0 };
    let node = p.expr(0)?;
    if p.peek() != &Tok::End {
        return Err(p.unexpected());
    }
    Ok(match node {
        Node::Log(l) => Expr::Log(l),
        Node::Metric(m) => Expr::Metric(m),
    })
}

/// Parses a stream selector alone (`{a="b"}`), as `/series` and `/labels` take.
pub fn parse_selector(text: &str) -> Result<Vec<Matcher>, ParseError> {
    match parse(text)? {
        Expr::Log(l) if l.stages.is_empty() => Ok(l.matchers),
        _ => Err(ParseError::Invalid(format!(
            "{text:?} is not a stream selector such as {{app=\"x\"}}"
        ))),
    }
}

enum Node {
    Log(LogExpr),
    Metric(MetricExpr),
}

struct Parser {
    toks: Vec<Spanned>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)].tok
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].tok.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn col(&self) -> usize {
        self.toks[self.pos].col
    }

    fn unexpected(&self) -> ParseError {
        let what = match self.peek() {
            Tok::End => "unexpected end of input".to_owned(),
            Tok::Ident(s) => format!("unexpected IDENTIFIER {s}"),
            Tok::Str(s) => format!("unexpected STRING {s:?}"),
            Tok::Num(n) => format!("unexpected NUMBER {n}"),
            t => format!("unexpected {t}"),
        };
        self.syntax(what)
    }

    fn syntax(&self, what: impl Into<String>) -> ParseError {
        ParseError::Syntax {
            col: self.col(),
            message: format!("syntax error: {}", what.into()),
        }
    }

    fn expect(&mut self, tok: Tok) -> Result<(), ParseError> {
        if *self.peek() == tok {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn is_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w == word)
    }

    /// Binary arithmetic by precedence climbing; `^` is right-associative.
    fn expr(&mut self, min_prec: u8) -> Result<Node, ParseError> {
        let mut lhs = self.unary()?;
        loop {
            let (op, prec) = match self.peek() {
                Tok::Plus => (BinOp::Add, 1),
                Tok::Minus => (BinOp::Sub, 1),
                Tok::Star => (BinOp::Mul, 2),
                Tok::Slash => (BinOp::Div, 2),
                Tok::Percent => (BinOp::Mod, 2),
                Tok::Caret => (BinOp::Pow, 3),
                Tok::EqEq | Tok::Ne | Tok::Gt | Tok::Ge | Tok::Lt | Tok::Le => {
                    return Err(ParseError::Unsupported(format!(
                        "the comparison operator {}",
                        self.peek()
                    )))
                }
                Tok::Ident(w) if ["and", "or", "unless"].contains(&w.as_str()) => {
                    return Err(ParseError::Unsupported(format!("the set operator {w:?}")))
                }
                _ => break,
            };
            if prec < min_prec {
                break;
            }
            self.next();
            if let Tok::Ident(w) = self.peek() {
                if ["on", "ignoring", "bool", "group_left", "group_right"].contains(&w.as_str()) {
                    return Err(ParseError::Unsupported(format!(
                        "vector matching with {w:?}"
                    )));
                }
            }
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = Node::Metric(MetricExpr::Binary {
                op,
                lhs: Box::new(self.metric(lhs)?),
                rhs: Box::new(self.metric(rhs)?),
            });
        }
        Ok(lhs)
    }

    fn metric(&self, node: Node) -> Result<MetricExpr, ParseError> {
        match node {
            Node::Metric(m) => Ok(m),
            Node::Log(_) => Err(ParseError::Invalid(
                "a log query cannot be used in arithmetic; wrap it in count_over_time(...[5m]) or rate(...)".to_owned(),
            )),
        }
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        match self.peek() {
            Tok::Minus => {
                self.next();
                let inner = self.unary()?;
                Ok(Node::Metric(match self.metric(inner)? {
                    MetricExpr::Scalar(n) => MetricExpr::Scalar(-n),
                    m => MetricExpr::Binary {
                        op: BinOp::Mul,
                        lhs: Box::new(MetricExpr::Scalar(-1.0)),
                        rhs: Box::new(m),
                    },
                }))
            }
            Tok::Plus => {
                self.next();
                self.unary()
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        match self.peek().clone() {
            Tok::LBrace => Ok(Node::Log(self.log_expr()?)),
            Tok::Num(n) => {
                self.next();
                Ok(Node::Metric(MetricExpr::Scalar(n)))
            }
            Tok::LParen => {
                self.next();
                let inner = self.expr(0)?;
                self.expect(Tok::RParen)?;
                Ok(inner)
            }
            Tok::Ident(word) => {
                if let Some((_, func)) = RANGE_FUNCS.iter().find(|(n, _)| *n == word) {
                    self.next();
                    return self.range_agg(*func).map(Node::Metric);
                }
                if let Some((_, op)) = VECTOR_OPS.iter().find(|(n, _)| *n == word) {
                    self.next();
                    return self.vector_agg(*op).map(Node::Metric);
                }
                if word == "vector" {
                    self.next();
                    self.expect(Tok::LParen)?;
                    let n = self.number()?;
                    self.expect(Tok::RParen)?;
                    return Ok(Node::Metric(MetricExpr::VectorLit(n)));
                }
                if OTHER_FUNCS.contains(&word.as_str()) {
                    return Err(ParseError::Unsupported(format!("the function {word:?}")));
                }
                Err(self.unexpected())
            }
            _ => Err(self.unexpected()),
        }
    }

    fn number(&mut self) -> Result<f64, ParseError> {
        match self.peek().clone() {
            Tok::Num(n) => {
                self.next();
                Ok(n)
            }
            Tok::Minus => {
                self.next();
                Ok(-self.number()?)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn duration(&mut self) -> Result<i64, ParseError> {
        match self.peek().clone() {
            Tok::Duration(ns) => {
                self.next();
                Ok(ns)
            }
            _ => Err(self.unexpected()),
        }
    }

    /// `(<log expr> [range] [offset d])`, also `((<log expr>)[range])`.
    fn range_agg(&mut self, func: RangeFunc) -> Result<MetricExpr, ParseError> {
        self.expect(Tok::LParen)?;
        let log = if *self.peek() == Tok::LParen {
            self.next();
            let l = self.log_expr()?;
            self.expect(Tok::RParen)?;
            l
        } else {
            self.log_expr()?
        };
        self.expect(Tok::LBracket)?;
        let range = self.duration()?;
        if range <= 0 {
            return Err(ParseError::Invalid("the range must be positive".to_owned()));
        }
        self.expect(Tok::RBracket)?;
        let mut offset = 0;
        if self.is_ident("offset") {
            self.next();
            offset = self.duration()?;
        }
        self.expect(Tok::RParen)?;
        if self.is_ident("by") || self.is_ident("without") {
            return Err(ParseError::Unsupported(
                "grouping a range aggregation itself (put the grouping on sum, count...)"
                    .to_owned(),
            ));
        }
        Ok(MetricExpr::Range(RangeAgg {
            func,
            log,
            range,
            offset,
        }))
    }

    fn vector_agg(&mut self, op: VectorOp) -> Result<MetricExpr, ParseError> {
        let mut grouping = self.grouping()?;
        self.expect(Tok::LParen)?;
        let param = if matches!(op, VectorOp::Topk | VectorOp::Bottomk) {
            let k = self.number()?;
            if !(k >= 1.0 && k.fract() == 0.0 && k <= 1e6) {
                return Err(ParseError::Invalid(format!(
                    "the parameter of topk and bottomk must be a whole number from 1, not {k}"
                )));
            }
            self.expect(Tok::Comma)?;
            Some(k as usize)
        } else {
            None
        };
        let inner = self.expr(0)?;
        let inner = self.metric(inner)?;
        self.expect(Tok::RParen)?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        Ok(MetricExpr::Vector {
            op,
            param,
            grouping,
            inner: Box::new(inner),
        })
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let without = match self.peek() {
            Tok::Ident(w) if w == "by" => false,
            Tok::Ident(w) if w == "without" => true,
            _ => return Ok(None),
        };
        self.next();
        self.expect(Tok::LParen)?;
        let mut labels = Vec::new();
        while let Tok::Ident(name) = self.peek().clone() {
            self.next();
            labels.push(name);
            if *self.peek() == Tok::Comma {
                self.next();
            } else {
                break;
            }
        }
        self.expect(Tok::RParen)?;
        Ok(Some(Grouping { without, labels }))
    }

    fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        let matchers = self.selector()?;
        let mut stages = Vec::new();
        loop {
            let op = match self.peek() {
                Tok::PipeEq => Some(LineOp::Contains),
                Tok::Ne => Some(LineOp::NotContains),
                Tok::PipeRe => Some(LineOp::Matches),
                Tok::Nre => Some(LineOp::NotMatches),
                _ => None,
            };
            if let Some(op) = op {
                self.next();
                stages.push(self.line_filter(op)?);
                continue;
            }
            if *self.peek() != Tok::Pipe {
                break;
            }
            self.next();
            stages.push(self.stage()?);
        }
        Ok(LogExpr { matchers, stages })
    }

    fn line_filter(&mut self, op: LineOp) -> Result<Stage, ParseError> {
        let value = match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                s
            }
            Tok::Ident(w) if w == "ip" => {
                return Err(ParseError::Unsupported("the ip() line filter".to_owned()))
            }
            _ => return Err(self.unexpected()),
        };
        if self.is_ident("or") {
            return Err(ParseError::Unsupported(
                "\"or\" between line filters".to_owned(),
            ));
        }
        let re = match op {
            LineOp::Matches | LineOp::NotMatches => Some(regex(&value, false)?),
            _ => None,
        };
        Ok(Stage::LineFilter { op, value, re })
    }

    fn stage(&mut self) -> Result<Stage, ParseError> {
        let word = match self.peek().clone() {
            Tok::Ident(w) => w,
            Tok::LParen => return Ok(Stage::LabelFilter(self.label_or()?)),
            _ => return Err(self.unexpected()),
        };
        let is_filter = matches!(
            self.peek_at(1),
            Tok::Eq
                | Tok::EqEq
                | Tok::Ne
                | Tok::Re
                | Tok::Nre
                | Tok::Gt
                | Tok::Ge
                | Tok::Lt
                | Tok::Le
        );
        if is_filter {
            return Ok(Stage::LabelFilter(self.label_or()?));
        }
        match word.as_str() {
            "json" => {
                self.next();
                if matches!(self.peek(), Tok::Ident(_)) {
                    return Err(ParseError::Unsupported(
                        "the json parser with parameters (use | json alone)".to_owned(),
                    ));
                }
                Ok(Stage::Json)
            }
            "logfmt" => {
                self.next();
                if matches!(self.peek(), Tok::Minus | Tok::Ident(_)) {
                    return Err(ParseError::Unsupported(
                        "the logfmt parser with flags or parameters (use | logfmt alone)"
                            .to_owned(),
                    ));
                }
                Ok(Stage::Logfmt)
            }
            "line_format" => {
                self.next();
                match self.next() {
                    Tok::Str(t) => template::parse(&t).map(Stage::LineFormat),
                    _ => Err(self.syntax("line_format needs a quoted template")),
                }
            }
            "drop" => {
                self.next();
                let mut items = Vec::new();
                loop {
                    let name = match self.next() {
                        Tok::Ident(n) => n,
                        _ => return Err(self.syntax("drop needs label names")),
                    };
                    let only = match self.peek() {
                        Tok::Eq | Tok::Ne | Tok::Re | Tok::Nre => {
                            Some(self.str_matcher(name.clone())?)
                        }
                        _ => None,
                    };
                    items.push(DropItem { name, only });
                    if *self.peek() != Tok::Comma {
                        break;
                    }
                    self.next();
                }
                Ok(Stage::Drop(items))
            }
            "keep" => {
                self.next();
                let mut names = Vec::new();
                loop {
                    match self.next() {
                        Tok::Ident(n) => names.push(n),
                        _ => return Err(self.syntax("keep needs label names")),
                    }
                    if matches!(self.peek(), Tok::Eq | Tok::Ne | Tok::Re | Tok::Nre) {
                        return Err(ParseError::Unsupported("keep with a value".to_owned()));
                    }
                    if *self.peek() != Tok::Comma {
                        break;
                    }
                    self.next();
                }
                Ok(Stage::Keep(names))
            }
            w if OTHER_STAGES.contains(&w) => {
                Err(ParseError::Unsupported(format!("the {w:?} pipeline stage")))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn label_or(&mut self) -> Result<LabelExpr, ParseError> {
        let mut lhs = self.label_and()?;
        while self.is_ident("or") {
            self.next();
            let rhs = self.label_and()?;
            lhs = LabelExpr::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_and(&mut self) -> Result<LabelExpr, ParseError> {
        let mut lhs = self.label_atom()?;
        loop {
            let juxtaposed = matches!(self.peek(), Tok::Ident(w) if w != "or" && w != "and" && w != "offset")
                && matches!(
                    self.peek_at(1),
                    Tok::Eq
                        | Tok::EqEq
                        | Tok::Ne
                        | Tok::Re
                        | Tok::Nre
                        | Tok::Gt
                        | Tok::Ge
                        | Tok::Lt
                        | Tok::Le
                );
            if self.is_ident("and") || *self.peek() == Tok::Comma {
                self.next();
            } else if !juxtaposed {
                break;
            }
            let rhs = self.label_atom()?;
            lhs = LabelExpr::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_atom(&mut self) -> Result<LabelExpr, ParseError> {
        if *self.peek() == Tok::LParen {
            self.next();
            let inner = self.label_or()?;
            self.expect(Tok::RParen)?;
            return Ok(inner);
        }
        let name = match self.next() {
            Tok::Ident(n) => n,
            _ => {
                self.pos = self.pos.saturating_sub(1);
                return Err(self.unexpected());
            }
        };
        let op = self.peek().clone();
        let value = self.peek_at(1).clone();
        let cmp = match op {
            Tok::Eq => CmpOp::Eq,
            Tok::EqEq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Re | Tok::Nre => return Ok(LabelExpr::Str(self.str_matcher(name)?)),
            _ => return Err(self.unexpected()),
        };
        let (value, kind) = match value {
            Tok::Str(_) if matches!(op, Tok::Eq | Tok::Ne) => {
                return Ok(LabelExpr::Str(self.str_matcher(name)?))
            }
            Tok::Num(n) => (n, NumKind::Number),
            Tok::Duration(ns) => (ns as f64 / 1e9, NumKind::Duration),
            Tok::Bytes(b) => (b, NumKind::Bytes),
            Tok::Ident(w) if w == "ip" => {
                return Err(ParseError::Unsupported("the ip() label filter".to_owned()))
            }
            _ => {
                self.next();
                return Err(self.unexpected());
            }
        };
        self.next();
        self.next();
        Ok(LabelExpr::Num {
            name,
            op: cmp,
            value,
            kind,
        })
    }

    /// `op "value"` after a label name, for string comparisons.
    fn str_matcher(&mut self, name: String) -> Result<Matcher, ParseError> {
        let op = match self.next() {
            Tok::Eq => MatchOp::Eq,
            Tok::Ne => MatchOp::Ne,
            Tok::Re => MatchOp::Re,
            Tok::Nre => MatchOp::Nre,
            _ => {
                self.pos = self.pos.saturating_sub(1);
                return Err(self.unexpected());
            }
        };
        let value = match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                s
            }
            _ => return Err(self.unexpected()),
        };
        let re = match op {
            MatchOp::Re | MatchOp::Nre => Some(regex(&value, true)?),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.expect(Tok::LBrace)?;
        let mut matchers = Vec::new();
        while let Tok::Ident(name) = self.peek().clone() {
            self.next();
            matchers.push(self.str_matcher(name)?);
            if *self.peek() == Tok::Comma {
                self.next();
            } else {
                break;
            }
        }
        self.expect(Tok::RBrace)?;
        if !matchers
            .iter()
            .any(|m| matches!(m.op, MatchOp::Eq | MatchOp::Re) && !m.matches(""))
        {
            return Err(ParseError::Invalid(EMPTY_SELECTOR.to_owned()));
        }
        Ok(matchers)
    }
}

/// A regex as Loki compiles it: label matchers anchored at both ends, line filters not.
fn regex(pattern: &str, anchored: bool) -> Result<Regex, ParseError> {
    let full = if anchored {
        format!("^(?:{pattern})$")
    } else {
        pattern.to_owned()
    };
    Regex::new(&full).map_err(|e| ParseError::Invalid(format!("invalid regex {pattern:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> Expr {
        parse(q).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    #[test]
    fn the_subset_parses() {
        for q in [
            r#"{service="user-service"}"#,
            r#"{service=~"user.*", level!="DEBUG"} |= "GET" != "health" |~ "5\\d\\d" !~ `^x`"#,
            r#"{a="b"} | json | status >= 500 and level = "ERROR" or (x=~"y.*", d > 1.5s) | line_format "{{.status}} {{ .message }}""#,
            r#"{a="b"} | logfmt | duration_ms < 10 | bytes >= 1KiB | drop __error__, x="y" | keep a"#,
            r#"sum by (level) (count_over_time({a="b"} | drop __error__ [1m]))"#,
            r#"sum(rate({a="b"}[5m])) by (service)"#,
            r#"topk(3, sum by (service) (bytes_rate({a="b"}[1m] offset 5m)))"#,
            r#"count_over_time(({a="b"} |= "x")[30s])"#,
            r#"sum(rate({a="b"}[1m])) / sum(rate({a="c"}[1m])) * 100"#,
            "vector(1)+vector(1)",
            "-2 ^ 2",
        ] {
            ok(q);
        }
        match ok(r#"topk(2, count_over_time({a="b"}[1m]))"#) {
            Expr::Metric(MetricExpr::Vector { op, param, .. }) => {
                assert_eq!((op, param), (VectorOp::Topk, Some(2)))
            }
            other => panic!("{other:?}"),
        }
        match ok("1 + 2 * 3 ^ 2 ^ 0") {
            Expr::Metric(MetricExpr::Binary {
                op: BinOp::Add,
                rhs,
                ..
            }) => {
                assert!(matches!(*rhs, MetricExpr::Binary { op: BinOp::Mul, .. }))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn matchers_are_anchored_and_filters_are_not() {
        let Expr::Log(l) = ok(r#"{a=~"b|c"} |~ "x""#) else {
            panic!()
        };
        assert!(l.matchers[0].matches("c"));
        assert!(!l.matchers[0].matches("cc"));
        let Stage::LineFilter { re: Some(re), .. } = &l.stages[0] else {
            panic!()
        };
        assert!(re.is_match("axb"));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            (
                r#"{a="b""#,
                "parse error at line 1, col 7: syntax error: unexpected end of input",
            ),
            (
                r#"{a="b"} | pattern "<x>""#,
                "unsupported LogQL: the \"pattern\" pipeline stage",
            ),
            (
                r#"quantile_over_time(0.9, {a="b"} | unwrap x [1m])"#,
                "the function \"quantile_over_time\"",
            ),
            (r#"{a="b"} |= "x" or "y""#, "\"or\" between line filters"),
            (r#"sum(rate({a="b"}[1m])) > 1"#, "the comparison operator >"),
            (
                r#"rate({a="b"}[1m]) / on (x) rate({a="b"}[1m])"#,
                "vector matching with \"on\"",
            ),
            (r#"{a=~".*"}"#, "at least one regexp or equality matcher"),
            (r#"{a!="b"}"#, "at least one regexp or equality matcher"),
            (r#"{a="b"} + 1"#, "a log query cannot be used in arithmetic"),
            (r#"{a=~"("}"#, "invalid regex"),
            (r#"{a="b"} | json x="y""#, "json parser with parameters"),
            (r#"{a="b"} | line_format "{{.a | ToUpper}}""#, "ToUpper"),
            (
                "count_over_time({a=\"b\"}[1m]) by (x)",
                "grouping a range aggregation",
            ),
            ("foo", "unexpected IDENTIFIER foo"),
        ];
        for (q, want) in cases {
            let err = parse(q).unwrap_err().to_string();
            assert!(err.contains(want), "{q}: {err}");
        }
    }
}
