//! `GET /loki/api/v1/tail` over a real WebSocket against the real binary.
//!
//! - `a_pushed_entry_reaches_the_tail`: the look-back first, then each pushed entry that
//!   matches, none twice, in Loki's frame shape; the time from the push's
//!   acknowledgement to the frame is printed (its target is under a second).

mod common;

use std::time::{Duration, Instant};

use awc::ws::Frame;
use common::loki::{encode, json_push, send};
use common::Aggregator;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Waits for the next text frame, up to `deadline`.
async fn next_frame(
    ws: &mut (impl futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>> + Unpin),
    deadline: Instant,
) -> Value {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, ws.next())
            .await
            .expect("a frame before the deadline")
            .expect("the socket is open")
            .expect("a valid frame");
        if let Frame::Text(bytes) = frame {
            return serde_json::from_slice(&bytes).expect("JSON frame");
        }
    }
}

#[actix_rt::test]
async fn a_pushed_entry_reaches_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let agg = Aggregator::start(dir.path(), &[("AGGREGATOR_TOKEN", "t0k")]).await;
    let push = agg.url("/loki/api/v1/push");
    let auth = ("Authorization", "Bearer t0k");
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let old = json_push(&[(
        json!({"job": "tailme"}),
        &[(now - 1_000_000_000, "before the tail", &[])],
    )]);
    assert_eq!(send(&push, &[JSON, auth], old.into_bytes()).await.0, 204);

    // Without the token: refused before the upgrade.
    let url = format!(
        "{}?query={}&limit=10",
        agg.url("/loki/api/v1/tail").replace("http", "ws"),
        encode(r#"{job="tailme"} != "skip""#)
    );
    let refused = awc::Client::new().ws(&url).connect().await;
    assert!(refused.is_err(), "a tail without the token must be refused");

    let (_, mut ws) = awc::Client::new()
        .ws(&url)
        .header("Authorization", "Bearer t0k")
        .connect()
        .await
        .expect("tail opened");
    let first = next_frame(&mut ws, Instant::now() + Duration::from_secs(10)).await;
    assert_eq!(
        first,
        json!({"streams": [{"stream": {"job": "tailme"}, "values": [[(now - 1_000_000_000).to_string(), "before the tail"]]}], "dropped_entries": null})
    );

    for i in 0..3 {
        let ts = now + i;
        let body = json_push(&[
            (
                json!({"job": "tailme"}),
                &[
                    (ts, "skip this one", &[]),
                    (ts, &format!("live {i}"), &[("trace_id", "t")]),
                ],
            ),
            (json!({"job": "other"}), &[(ts, "not this stream", &[])]),
        ]);
        let (status, _) = send(&push, &[JSON, auth], body.into_bytes()).await;
        assert_eq!(status, 204);
        let acknowledged = Instant::now();
        let frame = next_frame(&mut ws, Instant::now() + Duration::from_secs(10)).await;
        println!(
            "entry {i} reached the tail {:?} after its push was acknowledged",
            acknowledged.elapsed()
        );
        assert_eq!(
            frame["streams"],
            json!([{"stream": {"job": "tailme", "trace_id": "t"}, "values": [[ts.to_string(), format!("live {i}")]]}])
        );
    }
    ws.close().await.unwrap();
}

#[actix_rt::test]
async fn an_open_tail_does_not_hold_up_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = Aggregator::start(dir.path(), &[("SHUTDOWN_GRACE", "60s")]).await;
    let url = format!(
        "{}?query=%7Bjob%3D%22t%22%7D",
        agg.url("/loki/api/v1/tail").replace("http://", "ws://")
    );
    let (_, mut ws) = awc::Client::new()
        .ws(&url)
        .connect()
        .await
        .expect("tail opened");
    let stopping = Instant::now();
    agg.process.signal(libc::SIGTERM);
    // The tail is closed with "going away", then the process exits.
    let closed = loop {
        let left = Duration::from_secs(20).saturating_sub(stopping.elapsed());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Frame::Close(reason)))) => break reason,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    let reason = closed.expect("a close reason");
    assert_eq!(reason.code, awc::ws::CloseCode::Away);
    let status = agg
        .process
        .wait_timeout(Duration::from_secs(20))
        .expect("stops after SIGTERM");
    println!(
        "stopped {:?} after SIGTERM with a Loki tail open",
        stopping.elapsed()
    );
    assert!(status.success(), "{status:?}");
    assert!(stopping.elapsed() < Duration::from_secs(10));
}
