//! Request-id lookups over segments against the row-by-row check: ids in one block or
//! in many, absent ids that a block's Bloom filter lets through, and absent ids that
//! also share the two bytes of a row's `request_key` in such a block; over files with
//! the `request_key` column and over the same rows in files written before it. The
//! seed is printed; `LOOKUP_SEED=<n>` replays one run.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::testkit::SeededRng as Rng;

use super::index::{key_hash, request_fingerprint, BLOCK_ROWS};
use super::lookup;
use super::memory::View;
use super::search;
use super::segment::{self, Row, Segment, SegmentWriter};
use crate::query::{LogParams, LogQuery, Order};
use crate::record::{self, Received, Record};

const T0: i64 = 1_700_000_000_000_000;
const GROUP_ROWS: usize = 4096;

fn records(rng: &mut Rng, n: usize) -> Vec<(i64, Record)> {
    let received = Received::now();
    (0..n)
        .map(|i| {
            let mut obj = serde_json::json!({
                "timestamp": chrono::DateTime::from_timestamp_micros(T0 + i as i64 * 1000)
                    .map(|t| t.to_rfc3339()),
                "message": format!("m {i}"),
            });
            match rng.below(10) {
                0 => {}
                // An id held by rows of many blocks.
                1 => obj["request_id"] = format!("shared-{}", rng.below(3)).into(),
                2 => obj["request_id"] = format!("q\"{}", rng.below(50)).into(),
                3 => obj["request_id"] = serde_json::json!(rng.below(40)),
                // A plain id written with an escape (`e\u002d7` is `e-7`).
                4 => obj["request_id"] = format!("e-{i}").into(),
                _ => obj["request_id"] = format!("r{i}").into(),
            }
            let line = obj.to_string().replace("\"e-", "\"e\\u002d");
            (i as i64 + 1, record::parse(&line, &received).unwrap())
        })
        .collect()
}

/// Writes `all` as one segment, with the `request_key` column or as files were before.
fn segment(dir: &std::path::Path, all: &[(i64, Record)], keys: bool) -> Arc<Segment> {
    let sub = dir.join(if keys { "new" } else { "old" });
    std::fs::create_dir_all(&sub).unwrap();
    let path = sub.join(segment::file_name(all[0].0, all[all.len() - 1].0));
    let mut w = if keys {
        SegmentWriter::create(&path, GROUP_ROWS).unwrap()
    } else {
        SegmentWriter::create_before_request_keys(&path, GROUP_ROWS).unwrap()
    };
    for group in all.chunks(GROUP_ROWS) {
        let rows: Vec<Row> = group
            .iter()
            .map(|(id, record)| Row { id: *id, record })
            .collect();
        w.write_group(&rows).unwrap();
    }
    w.finish().unwrap();
    let seg = Segment::open(&path).unwrap();
    assert_eq!(seg.request_keys, keys);
    Arc::new(seg)
}

/// An id no record holds that a block's filter lets through and, with `collide`,
/// that shares its `request_key` with a row of that block.
fn false_positive(seg: &Segment, all: &[(i64, Record)], collide: bool) -> String {
    let held: HashSet<&str> = all
        .iter()
        .filter_map(|(_, r)| r.request_id.as_deref())
        .collect();
    for n in 0..20_000_000u64 {
        let want = format!("{}{n}", if collide { "c" } else { "f" });
        let key = key_hash(want.as_bytes());
        for (g, gi) in seg.index.groups.iter().enumerate() {
            for (start, end) in gi.request_rows(key) {
                let base = g * GROUP_ROWS;
                let shares = all[base + start..base + end].iter().any(|(_, r)| {
                    r.request_id.as_deref().is_some_and(|id| {
                        request_fingerprint(key_hash(id.as_bytes())) == request_fingerprint(key)
                    })
                });
                if shares == collide && !held.contains(want.as_str()) {
                    return want;
                }
            }
        }
    }
    panic!("no false positive found (collide: {collide})");
}

fn encoded(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(want: &str, order: Order) -> LogQuery {
    let order = if order == Order::Asc { "asc" } else { "desc" };
    let q = format!("request_id={}&order={order}&limit=1000", encoded(want));
    let params = actix_web::web::Query::<LogParams>::from_query(&q)
        .unwrap()
        .into_inner();
    params.to_query(100, 1000).unwrap()
}

fn check(view: &View, all: &[(i64, Record)], want: &str, what: &str) {
    for order in [Order::Asc, Order::Desc] {
        let mut rows: Vec<(i64, i64, &str)> = all
            .iter()
            .filter(|(_, r)| r.request_id.as_deref() == Some(want))
            .map(|(id, r)| (r.ts_us, *id, r.body.as_str()))
            .collect();
        rows.sort();
        if order == Order::Desc {
            rows.reverse();
        }
        let given = Duration::from_secs(60);
        let page = search::query(view, &query(want, order), Instant::now() + given, given).unwrap();
        let bodies: Vec<&str> = rows.iter().map(|r| r.2).collect();
        assert_eq!(page.total, rows.len() as u64, "{what}: {want:?}");
        assert_eq!(page.logs, bodies, "{what}: {want:?}");
    }
}

#[test]
fn request_lookups_agree_with_the_row_check_with_and_without_request_keys() {
    let seed = Rng::seed_from_env("LOOKUP_SEED");
    println!("LOOKUP_SEED={seed}");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let all = records(&mut rng, 2 * GROUP_ROWS + 3 * BLOCK_ROWS / 2);
    let new = segment(dir.path(), &all, true);
    let old = segment(dir.path(), &all, false);
    let mut wants: Vec<String> = ["shared-0", "shared-2", "q\"7", "12", "absent"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for _ in 0..20 {
        let i = rng.below(all.len() as u64) as usize;
        wants.extend(all[i].1.request_id.clone());
    }
    // The first and last rows of blocks and of groups.
    for i in [
        0,
        BLOCK_ROWS - 1,
        BLOCK_ROWS,
        GROUP_ROWS - 1,
        GROUP_ROWS,
        all.len() - 1,
    ] {
        wants.push(format!("r{i}"));
    }
    // Ids whose bodies hold them escaped: a plain id is not always written as it is.
    wants.extend(
        all.iter()
            .filter_map(|(_, r)| r.request_id.clone())
            .filter(|r| r.starts_with("e-"))
            .take(3),
    );
    let bloom_only = false_positive(&new, &all, false);
    let collision = false_positive(&new, &all, true);
    // The column rules out the first; the second is ruled out only by its bodies.
    let key = key_hash(collision.as_bytes());
    for (g, _) in new.index.groups.iter().enumerate() {
        assert_eq!(
            lookup::request_rows(&new, g, &collision, key).unwrap(),
            Vec::<usize>::new()
        );
    }
    wants.extend([bloom_only, collision]);
    let views = [
        ("request keys", View::counted(vec![new], Vec::new())),
        ("before request keys", View::counted(vec![old], Vec::new())),
    ];
    for want in &wants {
        for (name, view) in &views {
            check(view, &all, want, &format!("seed {seed} {name}"));
        }
    }
}

#[test]
fn request_keys_are_read_back_as_written() {
    let mut rng = Rng::new(7);
    let dir = tempfile::tempdir().unwrap();
    let all = records(&mut rng, GROUP_ROWS + 10);
    let new = segment(dir.path(), &all, true);
    let old = segment(dir.path(), &all, false);
    for g in 0..2 {
        let keys = new
            .read_request_keys(g, &[(0, GROUP_ROWS)])
            .unwrap()
            .unwrap();
        let want: Vec<Option<[u8; 2]>> = all[g * GROUP_ROWS..]
            .iter()
            .take(GROUP_ROWS)
            .map(|(_, r)| {
                r.request_id
                    .as_deref()
                    .map(|id| request_fingerprint(key_hash(id.as_bytes())))
            })
            .collect();
        assert_eq!(keys, want);
        // Rows of some blocks: the others are not read.
        let ranges = [(5, 10), (BLOCK_ROWS, 2 * BLOCK_ROWS)];
        let some = new.read_request_keys(g, &ranges).unwrap().unwrap();
        for (row, key) in some.iter().enumerate() {
            let inside = ranges.iter().any(|&(a, b)| a <= row && row < b);
            assert_eq!(
                *key,
                if inside {
                    want.get(row).copied().flatten()
                } else {
                    None
                }
            );
        }
        assert!(old.read_request_keys(g, &[(0, 1)]).unwrap().is_none());
    }
}
