//! The embedded store against a model, under a seeded random schedule of operations
//! and crashes.
//!
//! Each step is one of: a batch (structured ids, some re-sent; opaque ids, some
//! repeated; no id), a flush, a crash in the middle of a flush (the `.tmp` written,
//! not put in place), a compaction, a crash in the middle of one (the merged segment in
//! place, its inputs not yet deleted), retention by age and count run to the end, a
//! crash in the middle of a retention rewrite, a clean reopen, a clear. After each
//! step, random queries (filters, text, request ids, times, both orders, small pages
//! followed by their cursors) must give exactly what the model gives. The seed is
//! printed; `EMBEDDED_SEED=<n>` replays one schedule.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::engine::{Engine, Limits, RetentionStep};
use super::filter::{After, Filter};
use super::flusher;
use super::memory::SharedView;
use super::recover;
use super::search;
use super::segment::{self, SEGMENT_DIR};
use crate::config::SyncMode;
use crate::query::{Cursor, LogParams, LogQuery, Order};
use crate::record::{self, Received, Record};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const GROUP_ROWS: usize = 16;
const T0: i64 = 1_700_000_000_000_000;
const WORDS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "Epsilon", "zeta"];

fn open(dir: &Path, view: &SharedView) -> Engine {
    let (recovered, problems) = recover::recover(dir).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let limits = Limits {
        flush_rows: usize::MAX,
        flush_bytes: usize::MAX,
        flush_age: Duration::from_secs(3600),
    };
    Engine::new(dir, SyncMode::Normal, limits, recovered, view.clone()).unwrap()
}

/// Ids a sidecar would send: per stream, consecutive intervals, some re-sent.
struct Streams {
    next: [u64; 3],
    sent: Vec<String>,
}

fn record(rng: &mut Rng, streams: &mut Streams) -> Record {
    let event_id = match rng.below(10) {
        0..=3 => {
            let s = rng.below(3) as usize;
            if rng.below(5) == 0 && !streams.sent.is_empty() {
                let i = rng.below(streams.sent.len() as u64) as usize;
                Some(streams.sent[i].clone())
            } else {
                let len = 1 + rng.below(300);
                let id = format!(
                    "svc:{:016x}:{:x}-{:x}",
                    s + 1,
                    streams.next[s],
                    streams.next[s] + len
                );
                streams.next[s] += len;
                streams.sent.push(id.clone());
                Some(id)
            }
        }
        4..=6 => Some(format!("op-{}", rng.below(400))),
        _ => None,
    };
    let words: Vec<&str> = (0..3).map(|_| rng.pick(&WORDS)).collect();
    let mut obj = serde_json::json!({
        "timestamp": chrono::DateTime::from_timestamp_micros(T0 + rng.below(300) as i64 * 1_000_000)
            .unwrap()
            .to_rfc3339(),
        "message": words.join(" "),
        "request_id": format!("r{}", rng.below(25)),
        "n": rng.next() % 1000,
    });
    if rng.below(6) != 0 {
        obj["service"] = format!("s{}", rng.below(3)).into();
    }
    if rng.below(6) != 0 {
        obj["level"] = rng.pick(&["info", "ERROR"]).into();
    }
    if let Some(id) = event_id {
        obj["event_id"] = id.into();
    }
    record::parse(&obj.to_string(), &Received::now()).unwrap()
}

#[derive(Default, Clone)]
struct Model {
    records: Vec<(i64, Record)>,
}

impl Model {
    fn ids(&self) -> HashSet<&str> {
        self.records
            .iter()
            .filter_map(|(_, r)| r.event_id.as_deref())
            .collect()
    }

    /// Retention: older than `min` first, then the oldest by arrival beyond `max`.
    fn retain(&mut self, max: u64, min: i64) {
        self.records.retain(|(_, r)| r.ts_us >= min);
        let excess = self.records.len().saturating_sub(max as usize);
        self.records.drain(..excess);
    }

    fn page(&self, q: &LogQuery) -> (u64, Vec<(i64, i64, String)>) {
        let f = Filter::new(q);
        let after = After {
            order: q.order,
            at: q.cursor.map(|c| (c.ts_us, c.id)),
        };
        let mut scratch = Vec::new();
        let matching: Vec<&(i64, Record)> = self
            .records
            .iter()
            .filter(|(_, r)| {
                f.time_ok(r.ts_us)
                    && f.labels_ok(r.service.as_deref(), r.level.as_deref())
                    && f.request_ok(r.request_id.as_deref())
                    && f.text_ok(r.message.as_deref(), &mut scratch)
            })
            .collect();
        let mut rows: Vec<(i64, i64, String)> = matching
            .iter()
            .filter(|(id, r)| after.admits((r.ts_us, *id)))
            .map(|(id, r)| (r.ts_us, *id, r.body.clone()))
            .collect();
        rows.sort();
        if q.order == Order::Desc {
            rows.reverse();
        }
        rows.truncate(q.limit);
        (matching.len() as u64, rows)
    }
}

fn random_query(rng: &mut Rng) -> LogQuery {
    let mut pairs: Vec<String> = Vec::new();
    if rng.below(3) == 0 {
        pairs.push(format!("service=s{}", rng.below(4)));
    }
    if rng.below(3) == 0 {
        pairs.push(format!("level={}", rng.pick(&["info", "error", "warn"])));
    }
    if rng.below(4) == 0 {
        pairs.push(format!("request_id=r{}", rng.below(30)));
    }
    if rng.below(4) == 0 {
        let t = chrono::DateTime::from_timestamp_micros(T0 + rng.below(300) as i64 * 1_000_000)
            .unwrap()
            .to_rfc3339()
            .replace('+', "%2B");
        pairs.push(format!("{}={t}", rng.pick(&["since", "until"])));
    }
    if rng.below(3) == 0 {
        pairs.push(format!(
            "q={}",
            rng.pick(&["alpha", "beta%20gamma", "eps*", "ZETA", "nothing"])
        ));
    }
    pairs.push(format!("order={}", rng.pick(&["asc", "desc"])));
    pairs.push(format!("limit={}", rng.pick(&["1", "5", "40", "100"])));
    let params = actix_web::web::Query::<LogParams>::from_query(&pairs.join("&"))
        .unwrap()
        .into_inner();
    params.to_query(100, 1000).unwrap()
}

/// Pages through `q` with cursors on both sides and compares every page (the first
/// `PAGES`, which is enough to cross segments and row groups).
fn check_query(view: &SharedView, model: &Model, mut q: LogQuery, seed: u64, step: usize) {
    const PAGES: usize = 6;
    for _ in 0..PAGES {
        let deadline = Instant::now() + Duration::from_secs(60);
        let page = search::query(&view.get(), &q, deadline, Duration::from_secs(60)).unwrap();
        let (total, want) = model.page(&q);
        let got_bodies: Vec<&str> = page.logs.iter().map(String::as_str).collect();
        let want_bodies: Vec<&str> = want.iter().map(|(_, _, b)| b.as_str()).collect();
        assert_eq!(
            (page.total, &got_bodies),
            (total, &want_bodies),
            "seed {seed} step {step}: {q:?}"
        );
        match page.last {
            None => {
                let (_, rest) = model.page(&LogQuery {
                    cursor: want.last().map(|(ts, id, _)| Cursor {
                        order: q.order,
                        ts_us: *ts,
                        id: *id,
                    }),
                    ..q.clone()
                });
                assert!(
                    want.is_empty() || rest.is_empty(),
                    "seed {seed} step {step}: more after the last page"
                );
                return;
            }
            Some((ts_us, id)) => {
                assert_eq!(want.last().map(|(t, i, _)| (*t, *i)), Some((ts_us, id)));
                q.cursor = Some(Cursor {
                    order: q.order,
                    ts_us,
                    id,
                });
            }
        }
    }
}

/// The ids of every stored record.
fn all_ids(view: &SharedView) -> HashSet<i64> {
    let v = view.get();
    let mut ids: HashSet<i64> = v
        .memory
        .iter()
        .flat_map(|c| c.rows.iter().map(|(id, _)| *id))
        .collect();
    for seg in &v.segments {
        for g in 0..seg.index.groups.len() {
            ids.extend(seg.read_i64(g, segment::COL_ID).unwrap());
        }
    }
    ids
}

fn check_counts(view: &SharedView, model: &Model, seed: u64, step: usize) {
    let c = search::counts(&view.get());
    assert_eq!(
        c.total,
        model.records.len() as u64,
        "seed {seed} step {step}"
    );
    assert_eq!(
        view.get().stored,
        model.records.len() as u64,
        "seed {seed} step {step}"
    );
}

/// Runs a retention pass to its end, with the flusher's work done inline.
fn retain_fully(engine: &mut Engine, dir: &Path, max: u64, min: i64) {
    for _ in 0..100 {
        match engine.retain(Some(max), Some(min)).1 {
            RetentionStep::Nothing => return,
            RetentionStep::Flush => flush(engine, dir),
            RetentionStep::Rewrite {
                segment,
                drop_oldest,
                min_ts_us,
            } => {
                let owner = segment.first_id;
                let r =
                    flusher::rewrite(dir, &segment, drop_oldest, min_ts_us, GROUP_ROWS).unwrap();
                engine.install_rewrite(owner, r).unwrap();
            }
        }
    }
    panic!("retention did not finish");
}

fn flush(engine: &mut Engine, dir: &Path) {
    if let Some(sealed) = engine.seal_if_due(true).unwrap() {
        let tmp = flusher::write_sealed(dir, &sealed, GROUP_ROWS).unwrap();
        engine
            .install_flush(sealed.owner, sealed.epoch, &tmp)
            .unwrap();
    }
}

fn run(seed: u64, steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let view = SharedView::default();
    let mut engine = open(dir, &view);
    let mut model = Model::default();
    let mut rng = Rng(seed | 1);
    let mut streams = Streams {
        next: [0; 3],
        sent: Vec::new(),
    };
    for step in 0..steps {
        let op = rng.below(20);
        // Shown with a failure, to follow the schedule.
        eprintln!("step {step}: op {op}, {} records", model.records.len());
        match op {
            0..=8 => {
                let batches: Vec<Vec<Record>> = (0..1 + rng.below(3))
                    .map(|_| {
                        (0..rng.below(40))
                            .map(|_| record(&mut rng, &mut streams))
                            .collect()
                    })
                    .collect();
                // What the model expects stored: ids not stored yet, first of the group.
                let mut seen: HashSet<String> =
                    model.ids().into_iter().map(str::to_owned).collect();
                let mut expect = Vec::new();
                for b in &batches {
                    let mut stored = 0;
                    for r in b {
                        if r.event_id
                            .as_ref()
                            .map_or(true, |id| seen.insert(id.clone()))
                        {
                            stored += 1;
                        }
                    }
                    expect.push(stored);
                }
                let c = engine.commit(batches, true).unwrap();
                let got: Vec<u64> = c.done.iter().map(|d| d.stored).collect();
                assert_eq!(got, expect, "seed {seed} step {step}");
                model
                    .records
                    .extend(c.records.into_iter().map(|c| (c.id, c.record)));
            }
            9 | 10 => flush(&mut engine, dir),
            11 => {
                // A crash while flushing: the segment is written, not in place.
                if let Some(sealed) = engine.seal_if_due(true).unwrap() {
                    flusher::write_sealed(dir, &sealed, GROUP_ROWS).unwrap();
                }
                drop(engine);
                engine = open(dir, &view);
            }
            12 | 13 => {
                if let Some(inputs) = engine.compaction_due(2, 10_000) {
                    let owners: Vec<i64> = inputs.iter().map(|s| s.first_id).collect();
                    let (tmp, last) = flusher::merge(dir, &inputs, GROUP_ROWS).unwrap();
                    if rng.below(2) == 0 {
                        engine.install_compaction(&owners, &tmp, last).unwrap();
                    } else {
                        // A crash after the merged segment is in place, before its
                        // inputs are deleted.
                        let name = segment::file_name(owners[0], last);
                        std::fs::rename(&tmp, dir.join(SEGMENT_DIR).join(name)).unwrap();
                        drop(engine);
                        engine = open(dir, &view);
                    }
                }
            }
            14 | 15 => {
                let max = model.records.len().saturating_sub(rng.below(30) as usize) as u64;
                let min = T0 + rng.below(40) as i64 * 1_000_000;
                retain_fully(&mut engine, dir, max, min);
                model.retain(max, min);
            }
            16 => {
                // A crash in the middle of a rewrite: the new segment renamed into place,
                // the old one not deleted. Either state is acceptable afterwards.
                let max = model
                    .records
                    .len()
                    .saturating_sub(1 + rng.below(10) as usize) as u64;
                if let (
                    _,
                    RetentionStep::Rewrite {
                        segment,
                        drop_oldest,
                        min_ts_us,
                    },
                ) = engine.retain(Some(max), None)
                {
                    if let Some(r) =
                        flusher::rewrite(dir, &segment, drop_oldest, min_ts_us, GROUP_ROWS).unwrap()
                    {
                        let name = segment::file_name(r.first, r.last);
                        std::fs::rename(&r.tmp, dir.join(SEGMENT_DIR).join(name)).unwrap();
                    }
                }
                drop(engine);
                engine = open(dir, &view);
                // Retention went part of the way: what is gone must be what it deletes.
                let mut after = model.clone();
                after.retain(max, i64::MIN);
                let present = all_ids(&view);
                let must: HashSet<i64> = after.records.iter().map(|(id, _)| *id).collect();
                assert!(
                    must.is_subset(&present),
                    "seed {seed} step {step}: retention lost a kept record"
                );
                model.records.retain(|(id, _)| present.contains(id));
                assert_eq!(
                    model.records.len(),
                    present.len(),
                    "seed {seed} step {step}"
                );
            }
            17 | 18 => {
                drop(engine);
                engine = open(dir, &view);
            }
            _ => {
                if rng.below(4) == 0 {
                    let n = engine.clear().unwrap();
                    assert_eq!(n, model.records.len() as u64, "seed {seed} step {step}");
                    model.records.clear();
                }
            }
        }
        check_counts(&view, &model, seed, step);
        for _ in 0..2 {
            let q = random_query(&mut rng);
            check_query(&view, &model, q, seed, step);
        }
    }
}

#[test]
fn the_store_matches_a_model_under_random_operations_and_crashes() {
    let seeds: Vec<u64> = match std::env::var("EMBEDDED_SEED") {
        Ok(s) => vec![s.parse().expect("EMBEDDED_SEED is a number")],
        Err(_) => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            (0..3).map(|i| base.wrapping_add(i * 7919)).collect()
        }
    };
    for seed in seeds {
        println!("EMBEDDED_SEED={seed}");
        let start = Instant::now();
        run(seed, 120);
        println!("EMBEDDED_SEED={seed} passed in {:?}", start.elapsed());
    }
}

/// The backend as the HTTP layer sees it: the feed, deadlines, health, clear, stop.
#[actix_rt::test]
async fn the_backend_feeds_commits_and_honours_deadlines() {
    use crate::store::{Backend, StoreError};

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let env: std::collections::HashMap<&str, &str> = [("DATA_DIR", data_dir.as_str())].into();
    let config = crate::config::AggregatorConfig::from_env(&env).unwrap();
    let registry = prometheus::Registry::new();
    let metrics = crate::metrics::Metrics::register(&registry).unwrap();
    let store = super::Embedded::start(&config, &metrics).unwrap();
    let mut feed = store.subscribe();
    let mut rng = Rng(99);
    let mut streams = Streams {
        next: [0; 3],
        sent: Vec::new(),
    };
    let batch: Vec<Record> = (0..20).map(|_| record(&mut rng, &mut streams)).collect();
    let done = store.ingest(batch.clone()).await.unwrap();
    let again = store.ingest(batch.clone()).await.unwrap();
    assert_eq!(again.stored + again.duplicates, 20);
    let fed = feed.recv().await.unwrap();
    assert_eq!(fed.len() as u64, done.stored);
    assert!(fed.windows(2).all(|w| w[0].id < w[1].id));
    let health = store.health();
    assert!(health.writable && health.running && health.problems.is_empty());
    assert_eq!(health.stored, done.stored + again.stored);
    let q = LogParams::default().to_query(100, 1000).unwrap();
    let past = Instant::now() - Duration::from_millis(1);
    assert!(matches!(
        store.query(q.clone(), past).await,
        Err(StoreError::Timeout(_))
    ));
    let soon = Instant::now() + Duration::from_secs(10);
    assert_eq!(store.query(q, soon).await.unwrap().total, health.stored);
    assert_eq!(store.count(soon).await.unwrap().total, health.stored);
    assert_eq!(store.clear().await.unwrap(), health.stored);
    store.stop();
    assert_eq!(
        store.ingest(batch).await,
        Err(StoreError::Unavailable("writer"))
    );
    assert!(!store.health().running);
}
