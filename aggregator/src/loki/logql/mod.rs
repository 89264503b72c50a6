//! LogQL, the subset this aggregator evaluates (docs/loki.md lists it).
//!
//! - [`lexer`]: text into tokens, with columns for error messages.
//! - [`ast`]: the parsed query.
//! - [`parser`]: tokens into the AST; parts outside the subset are refused by name.
//! - [`template`]: `line_format` templates.
//! - [`extract`]: the `json` and `logfmt` parsers.
//! - [`pipeline`]: one entry through the stages of a log query.
//! - [`metric`]: range aggregations, vector aggregations and arithmetic over steps.

pub mod ast;
pub mod extract;
pub mod lexer;
pub mod metric;
pub mod parser;
pub mod pipeline;
pub mod template;

pub use parser::{parse, parse_selector, ParseError};
