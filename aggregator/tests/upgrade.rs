//! Upgrade without loss: a data directory of the SQLite store is imported by the
//! embedded store on its first start.
//!
//! - `a_sqlite_store_is_imported_with_every_record`: records go into `STORE=sqlite`;
//!   the default store started on the same directory serves the very same records (same
//!   bodies, order, counts, text search, dedup of their `event_id`s) and renames
//!   `logs.db` to `logs.db.imported`.

mod common;

use std::time::Duration;

use awc::http::StatusCode;
use common::{all_logs, get, post_ndjson, records, Aggregator};

#[actix_rt::test]
async fn a_sqlite_store_is_imported_with_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = Aggregator::start(dir.path(), &[("STORE", "sqlite")]).await;
    let mut sent = Vec::new();
    for b in 0..3 {
        let batch = records(&format!("up{b}"), &format!("svc-{b}"), 70);
        let (status, body) = post_ndjson(&old.url("/logs"), &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        sent.push(batch);
    }
    let before = all_logs(&old.base, &[]).await;
    let (_, count_before) = get(&old.url("/logs/count"), &[]).await;
    old.process.signal(libc::SIGTERM);
    assert!(old.process.wait_timeout(Duration::from_secs(30)).is_some());

    let new = Aggregator::start(dir.path(), &[]).await;
    assert!(
        new.process.stderr().contains("imported"),
        "{}",
        new.process.stderr()
    );
    let store = dir.path().join("store");
    assert!(!store.join("logs.db").exists());
    assert!(store.join("logs.db.imported").exists());
    assert_eq!(all_logs(&new.base, &[]).await, before);
    let (_, count_after) = get(&new.url("/logs/count"), &[]).await;
    assert_eq!(count_after, count_before);
    let (_, page) = get(
        &new.url("/logs?q=handled%20for%20up1&request_id=up1-req-2"),
        &[],
    )
    .await;
    assert_eq!(page["total"], 14, "{page}");
    for batch in &sent {
        let (_, body) = post_ndjson(&new.url("/logs"), batch).await;
        assert_eq!(body["duplicates"], 70, "{body}");
    }
}
