//! A table of tricky expositions through the parser and the relabeler.
//!
//! Accepted inputs must come out with every sample intact plus the added labels, with
//! each family's HELP and TYPE once, valid for our own parser and, when it is installed,
//! for `promtool check metrics`. Rejected inputs must fail with the expected error.

use std::collections::BTreeMap;

use metrics_sidecar::exposition::{
    parse_line, unescape_label_value, Dialect, ErrorKind, Label, Line,
};
use metrics_sidecar::relabel::Relabeler;

const ADDED: [(&str, &str); 3] = [
    ("sidecar", "true"),
    ("environment", "test \"env\""),
    ("service", "user-service"),
];

fn relabeler() -> Relabeler {
    Relabeler::new(&ADDED, "metrics_sidecar_")
}

type Sample = (String, BTreeMap<String, String>, String, Option<String>);

/// Every sample of a body, labels decoded; panics on an invalid body.
fn samples(body: &str, dialect: Dialect) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut labels: Vec<Label<'_>> = Vec::new();
    for line in body.lines() {
        labels.clear();
        if let Line::Sample {
            name,
            value,
            timestamp,
        } = parse_line(line, dialect, &mut labels).unwrap()
        {
            let labels = labels
                .iter()
                .map(|l| {
                    let mut v = String::new();
                    unescape_label_value(l.value, &mut v);
                    (l.name.to_owned(), v)
                })
                .collect();
            out.push((
                name.to_owned(),
                labels,
                value.to_owned(),
                timestamp.map(str::to_owned),
            ));
        }
    }
    out
}

fn relabel(body: &str, dialect: Dialect) -> Result<String, ErrorKind> {
    let mut out = Vec::new();
    relabeler()
        .relabel(body.as_bytes(), dialect, &mut out)
        .map_err(|e| e.kind)?;
    Ok(String::from_utf8(out).expect("the output is UTF-8"))
}

/// `promtool check metrics` on `body`: its lint complaints, or the parse error.
///
/// promtool exits 1 on a parse error and 3 when it only has style complaints (a missing
/// HELP, a counter without `_total`): those depend on the target, not on the sidecar.
fn promtool_check(body: &str) -> Result<Vec<String>, String> {
    let out = shared::testkit::promtool_check_metrics(body)
        .ok_or_else(|| "promtool is not installed".to_owned())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) | Some(3) => Ok(text.lines().map(str::to_owned).collect()),
        _ => Err(text),
    }
}

fn promtool_installed() -> bool {
    shared::testkit::tool_available("promtool", "prometheus")
}

/// Inputs whose samples go through unchanged apart from the added labels.
const PLAIN: &[(&str, &str)] = &[
    ("empty body", ""),
    (
        "label values holding braces, commas, quotes, backslashes and newlines",
        "# HELP odd_total Label values that break naive splitting.\n\
         # TYPE odd_total counter\n\
         odd_total{path=\"/a/{id}/b\",list=\"1,2,3\",quote=\"say \\\"hi\\\"\",back=\"C:\\\\dir\",nl=\"a\\nb\",brace=\"}\"} 7\n",
    ),
    (
        "HELP escapes, comments, blank lines and blanks in label sets",
        "# A free comment.\n\n# HELP g A gauge \\\\ with \\n escapes.\n# TYPE g gauge\n\n  g { a = \"1\" , b=\"2\", } 3.5\n#\n",
    ),
    (
        "NaN, infinities and timestamps",
        "# TYPE v untyped\nv{k=\"nan\"} NaN\nv{k=\"pinf\"} +Inf 1700000000000\nv{k=\"ninf\"} -Inf -5\nv{k=\"exp\"} 1.5e-7 0\n",
    ),
    (
        "a histogram and a summary",
        "# HELP h_seconds Latency.\n# TYPE h_seconds histogram\n\
         h_seconds_bucket{le=\"0.1\"} 1\nh_seconds_bucket{le=\"1\"} 2\nh_seconds_bucket{le=\"+Inf\"} 3\n\
         h_seconds_sum 1.7\nh_seconds_count 3\n\
         # HELP s_bytes Sizes.\n# TYPE s_bytes summary\n\
         s_bytes{quantile=\"0.5\"} 10\ns_bytes{quantile=\"0.99\"} NaN\ns_bytes_sum 100\ns_bytes_count 4\n",
    ),
    (
        "samples without metadata, and metadata without samples",
        "a 1\nb{x=\"y\"} 2\n# HELP quiet_total Nothing yet.\n# TYPE quiet_total counter\nc 3\n",
    ),
    (
        "CRLF line endings and no final newline",
        "# TYPE crlf gauge\r\ncrlf{a=\"b\"} 1\r\ncrlf{a=\"c\"} 2",
    ),
];

#[test]
fn accepted_expositions_keep_every_sample_and_gain_the_labels() {
    let promtool = promtool_installed();
    for (what, body) in PLAIN {
        let out = relabel(body, Dialect::Text).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut expected = samples(body, Dialect::Text);
        for (_, labels, _, _) in &mut expected {
            for (k, v) in ADDED {
                labels.insert(k.to_owned(), v.to_owned());
            }
        }
        assert_eq!(samples(&out, Dialect::Text), expected, "{what}:\n{out}");
        assert_valid_output(what, body, Dialect::Text, &out, promtool);
    }
}

/// The output is valid again for the relabeler, and for promtool, which complains about
/// nothing it did not already complain about in the input.
fn assert_valid_output(what: &str, input: &str, dialect: Dialect, out: &str, promtool: bool) {
    let again = Relabeler::new(&[("again", "1")], "metrics_sidecar_");
    let mut sink = Vec::new();
    again
        .relabel(out.as_bytes(), Dialect::Text, &mut sink)
        .unwrap_or_else(|e| panic!("{what}: output not valid again: {e}\n{out}"));
    if !promtool {
        return;
    }
    let complaints =
        promtool_check(out).unwrap_or_else(|e| panic!("{what}: promtool rejects:\n{e}\n{out}"));
    // Some inputs we accept and make valid (CRLF, sloppy HELP escapes) promtool rejects;
    // for those the output only has to be accepted.
    if let (Dialect::Text, Ok(before)) = (dialect, promtool_check(input)) {
        let new: Vec<_> = complaints.iter().filter(|c| !before.contains(c)).collect();
        assert!(new.is_empty(), "{what}: promtool complains: {new:?}\n{out}");
    }
}

#[test]
fn exact_outputs() {
    let promtool = promtool_installed();
    let suffix = r#"sidecar="true",environment="test \"env\"",service="user-service""#;
    let cases: &[(&str, Dialect, &str, String)] = &[
        (
            "a clash keeps the target's value as exported_<name>",
            Dialect::Text,
            "m{service=\"orders\",environment=\"prod\",x=\"1\"} 1\n",
            format!("m{{exported_service=\"orders\",exported_environment=\"prod\",x=\"1\",{suffix}}} 1\n"),
        ),
        (
            "a clash with an exported_ label already there adds another prefix",
            Dialect::Text,
            "m{sidecar=\"no\",exported_sidecar=\"old\"} 1\n",
            format!("m{{exported_exported_sidecar=\"no\",exported_sidecar=\"old\",{suffix}}} 1\n"),
        ),
        (
            "a sloppy HELP text is escaped, not rejected",
            Dialect::Text,
            "# HELP m Matches \\d+ and \\\\.\nm 1\n",
            format!("# HELP m Matches \\\\d+ and \\\\.\nm{{{suffix}}} 1\n"),
        ),
        (
            "families named like the sidecar's own are left out",
            Dialect::Text,
            "# TYPE metrics_sidecar_up gauge\nmetrics_sidecar_up 1\nkept 2\n",
            format!("kept{{{suffix}}} 2\n"),
        ),
        (
            "OpenMetrics: counters, info, unknown, exemplars, float timestamps and EOF",
            Dialect::OpenMetrics,
            "# TYPE req counter\n# UNIT req requests\n# HELP req Requests.\n\
             req_total{code=\"200\"} 5 # {trace_id=\"abc\"} 1.0 1700000000.5\n\
             req_created{code=\"200\"} 1700000000.0\n\
             # TYPE build info\nbuild_info{version=\"1.2\"} 1\n\
             # TYPE thing unknown\nthing 4 1700000000.25\n# EOF\n",
            format!(
                "# HELP req_total Requests.\n# TYPE req_total counter\nreq_total{{code=\"200\",{suffix}}} 5\n\
                 # TYPE build_info gauge\nbuild_info{{version=\"1.2\",{suffix}}} 1\n\
                 # TYPE thing untyped\nthing{{{suffix}}} 4 1700000000250\n"
            ),
        ),
    ];
    for (what, dialect, body, want) in cases {
        let out = relabel(body, *dialect).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(&out, want, "{what}");
        assert_valid_output(what, body, *dialect, &out, promtool);
    }
}

#[test]
fn invalid_utf8_is_replaced_not_rejected() {
    // A Latin-1 degree sign, as an old exporter might write it.
    let body = b"# HELP t Temperatur in \xb0C.\nt{unit=\"\xb0C\"} 21\n";
    let mut out = Vec::new();
    relabeler()
        .relabel(body, Dialect::Text, &mut out)
        .expect("accepted");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "# HELP t Temperatur in \u{FFFD}C.\n\
         t{unit=\"\u{FFFD}C\",sidecar=\"true\",environment=\"test \\\"env\\\"\",service=\"user-service\"} 21\n"
    );
}

#[test]
fn rejected_expositions() {
    use ErrorKind::*;
    let cases: &[(&str, Dialect, &[u8], ErrorKind)] = &[
        (
            "an HTML page",
            Dialect::Text,
            b"<html><body>Oops</body></html>\n",
            InvalidMetricName,
        ),
        (
            "a JSON body",
            Dialect::Text,
            b"{\"status\":\"ok\"}\n",
            InvalidMetricName,
        ),
        (
            "an unterminated label value",
            Dialect::Text,
            b"m{a=\"1} 1\n",
            UnterminatedLabelValue,
        ),
        (
            "a naive split's nightmare",
            Dialect::Text,
            b"m{a=\"x\\\"} 1\n",
            UnterminatedLabelValue,
        ),
        (
            "an unknown escape",
            Dialect::Text,
            b"m{a=\"\\t\"} 1\n",
            InvalidEscape,
        ),
        (
            "a duplicate label",
            Dialect::Text,
            b"m{a=\"1\",a=\"1\"} 1\n",
            DuplicateLabel("a".into()),
        ),
        (
            "a missing value",
            Dialect::Text,
            b"m{a=\"1\"}\n",
            MissingValue,
        ),
        (
            "a word as value",
            Dialect::Text,
            b"m twelve\n",
            InvalidValue("twelve".into()),
        ),
        (
            "a float timestamp in the text format",
            Dialect::Text,
            b"m 1 1.5\n",
            InvalidTimestamp("1.5".into()),
        ),
        (
            "two TYPE lines",
            Dialect::Text,
            b"# TYPE m gauge\n# TYPE m counter\nm 1\n",
            DuplicateType("m".into()),
        ),
        (
            "two HELP lines",
            Dialect::Text,
            b"# HELP m a\n# HELP m b\nm 1\n",
            DuplicateHelp("m".into()),
        ),
        (
            "TYPE after samples",
            Dialect::Text,
            b"m 1\n# TYPE m gauge\n",
            TypeAfterSamples("m".into()),
        ),
        (
            "a histogram sample without suffix",
            Dialect::Text,
            b"# TYPE h histogram\nh 1\n",
            NotInFamily("h".into()),
        ),
        (
            "TYPE for a family seen before",
            Dialect::Text,
            b"a 1\nb 1\n# TYPE a gauge\n",
            TypeAfterSamples("a".into()),
        ),
        (
            "an unknown type",
            Dialect::Text,
            b"# TYPE m meter\n",
            UnknownType("meter".into()),
        ),
        (
            "a bucket with a bad le",
            Dialect::Text,
            b"# TYPE h histogram\nh_bucket{le=\"big\"} 1\n",
            InvalidBucketBound,
        ),
        (
            "a non-numeric quantile",
            Dialect::Text,
            b"# TYPE s summary\ns{quantile=\"p99\"} 1\n",
            InvalidQuantile,
        ),
        (
            "OpenMetrics without EOF",
            Dialect::OpenMetrics,
            b"m 1\n",
            MissingEof,
        ),
        (
            "OpenMetrics after EOF",
            Dialect::OpenMetrics,
            b"# EOF\nm 1\n",
            AfterEof,
        ),
        (
            "a gauge histogram",
            Dialect::OpenMetrics,
            b"# TYPE g gaugehistogram\n# EOF\n",
            UnsupportedType,
        ),
    ];
    for (what, dialect, body, want) in cases {
        let mut out = Vec::new();
        let got = relabeler().relabel(body, *dialect, &mut out).map(|_| ());
        assert_eq!(got.map_err(|e| e.kind), Err(want.clone()), "{what}");
    }
}

/// A small deterministic generator, so the mutation test needs no extra dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_expositions_never_panic_and_accepted_ones_stay_valid() {
    const ALPHABET: &[u8] = b"{}\",=\\ \n#\tabc_:019.+-eEINnf\xff\xc3";
    let seeds: Vec<&str> = PLAIN.iter().map(|(_, body)| *body).collect();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for round in 0..4000 {
        let mut body = seeds[round % seeds.len()].as_bytes().to_vec();
        for _ in 0..1 + rng.below(4) {
            if body.is_empty() {
                body.push(ALPHABET[rng.below(ALPHABET.len())]);
                continue;
            }
            let at = rng.below(body.len());
            match rng.below(3) {
                0 => body[at] = ALPHABET[rng.below(ALPHABET.len())],
                1 => body.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                _ => {
                    body.remove(at);
                }
            }
        }
        for dialect in [Dialect::Text, Dialect::OpenMetrics] {
            let mut out = Vec::new();
            if relabeler().relabel(&body, dialect, &mut out).is_ok() {
                accepted += 1;
                let again = Relabeler::new(&[("again", "1")], "metrics_sidecar_");
                let mut sink = Vec::new();
                let out_text = String::from_utf8_lossy(&out).into_owned();
                again
                    .relabel(&out, Dialect::Text, &mut sink)
                    .unwrap_or_else(|e| {
                        panic!(
                            "accepted {:?} but wrote invalid output ({e}):\n{out_text}",
                            String::from_utf8_lossy(&body)
                        )
                    });
            }
        }
    }
    assert!(
        accepted > 100,
        "only {accepted} mutants accepted: the test lost its teeth"
    );
}
