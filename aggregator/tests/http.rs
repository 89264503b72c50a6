//! The HTTP contract (`common/contract.rs`) on the default store.

mod common;

use common::contract;

#[actix_rt::test]
async fn endpoints_answer_in_the_contract_shapes() {
    contract::endpoints_answer_in_the_contract_shapes(&[]).await;
}

#[actix_rt::test]
async fn a_repeated_batch_is_stored_once() {
    contract::a_repeated_batch_is_stored_once(&[]).await;
}

#[actix_rt::test]
async fn bad_input_is_refused_and_changes_nothing() {
    contract::bad_input_is_refused_and_changes_nothing(&[]).await;
}

#[actix_rt::test]
async fn a_configured_token_guards_writes_clears_and_queries() {
    contract::a_configured_token_guards_writes_clears_and_queries(&[]).await;
}

#[actix_rt::test]
async fn retention_bounds_the_store_by_count_and_age() {
    contract::retention_bounds_the_store_by_count_and_age(&[]).await;
}

#[actix_rt::test]
async fn healthcheck_and_configuration_errors() {
    contract::healthcheck_and_configuration_errors(&[]).await;
}

#[actix_rt::test]
async fn the_openapi_description_is_served_and_its_paths_answer() {
    contract::the_openapi_description_is_served_and_its_paths_answer(&[]).await;
}
