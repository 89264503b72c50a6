//! A parsed LogQL query: what the evaluator runs.

use regex::Regex;

/// A whole query: log lines or numbers.
#[derive(Debug, Clone)]
pub enum Expr {
    Log(LogExpr),
    Metric(MetricExpr),
}

/// A stream selector and the stages each line goes through.
#[derive(Debug, Clone)]
pub struct LogExpr {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

/// `name op "value"` inside `{...}`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// For `=~` and `!~`: anchored at both ends, as Prometheus and Loki anchor them.
    pub re: Option<Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    Nre,
}

impl Matcher {
    /// Whether a label's value (`""` when absent, as in Loki) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Eq => value == self.value,
            MatchOp::Ne => value != self.value,
            MatchOp::Re => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::Nre => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }
}

/// One stage of a log pipeline.
#[derive(Debug, Clone)]
pub enum Stage {
    /// `|= "x"`, `!= "x"`, `|~ "re"`, `!~ "re"`; regexes are not anchored.
    LineFilter {
        op: LineOp,
        value: String,
        re: Option<Regex>,
    },
    /// `| json`: every field of a JSON object line becomes a label.
    Json,
    /// `| logfmt`: every `key=value` pair becomes a label.
    Logfmt,
    /// `| <label filter expression>`.
    LabelFilter(LabelExpr),
    /// `| line_format "{{.name}} ..."`.
    LineFormat(Vec<TemplatePart>),
    /// `| drop a, b="v"`.
    Drop(Vec<DropItem>),
    /// `| keep a, b`.
    Keep(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    Contains,
    NotContains,
    Matches,
    NotMatches,
}

/// A label filter expression after `|`.
#[derive(Debug, Clone)]
pub enum LabelExpr {
    And(Box<LabelExpr>, Box<LabelExpr>),
    Or(Box<LabelExpr>, Box<LabelExpr>),
    /// `name =|!=|=~|!~ "text"`.
    Str(Matcher),
    /// `name ==|!=|>|>=|<|<= number`, also a duration or a byte size.
    Num {
        name: String,
        op: CmpOp,
        value: f64,
        kind: NumKind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
        }
    }
}

/// How a label's text is read for a numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumKind {
    Number,
    /// Compared in seconds; the label is read as a duration (`1.5s`, `250ms`).
    Duration,
    /// Compared in bytes; the label is read as a size (`10KB`, `3MiB`).
    Bytes,
}

/// A piece of a `line_format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    /// `{{.name}}`: the label's value, empty when absent.
    Label(String),
    /// `{{__line__}}`: the current line.
    Line,
    /// `{{__timestamp__}}`: the entry's time, RFC 3339.
    Timestamp,
}

/// One item of `| drop`: a name, or a name with a value it must have.
#[derive(Debug, Clone)]
pub struct DropItem {
    pub name: String,
    pub only: Option<Matcher>,
}

/// A query that yields numbers.
#[derive(Debug, Clone)]
pub enum MetricExpr {
    /// `count_over_time({...}[5m])` and the like.
    Range(RangeAgg),
    /// `sum by (x) (...)` and the like.
    Vector {
        op: VectorOp,
        /// `k` of `topk` and `bottomk`.
        param: Option<usize>,
        grouping: Option<Grouping>,
        inner: Box<MetricExpr>,
    },
    /// `a + b`, `a / 2`: one-to-one on identical label sets.
    Binary {
        op: BinOp,
        lhs: Box<MetricExpr>,
        rhs: Box<MetricExpr>,
    },
    /// A number.
    Scalar(f64),
    /// `vector(1)`: one series without labels.
    VectorLit(f64),
}

#[derive(Debug, Clone)]
pub struct RangeAgg {
    pub func: RangeFunc,
    pub log: LogExpr,
    /// Nanoseconds.
    pub range: i64,
    /// Nanoseconds.
    pub offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFunc {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
}

impl RangeFunc {
    /// Whether the function adds up line sizes rather than counting lines.
    pub fn counts_bytes(self) -> bool {
        matches!(self, RangeFunc::BytesOverTime | RangeFunc::BytesRate)
    }

    /// Whether the total is divided by the range in seconds.
    pub fn per_second(self) -> bool {
        matches!(self, RangeFunc::Rate | RangeFunc::BytesRate)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOp {
    Sum,
    Count,
    Avg,
    Min,
    Max,
    Topk,
    Bottomk,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl BinOp {
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            BinOp::Mod => a % b,
            BinOp::Pow => a.powf(b),
        }
    }
}

impl MetricExpr {
    /// The longest look-back (range plus offset) of any range aggregation inside.
    pub fn lookback(&self) -> i64 {
        match self {
            MetricExpr::Range(r) => r.range.saturating_add(r.offset.max(0)),
            MetricExpr::Vector { inner, .. } => inner.lookback(),
            MetricExpr::Binary { lhs, rhs, .. } => lhs.lookback().max(rhs.lookback()),
            MetricExpr::Scalar(_) | MetricExpr::VectorLit(_) => 0,
        }
    }
}
