//! End-to-end through the real `log-aggregator` binary: the same lines, each exactly once,
//! across a `kill -9` of the aggregator and then of the sidecar.
//!
//! - `through_the_real_aggregator_with_kills_on_both_sides`

mod support;

use support::{append_lines, Receiver, Rig, TOKEN};

#[actix_rt::test]
async fn through_the_real_aggregator_with_kills_on_both_sides() {
    let mut rig = Rig::with(Receiver::Aggregator);
    append_lines(&rig.log, 0..5000);
    // The durations by their old names (milliseconds), still read (deprecated).
    let sidecar_env = [
        ("AGGREGATOR_TOKEN", TOKEN),
        ("GZIP", "true"),
        ("RETRY_INITIAL_MS", "20"),
        ("RETRY_MAX_MS", "200"),
        ("CHECKPOINT_INTERVAL_MS", "50"),
    ];
    rig.start_sidecar(&sidecar_env).await;
    rig.wait_unique(5000).await;

    // The aggregator dies; the sidecar keeps the lines and retries until it is back.
    rig.kill_receiver();
    append_lines(&rig.log, 5000..8000);
    rig.wait_metric("logging_sidecar_batch_failures_total{error_type=\"connection\"}")
        .await;
    rig.restart_receiver().await;
    rig.wait_unique(8000).await;

    // Then the sidecar dies mid-stream and comes back on its checkpoint.
    append_lines(&rig.log, 8000..20_000);
    rig.wait_unique(8001).await;
    rig.kill_sidecar();
    append_lines(&rig.log, 20_000..21_000);
    rig.start_sidecar(&sidecar_env).await;
    rig.wait_unique(21_000).await;
    rig.assert_exactly_once(0..21_000).await;
}
