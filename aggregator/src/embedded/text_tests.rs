//! Text search over segments against the row-by-row check, on random messages: with
//! the segments' terms (the counts of frequent words and pairs), and with the same
//! segments as files written before terms read them (no terms, every group read).
//! Every page of every query, followed by its cursor, in both orders, must hold exactly
//! the records the check finds, and `total` must be their exact number. The seed is
//! printed; `TEXT_SEED=<n>` replays one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::testkit::SeededRng as Rng;

use super::filter::{After, Filter};
use super::memory::View;
use super::search;
use super::segment::{self, Row, Segment};
use crate::query::{Cursor, LogParams, LogQuery, Order};
use crate::record::{self, Received, Record};

const T0: i64 = 1_700_000_000_000_000;
/// Few words, so that many are terms of a group of [`GROUP_ROWS`] rows.
const WORDS: [&str; 9] = [
    "timeout",
    "Connection",
    "refused",
    "slow",
    "upstream",
    "GET",
    "200",
    "Straße",
    "conn",
];
const GROUP_ROWS: usize = 512;

fn message(rng: &mut Rng) -> Option<String> {
    match rng.below(20) {
        0 => None,
        1 => Some(String::new()),
        _ => {
            let mut m = String::new();
            for _ in 0..1 + rng.below(6) {
                m.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
                m.push_str([" ", " ", "/", ": ", "-", ""][rng.below(6) as usize]);
            }
            Some(m)
        }
    }
}

fn records(rng: &mut Rng, n: usize) -> Vec<(i64, Record)> {
    let received = Received::now();
    (0..n)
        .map(|i| {
            let mut obj = serde_json::json!({
                "timestamp": chrono::DateTime::from_timestamp_micros(T0 + i as i64 * 1000)
                    .map(|t| t.to_rfc3339()),
                "service": format!("s{}", rng.below(2)),
            });
            if let Some(m) = message(rng) {
                obj["message"] = m.into();
            }
            (
                i as i64 + 1,
                record::parse(&obj.to_string(), &received).unwrap(),
            )
        })
        .collect()
}

fn segments(dir: &std::path::Path, all: &[(i64, Record)]) -> Vec<Arc<Segment>> {
    all.chunks(all.len().div_ceil(3))
        .map(|part| {
            let rows: Vec<Row> = part
                .iter()
                .map(|(id, record)| Row { id: *id, record })
                .collect();
            let (first, last) = (part[0].0, part[part.len() - 1].0);
            let path = dir.join(segment::file_name(first, last));
            segment::write(&path, &rows, GROUP_ROWS).unwrap();
            Arc::new(Segment::open(&path).unwrap())
        })
        .collect()
}

fn query(rng: &mut Rng) -> LogQuery {
    let pick = |rng: &mut Rng| WORDS[rng.below(WORDS.len() as u64) as usize];
    let mut q = pick(rng).to_owned();
    for _ in 0..rng.below(3) {
        q = format!("{q}%20{}", pick(rng));
    }
    if rng.below(5) == 0 {
        q.push('*');
    }
    let mut pairs = vec![format!("q={q}")];
    if rng.below(4) == 0 {
        pairs.push(format!("service=s{}", rng.below(2)));
    }
    if rng.below(5) == 0 {
        let t = chrono::DateTime::from_timestamp_micros(T0 + rng.below(3000) as i64 * 1000)
            .unwrap()
            .to_rfc3339()
            .replace('+', "%2B");
        pairs.push(format!("since={t}"));
    }
    pairs.push(format!("order={}", ["asc", "desc"][rng.below(2) as usize]));
    pairs.push(format!("limit={}", [7, 100, 1000][rng.below(3) as usize]));
    let params = actix_web::web::Query::<LogParams>::from_query(&pairs.join("&"))
        .unwrap()
        .into_inner();
    params.to_query(100, 1000).unwrap()
}

/// The total and the page the row-by-row check gives.
fn expected(all: &[(i64, Record)], q: &LogQuery) -> (u64, Vec<String>) {
    let f = Filter::new(q);
    let after = After {
        order: q.order,
        at: q.cursor.map(|c| (c.ts_us, c.id)),
    };
    let mut scratch = Vec::new();
    let matching: Vec<&(i64, Record)> = all
        .iter()
        .filter(|(_, r)| {
            f.time_ok(r.ts_us)
                && f.labels_ok(r.service.as_deref(), r.level.as_deref())
                && f.text_ok(r.message.as_deref(), &mut scratch)
        })
        .collect();
    let mut rows: Vec<(i64, i64, &str)> = matching
        .iter()
        .filter(|(id, r)| after.admits((r.ts_us, *id)))
        .map(|(id, r)| (r.ts_us, *id, r.body.as_str()))
        .collect();
    rows.sort();
    if q.order == Order::Desc {
        rows.reverse();
    }
    rows.truncate(q.limit);
    let page = rows.into_iter().map(|(_, _, b)| b.to_owned()).collect();
    (matching.len() as u64, page)
}

fn check_pages(view: &View, all: &[(i64, Record)], mut q: LogQuery, what: &str) {
    loop {
        let given = Duration::from_secs(60);
        let page = search::query(view, &q, Instant::now() + given, given).unwrap();
        let (total, want) = expected(all, &q);
        assert_eq!((page.total, &page.logs), (total, &want), "{what}: {q:?}");
        let Some((ts_us, id)) = page.last else {
            return;
        };
        q.cursor = Some(Cursor {
            order: q.order,
            ts_us,
            id,
        });
    }
}

#[test]
fn text_search_with_and_without_terms_agrees_with_the_row_check() {
    let seed = Rng::seed_from_env("TEXT_SEED");
    println!("TEXT_SEED={seed}");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let all = records(&mut rng, 3000);
    let with_terms = segments(dir.path(), &all);
    // The same files as a reader sees those written before terms: none in the index.
    let without: Vec<Arc<Segment>> = with_terms
        .iter()
        .map(|s| {
            let mut old = Segment::open(&s.path).unwrap();
            for g in &mut old.index.groups {
                g.terms = None;
            }
            Arc::new(old)
        })
        .collect();
    let counted = with_terms
        .iter()
        .flat_map(|s| &s.index.groups)
        .filter(|g| g.terms.as_ref().is_some_and(|t| !t.is_empty()))
        .count();
    assert!(counted > 0, "seed {seed}: no group has terms");
    let views = [
        ("terms", View::counted(with_terms, Vec::new())),
        ("no terms", View::counted(without, Vec::new())),
    ];
    for i in 0..60 {
        let q = query(&mut rng);
        for (name, view) in &views {
            check_pages(
                view,
                &all,
                q.clone(),
                &format!("seed {seed} query {i} {name}"),
            );
        }
    }
}
