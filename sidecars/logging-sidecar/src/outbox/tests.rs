//! Unit tests of the outbox: limits, acknowledgement order, isolation, retries.

use super::*;
use crate::fingerprint::FileKey;
use crate::lines::Line;

const KEY: FileKey = FileKey {
    dev: 1,
    ino: 2,
    fingerprint: 0xf00,
};

fn limits(max_records: usize, max_bytes: usize) -> Limits {
    Limits {
        max_records,
        max_bytes,
        linger: Duration::from_millis(5),
        max_in_flight: 2,
        max_posts: 64,
        gzip: false,
    }
}

fn splicer() -> Arc<Splicer> {
    Arc::new(Splicer::new("svc", "svc-logging-sidecar", "test"))
}

fn outbox(l: Limits) -> Outbox {
    Outbox::new(
        l,
        splicer(),
        Backoff::new(Duration::from_millis(10), Duration::from_millis(100), 7),
    )
}

/// A piece of enriched records, one per line of `lines`, starting at file `offset`.
fn piece(lines: &[&str], offset: u64) -> Piece {
    let mut data = Vec::new();
    let mut spans = Vec::new();
    for l in lines {
        spans.push(Line {
            start: data.len() as u32,
            len: l.len() as u32,
            offset: offset + data.len() as u64,
            truncated: false,
        });
        data.extend_from_slice(l.as_bytes());
        data.push(b'\n');
    }
    let mut body = Vec::new();
    let t = splicer().enrich(0xf00, &data, &spans, "t", &mut body);
    Piece {
        body,
        records: t.records,
        ack: Some(Ack {
            key: KEY,
            stream: 1,
            offset: offset + data.len() as u64,
        }),
        source: "/logs/app.log".into(),
    }
}

fn records_of(body: &[u8]) -> Vec<serde_json::Value> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[test]
fn limits_hold_and_a_full_outbox_gives_pieces_back() {
    let now = Instant::now();
    let mut o = outbox(limits(3, 1 << 20));
    let mut offset = 0;
    let mut given_back = None;
    for _ in 0..10 {
        let p = piece(&[r#"{"a":1}"#, r#"{"a":2}"#], offset);
        offset += 16;
        if let Err(p) = o.offer(p, now) {
            given_back = Some(p);
            break;
        }
    }
    // Two closed batches of 2 records (2 + 2 > 3), and the third open one is full
    // enough that the next piece cannot go in: given back.
    assert!(given_back.is_some());
    assert_eq!(o.in_flight(), 2);
    let mut sizes = Vec::new();
    while let Some((_, body, _)) = o.next_send() {
        sizes.push(records_of(&body).len());
    }
    assert_eq!(sizes, [2, 2]);
}

#[test]
fn acks_wait_for_every_part_and_for_earlier_batches() {
    let now = Instant::now();
    let mut o = outbox(limits(2, 1 << 20));
    o.offer(piece(&[r#"{"a":1}"#, r#"{"a":2}"#], 0), now)
        .unwrap();
    o.offer(piece(&[r#"{"b":1}"#], 16), now).unwrap();
    assert_eq!(o.tick(now + Duration::from_secs(1), false), None);
    let (first, _, _) = o.next_send().unwrap();
    let (second, _, _) = o.next_send().unwrap();
    // The second batch is stored first: held back.
    match o.answered(second, Answer::Accepted { duplicates: 0 }, now) {
        Verdict::Stored { released, .. } => assert!(released.is_empty()),
        v => panic!("{v:?}"),
    }
    // The first is refused for its content: split, then both halves stored.
    let v = o.answered(
        first,
        Answer::Refused {
            status: 400,
            detail: String::new(),
        },
        now,
    );
    assert_eq!(
        v,
        Verdict::Split {
            records: 2,
            status: 400
        }
    );
    let (a, _, _) = o.next_send().unwrap();
    let (b, _, _) = o.next_send().unwrap();
    assert!(matches!(
        o.answered(a, Answer::Accepted { duplicates: 0 }, now),
        Verdict::Stored { ref released, .. } if released.is_empty()
    ));
    match o.answered(b, Answer::Accepted { duplicates: 0 }, now) {
        Verdict::Stored { released, .. } => {
            assert_eq!(
                released.iter().map(|a| a.offset).collect::<Vec<_>>(),
                [16, 24]
            );
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(o.outstanding(), 0);
}

/// A fake aggregator: refuses a body (400) when it holds a record whose `poison`
/// field is true, otherwise stores every record.
fn run_to_completion(o: &mut Outbox, now: Instant) -> (Vec<serde_json::Value>, Vec<Verdict>) {
    let mut stored = Vec::new();
    let mut verdicts = Vec::new();
    for _ in 0..10_000 {
        let Some((part, body, _)) = o.next_send() else {
            break;
        };
        let records = records_of(&body);
        let answer = if records.iter().any(|r| r["poison"] == true) {
            Answer::Refused {
                status: 400,
                detail: "no".into(),
            }
        } else {
            stored.extend(records);
            Answer::Accepted { duplicates: 0 }
        };
        verdicts.push(o.answered(part, answer, now));
    }
    (stored, verdicts)
}

#[test]
fn refused_records_are_isolated_and_sent_as_messages_with_their_ids() {
    let now = Instant::now();
    let mut o = outbox(limits(1000, 1 << 20));
    let lines: Vec<String> = (0..100)
        .map(|i| {
            if i == 17 || i == 64 {
                format!(r#"{{"n":{i},"poison":true}}"#)
            } else {
                format!(r#"{{"n":{i}}}"#)
            }
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let p = piece(&refs, 0);
    let ids: Vec<_> = records_of(&p.body)
        .iter()
        .map(|r| r["event_id"].clone())
        .collect();
    let end = p.ack.unwrap().offset;
    o.offer(p, now).unwrap();
    o.tick(now, true);
    let (stored, verdicts) = run_to_completion(&mut o, now);
    // Every record stored exactly once, the two refused ones as messages.
    assert_eq!(stored.len(), 100);
    let mut seen: Vec<_> = stored.iter().map(|r| r["event_id"].clone()).collect();
    seen.sort_by_key(|v| v.to_string());
    let mut want = ids.clone();
    want.sort_by_key(|v| v.to_string());
    assert_eq!(seen, want);
    let isolated: Vec<_> = verdicts
        .iter()
        .filter_map(|v| match v {
            Verdict::Isolated {
                event_id,
                source,
                offset,
                ..
            } => Some((event_id.clone(), source.clone(), *offset)),
            _ => None,
        })
        .collect();
    assert_eq!(isolated.len(), 2);
    assert_eq!(isolated[0].0, ids[17].as_str().unwrap());
    assert_eq!(isolated[0].1.as_deref(), Some("/logs/app.log"));
    let at_17: u64 = lines[..17].iter().map(|l| l.len() as u64 + 1).sum();
    assert_eq!(isolated[0].2, Some(at_17));
    let messages: Vec<_> = stored
        .iter()
        .filter(|r| r["sidecar_not_json"] == true)
        .collect();
    assert_eq!(messages.len(), 2);
    assert!(messages[0]["message"]
        .as_str()
        .unwrap()
        .contains("\"poison\":true"));
    // About 2·log2(n) extra POSTs per refused record, not one per record.
    let posts = verdicts.len();
    assert!(posts < 40, "{posts} POSTs");
    // The file position is released once all is stored.
    let released: Vec<u64> = verdicts
        .iter()
        .flat_map(|v| match v {
            Verdict::Stored { released, .. } => released.iter().map(|a| a.offset).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(released, [end]);
    assert_eq!(o.outstanding(), 0);
}

#[test]
fn request_level_refusals_and_failures_are_retried_not_split() {
    let now = Instant::now();
    for answer in [
        Answer::Refused {
            status: 401,
            detail: String::new(),
        },
        Answer::Refused {
            status: 429,
            detail: String::new(),
        },
        Answer::Refused {
            status: 503,
            detail: String::new(),
        },
        Answer::Failed {
            error: "refused".into(),
        },
    ] {
        let mut o = outbox(limits(1000, 1 << 20));
        o.offer(piece(&[r#"{"a":1}"#, r#"{"a":2}"#], 0), now)
            .unwrap();
        o.tick(now, true);
        let (part, _, _) = o.next_send().unwrap();
        let v = o.answered(part, answer.clone(), now);
        let Verdict::Retry { part: again, .. } = v else {
            panic!("{answer:?}: {v:?}");
        };
        assert!(o.next_send().is_none(), "waits for its delay");
        o.retry_due(again);
        let (_, _, retry) = o.next_send().unwrap();
        assert!(retry);
    }
}

#[test]
fn a_rewritten_record_still_refused_is_retried_with_backoff() {
    let now = Instant::now();
    let mut o = outbox(limits(1000, 1 << 20));
    o.offer(piece(&[r#"{"a":1}"#], 0), now).unwrap();
    o.tick(now, true);
    let refused = || Answer::Refused {
        status: 400,
        detail: String::new(),
    };
    let (part, _, _) = o.next_send().unwrap();
    assert!(matches!(
        o.answered(part, refused(), now),
        Verdict::Isolated { .. }
    ));
    let (part, _, _) = o.next_send().unwrap();
    assert!(matches!(
        o.answered(part, refused(), now),
        Verdict::Retry { .. }
    ));
    assert_eq!(o.outstanding(), 1);
}

#[test]
fn a_batch_of_skipped_bytes_only_releases_its_position() {
    let now = Instant::now();
    let mut o = outbox(limits(10, 1 << 20));
    let p = Piece {
        body: Vec::new(),
        records: 0,
        ack: Some(Ack {
            key: KEY,
            stream: 1,
            offset: 99,
        }),
        source: "x".into(),
    };
    o.offer(p, now).unwrap();
    o.tick(now, true);
    assert!(o.next_send().is_none());
    assert_eq!(o.take_released()[0].offset, 99);
}

#[test]
fn concurrent_posts_are_capped() {
    let now = Instant::now();
    let mut l = limits(1, 1 << 20);
    l.max_posts = 1;
    let mut o = outbox(l);
    o.offer(piece(&[r#"{"a":1}"#], 0), now).unwrap();
    o.offer(piece(&[r#"{"a":2}"#], 8), now).unwrap();
    o.tick(now, true);
    assert!(o.next_send().is_some());
    assert!(o.next_send().is_none());
}
