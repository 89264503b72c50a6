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
