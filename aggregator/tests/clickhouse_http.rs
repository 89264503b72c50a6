//! The HTTP contract (`common/contract.rs`) on the ClickHouse store: one private
//! ClickHouse server per check, started by the check (Debian's `clickhouse-server`).

mod common;

use common::clickhouse::{available, pairs, ClickHouse};
use common::contract;

/// Runs one contract check against a fresh server.
macro_rules! on_clickhouse {
    ($($name:ident),* $(,)?) => {$(
        #[actix_rt::test]
        async fn $name() {
            if !available() {
                return;
            }
            let dir = tempfile::tempdir().unwrap();
            let ch = ClickHouse::start(&dir.path().join("clickhouse")).await;
            let env = ch.env("contract");
            contract::$name(&pairs(&env)).await;
        }
    )*};
}

on_clickhouse!(
    endpoints_answer_in_the_contract_shapes,
    a_repeated_batch_is_stored_once,
    bad_input_is_refused_and_changes_nothing,
    a_configured_token_guards_writes_clears_and_queries,
    retention_bounds_the_store_by_count_and_age,
    healthcheck_and_configuration_errors,
    the_openapi_description_is_served_and_its_paths_answer,
);

/// A read past `QUERY_TIMEOUT` answers 503 naming the limit, and ClickHouse stops it
/// (`max_execution_time`): it leaves the server's process list, and the aggregator
/// answers the next query.
#[actix_rt::test]
async fn a_query_past_its_deadline_answers_503_and_is_stopped() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(&dir.path().join("clickhouse")).await;
    let mut env = ch.env("deadline");
    env.push(("QUERY_TIMEOUT", "500ms".to_owned()));
    let agg = common::Aggregator::start(&dir.path().join("agg"), &pairs(&env)).await;
    // Two million records, written by ClickHouse itself (the aggregator made the table).
    ch.sql(
        "INSERT INTO deadline.logs SELECT 1765000000000000 + number * 1000 AS ts, ts * 1024 AS id, \
         toUInt64(9223372036854775807 - id) AS ver, concat('e:', toString(number)) AS dedup_key, \
         toString(number) AS event_id, 'svc' AS service, 'INFO' AS level, NULL AS request_id, \
         concat('request ', toString(number), ' handled in ', toString(number % 97), ' ms') AS message, \
         concat('{\"message\":\"', message, '\"}') AS body FROM numbers(2000000)",
    )
    .await;
    let (status, answer) = common::get(&agg.url("/logs?q=handled+in+42+ms"), &[]).await;
    assert_eq!(status.as_u16(), 503, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("QUERY_TIMEOUT"),
        "{answer}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let running = ch
            .sql("SELECT count() FROM system.processes WHERE query LIKE '%lowerUTF8(message)%' AND query NOT LIKE '%system.processes%'")
            .await;
        if running.trim() == "0" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the query still runs");
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A narrow query (one second of the two thousand) is answered. Within the same
    // deadline: on a loaded machine one attempt may pass it too, so a 503 is asked
    // again (the point is that the server is not held by the stopped query).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        let (status, page) = common::get(
            &agg.url("/logs?limit=1&since=2025-12-06T05:46:40Z&until=2025-12-06T05:46:41Z"),
            &[],
        )
        .await;
        if status.as_u16() == 200 {
            break page;
        }
        assert_eq!(status.as_u16(), 503, "{page}");
        assert!(
            std::time::Instant::now() < deadline,
            "never answered: {page}"
        );
    };
    assert_eq!(page["total"], 1000);
}
