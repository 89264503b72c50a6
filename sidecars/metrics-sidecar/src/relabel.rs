//! Relabeling: a scraped exposition in, the enriched exposition out.
//!
//! Second stage of the enricher, on top of [`crate::exposition`]. It walks the body line
//! by line, keeps track of metric families (so each keeps one HELP and one TYPE line, and
//! a histogram's or summary's samples are checked as one family), and writes every
//! sample straight into one output
//! buffer with the sidecar's labels appended. Label names and escaped values are copied
//! as written; nothing per sample is allocated, which is what makes the hot path fast.
//!
//! A target label that clashes with an added one is kept as `exported_<name>` (with more
//! `exported_` prefixes while that name is taken too), as Prometheus does for
//! `honor_labels: false`. Families whose names start with the sidecar's own prefix are
//! left out and counted, so the sidecar's health families are never duplicated.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;

use crate::exposition::{
    escape_label_value, is_value, parse_line, write_help_text, Dialect, ErrorKind, ExpositionError,
    Label, Line, MetricType,
};

/// The prefix Prometheus gives a target's label that clashes with an added one.
pub const EXPORTED_PREFIX: &str = "exported_";

/// Adds a fixed set of labels to every sample of an exposition.
#[derive(Debug, Clone)]
pub struct Relabeler {
    names: Vec<String>,
    /// `name="value",...` for the added labels, escaped once at construction.
    added_text: Vec<u8>,
    reserved_prefix: String,
}

/// What one relabeling did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelabelStats {
    /// Samples written to the output.
    pub samples: u64,
    /// Families written to the output.
    pub families: u64,
    /// Families left out because their name is reserved for the sidecar's own.
    pub skipped_families: u64,
    /// Samples left out: those of skipped families, and OpenMetrics `_created` samples,
    /// which format 0.0.4 cannot carry.
    pub skipped_samples: u64,
}

impl Relabeler {
    /// `added` are label names and plain (unescaped) values; families whose name starts
    /// with `reserved_prefix` are left out of the output.
    ///
    /// Panics when an added label name is invalid: names are constants of the program.
    pub fn new(added: &[(&str, &str)], reserved_prefix: &str) -> Relabeler {
        let mut text = String::new();
        for (i, (name, value)) in added.iter().enumerate() {
            assert!(
                crate::exposition::is_label_name(name),
                "invalid added label {name}"
            );
            if i > 0 {
                text.push(',');
            }
            text.push_str(name);
            text.push_str("=\"");
            escape_label_value(value, &mut text);
            text.push('"');
        }
        Relabeler {
            names: added.iter().map(|(n, _)| (*n).to_owned()).collect(),
            added_text: text.into_bytes(),
            reserved_prefix: reserved_prefix.to_owned(),
        }
    }

    /// The added labels as written after a sample's own, e.g. `sidecar="true",...`.
    pub fn added_text(&self) -> &[u8] {
        &self.added_text
    }

    /// Relabels `body` into `out`. On error `out` may hold a partial result, which the
    /// caller discards.
    pub fn relabel(
        &self,
        body: &[u8],
        dialect: Dialect,
        out: &mut Vec<u8>,
    ) -> Result<RelabelStats, ExpositionError> {
        // Invalid UTF-8 (say, a Latin-1 HELP text) is replaced by U+FFFD rather than
        // failing the scrape; a valid body is borrowed, not copied.
        let text = String::from_utf8_lossy(body);
        let mut w = Writer {
            r: self,
            out,
            dialect,
            done: HashMap::new(),
            family: None,
            stats: RelabelStats::default(),
        };
        let mut labels: Vec<Label<'_>> = Vec::with_capacity(16);
        let mut eof = false;
        for (index, line) in text.split('\n').enumerate() {
            labels.clear();
            let at = |kind| ExpositionError {
                line: index + 1,
                kind,
            };
            let parsed = parse_line(line, dialect, &mut labels).map_err(at)?;
            if eof && parsed != Line::Blank {
                return Err(at(ErrorKind::AfterEof));
            }
            match parsed {
                Line::Blank | Line::Comment | Line::Unit { .. } => {}
                Line::Eof => eof = true,
                Line::Help { name, text } => w.help(name, text).map_err(at)?,
                Line::Type { name, kind } => w.kind(name, kind).map_err(at)?,
                Line::Sample {
                    name,
                    value,
                    timestamp,
                } => w.sample(name, &labels, value, timestamp).map_err(at)?,
            }
        }
        if dialect == Dialect::OpenMetrics && !eof {
            return Err(ExpositionError {
                line: 0,
                kind: ErrorKind::MissingEof,
            });
        }
        w.finish();
        Ok(w.stats)
    }

    fn is_added(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

/// The family being written.
struct Family<'a> {
    name: &'a str,
    kind: Option<MetricType>,
    help: Option<&'a str>,
    header_written: bool,
    samples: u64,
    skip: bool,
}

/// How a sample relates to its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    Bucket,
    Quantile,
    Created,
}

struct Writer<'r, 'a> {
    r: &'r Relabeler,
    out: &'r mut Vec<u8>,
    dialect: Dialect,
    /// Families met before the current one, in case their samples resume later.
    done: HashMap<&'a str, Family<'a>>,
    family: Option<Family<'a>>,
    stats: RelabelStats,
}

/// Sample suffixes that may belong to a family named without them.
const SUFFIXES: [&str; 6] = ["_bucket", "_sum", "_count", "_total", "_created", "_info"];

impl<'a> Writer<'_, 'a> {
    /// Puts the current family aside, writing its metadata if no sample did yet.
    fn park_family(&mut self) {
        if let Some(mut f) = self.family.take() {
            if !f.skip && !f.header_written {
                write_header(self.out, self.dialect, &f);
            }
            f.header_written = true;
            self.done.insert(f.name, f);
        }
    }

    fn new_family(&mut self, name: &'a str) {
        let skip = name.starts_with(&self.r.reserved_prefix);
        if skip {
            self.stats.skipped_families += 1;
        } else {
            self.stats.families += 1;
        }
        self.family = Some(Family {
            name,
            kind: None,
            help: None,
            header_written: false,
            samples: 0,
            skip,
        });
    }

    fn finish(&mut self) {
        self.park_family();
    }

    /// The family called `name`, made current: the current one, a resumed one or a new one.
    fn family_named(&mut self, name: &'a str) -> &mut Family<'a> {
        if self.family.as_ref().map_or(true, |f| f.name != name) {
            self.park_family();
            match self.done.remove(name) {
                Some(f) => self.family = Some(f),
                None => self.new_family(name),
            }
        }
        self.family.as_mut().expect("a family is current")
    }

    /// For a sample that does not fit the current family: the family it resumes, or a
    /// new one. The text format wants one group per family, but Prometheus reads split
    /// groups, so they are accepted and written as they come.
    fn family_of_sample(&mut self, name: &'a str) -> Result<Role, ErrorKind> {
        self.park_family();
        let stems = SUFFIXES.iter().filter_map(|s| name.strip_suffix(s));
        for stem in std::iter::once(name).chain(stems) {
            let role = self
                .done
                .get(stem)
                .and_then(|f| role_in(f, name, self.dialect));
            if let Some(role) = role {
                self.family = self.done.remove(stem);
                return Ok(role);
            }
        }
        if self.done.contains_key(name) {
            return Err(ErrorKind::NotInFamily(name.to_owned()));
        }
        self.new_family(name);
        Ok(Role::Plain)
    }

    fn help(&mut self, name: &'a str, text: &'a str) -> Result<(), ErrorKind> {
        let dialect = self.dialect;
        let f = self.family_named(name);
        if f.help.is_some() {
            return Err(ErrorKind::DuplicateHelp(name.to_owned()));
        }
        f.help = Some(text);
        if f.header_written && !f.skip {
            // Its samples came first; the HELP line follows them, which readers accept.
            let name = out_name(dialect, f);
            write_help_line(self.out, &name, text);
        }
        Ok(())
    }

    fn kind(&mut self, name: &'a str, kind: MetricType) -> Result<(), ErrorKind> {
        let dialect = self.dialect;
        let f = self.family_named(name);
        if f.kind.is_some() {
            return Err(ErrorKind::DuplicateType(name.to_owned()));
        }
        if f.samples > 0 {
            return Err(ErrorKind::TypeAfterSamples(name.to_owned()));
        }
        f.kind = Some(kind);
        if f.header_written && !f.skip {
            let name = out_name(dialect, f);
            write_type_line(self.out, &name, kind);
        }
        Ok(())
    }

    fn sample(
        &mut self,
        name: &'a str,
        labels: &[Label<'_>],
        value: &str,
        timestamp: Option<&str>,
    ) -> Result<(), ErrorKind> {
        let role = match &self.family {
            Some(f) => role_in(f, name, self.dialect),
            None => None,
        };
        let role = match role {
            Some(role) => role,
            None => self.family_of_sample(name)?,
        };
        match role {
            Role::Bucket if !numeric_if_present(labels, "le") => {
                return Err(ErrorKind::InvalidBucketBound)
            }
            Role::Quantile if !numeric_if_present(labels, "quantile") => {
                return Err(ErrorKind::InvalidQuantile)
            }
            _ => {}
        }
        let f = self
            .family
            .as_mut()
            .expect("the sample's family is current");
        f.samples += 1;
        if f.skip || role == Role::Created {
            self.stats.skipped_samples += 1;
            return Ok(());
        }
        if !f.header_written {
            f.header_written = true;
            write_header(self.out, self.dialect, f);
        }
        self.stats.samples += 1;
        let out = &mut *self.out;
        out.extend_from_slice(name.as_bytes());
        out.push(b'{');
        if labels.iter().any(|l| self.r.is_added(l.name)) {
            write_clashing_labels(self.r, labels, out);
        } else {
            for l in labels {
                out.extend_from_slice(l.name.as_bytes());
                out.extend_from_slice(b"=\"");
                out.extend_from_slice(l.value.as_bytes());
                out.extend_from_slice(b"\",");
            }
        }
        out.extend_from_slice(&self.r.added_text);
        out.extend_from_slice(b"} ");
        out.extend_from_slice(value.as_bytes());
        if let Some(ts) = timestamp {
            out.push(b' ');
            match self.dialect {
                Dialect::Text => out.extend_from_slice(ts.as_bytes()),
                Dialect::OpenMetrics => {
                    // Seconds become the text format's integer milliseconds.
                    let secs: f64 = ts.parse().unwrap_or(0.0);
                    let _ = write!(out, "{}", (secs * 1000.0).round() as i64);
                }
            }
        }
        out.push(b'\n');
        Ok(())
    }
}

/// The sample's role in family `f`, or `None` when it starts another family.
fn role_in(f: &Family<'_>, sample: &str, dialect: Dialect) -> Option<Role> {
    let kind = f.kind.unwrap_or(MetricType::Untyped);
    let om = dialect == Dialect::OpenMetrics;
    if sample == f.name {
        return match kind {
            MetricType::Summary => Some(Role::Quantile),
            MetricType::Histogram => None,
            MetricType::Counter | MetricType::Info if om => None,
            _ => Some(Role::Plain),
        };
    }
    let suffix = sample.strip_prefix(f.name)?;
    match (kind, suffix) {
        (MetricType::Histogram, "_bucket") => Some(Role::Bucket),
        (MetricType::Histogram | MetricType::Summary, "_sum" | "_count") => Some(Role::Plain),
        (MetricType::Counter, "_total") if om => Some(Role::Plain),
        (MetricType::Info, "_info") if om => Some(Role::Plain),
        (MetricType::Counter | MetricType::Histogram | MetricType::Summary, "_created") if om => {
            Some(Role::Created)
        }
        _ => None,
    }
}

/// `le` and `quantile` must be numbers when present (as `promtool` requires); their
/// absence is tolerated, as Prometheus tolerates it.
fn numeric_if_present(labels: &[Label<'_>], name: &str) -> bool {
    labels
        .iter()
        .find(|l| l.name == name)
        .map_or(true, |l| is_value(l.value))
}

/// The name a family's samples have in format 0.0.4.
fn out_name<'a>(dialect: Dialect, f: &Family<'a>) -> Cow<'a, str> {
    match (dialect, f.kind) {
        (Dialect::OpenMetrics, Some(MetricType::Counter)) => format!("{}_total", f.name).into(),
        (Dialect::OpenMetrics, Some(MetricType::Info)) => format!("{}_info", f.name).into(),
        _ => f.name.into(),
    }
}

fn write_help_line(out: &mut Vec<u8>, name: &str, help: &str) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    write_help_text(help, out);
    out.push(b'\n');
}

fn write_type_line(out: &mut Vec<u8>, name: &str, kind: MetricType) {
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.text_name().as_bytes());
    out.push(b'\n');
}

/// `# HELP` and `# TYPE` of a family, under the name its samples have in format 0.0.4.
fn write_header(out: &mut Vec<u8>, dialect: Dialect, f: &Family<'_>) {
    let name = out_name(dialect, f);
    if let Some(help) = f.help {
        write_help_line(out, &name, help);
    }
    if let Some(kind) = f.kind {
        write_type_line(out, &name, kind);
    }
}

/// The rare path: some target label is called like an added one.
fn write_clashing_labels(r: &Relabeler, labels: &[Label<'_>], out: &mut Vec<u8>) {
    let mut assigned: Vec<String> = Vec::new();
    for l in labels {
        if r.is_added(l.name) {
            let mut name = format!("{EXPORTED_PREFIX}{}", l.name);
            while labels.iter().any(|o| o.name == name) || assigned.contains(&name) {
                name.insert_str(0, EXPORTED_PREFIX);
            }
            out.extend_from_slice(name.as_bytes());
            assigned.push(name);
        } else {
            out.extend_from_slice(l.name.as_bytes());
        }
        out.extend_from_slice(b"=\"");
        out.extend_from_slice(l.value.as_bytes());
        out.extend_from_slice(b"\",");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relabel(body: &str) -> Result<String, ExpositionError> {
        let r = Relabeler::new(
            &[("sidecar", "true"), ("service", "svc")],
            "metrics_sidecar_",
        );
        let mut out = Vec::new();
        r.relabel(body.as_bytes(), Dialect::Text, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn adds_labels_and_keeps_metadata_once() {
        let out = relabel("# HELP a An a.\n# TYPE a counter\na 1\nb{x=\"y\"} 2 17\n").unwrap();
        assert_eq!(
            out,
            "# HELP a An a.\n# TYPE a counter\na{sidecar=\"true\",service=\"svc\"} 1\n\
             b{x=\"y\",sidecar=\"true\",service=\"svc\"} 2 17\n"
        );
    }

    #[test]
    fn clashing_labels_are_exported() {
        let out = relabel("a{service=\"t\",exported_service=\"u\"} 1\n").unwrap();
        assert_eq!(
            out,
            "a{exported_exported_service=\"t\",exported_service=\"u\",sidecar=\"true\",service=\"svc\"} 1\n"
        );
    }

    #[test]
    fn reserved_families_are_left_out_and_counted() {
        let r = Relabeler::new(&[("sidecar", "true")], "metrics_sidecar_");
        let mut out = Vec::new();
        let body = "# TYPE metrics_sidecar_up gauge\nmetrics_sidecar_up 1\nb 2\n";
        let stats = r.relabel(body.as_bytes(), Dialect::Text, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "b{sidecar=\"true\"} 2\n");
        assert_eq!(stats.skipped_families, 1);
        assert_eq!(stats.skipped_samples, 1);
        assert_eq!(stats.samples, 1);
    }

    #[test]
    fn family_errors_name_the_line() {
        let err = relabel("# TYPE a gauge\na 1\nb 2\n# TYPE a gauge\n").unwrap_err();
        assert_eq!(err.line, 4);
        assert_eq!(err.kind, ErrorKind::DuplicateType("a".into()));
        assert_eq!(err.to_string(), "line 4: second TYPE line for \"a\"");
    }

    #[test]
    fn split_families_resume_without_repeating_metadata() {
        let body =
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nb 2\nh_sum 1\nh_count 1\n# HELP b B.\n";
        assert_eq!(
            relabel(body).unwrap(),
            "# TYPE h histogram\nh_bucket{le=\"+Inf\",sidecar=\"true\",service=\"svc\"} 1\n\
             b{sidecar=\"true\",service=\"svc\"} 2\nh_sum{sidecar=\"true\",service=\"svc\"} 1\n\
             h_count{sidecar=\"true\",service=\"svc\"} 1\n# HELP b B.\n"
        );
        let err = relabel("# TYPE h histogram\nh 1\n").unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotInFamily("h".into()));
    }
}
