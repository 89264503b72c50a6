//! The records the aggregator benchmarks send, shared by `aggregator_bench` and
//! `clickhouse_bench` so that their figures compare: a service's request log as a
//! logging sidecar forwards it, about 330 bytes, with a structured `event_id`.

use std::fmt::Write as _;

use chrono::{SecondsFormat, TimeZone, Utc};

pub const SERVICES: [&str; 3] = ["user-service", "product-service", "order-service"];
const PATHS: [&str; 3] = ["/users", "/products", "/orders"];
const WORDS: [&str; 8] = [
    "cache hit",
    "cache miss",
    "db query",
    "served",
    "validated",
    "retry scheduled",
    "slow upstream",
    "ok",
];

pub fn mix(i: u64, salt: u64) -> u64 {
    let mut x = i.wrapping_add(salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

/// A request id like the services' (a random UUID), the same for the same `i`.
pub fn request_id(i: usize) -> String {
    let (a, b) = (mix(i as u64, 1), mix(i as u64, 2));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// Record `i`, as a logging sidecar forwards a service's request log: about 330 bytes.
pub fn record(i: usize, start_us: i64, offsets: &mut [u64; 3]) -> String {
    let s = i % SERVICES.len();
    let status = if i % 50 == 0 { 500 } else { 200 };
    let level = match i % 50 {
        0 => "ERROR",
        1..=4 => "WARN",
        _ => "INFO",
    };
    let extra = if i % 100 == 7 {
        "timeout"
    } else if i % 200 == 9 {
        "connection refused"
    } else {
        WORDS[i % WORDS.len()]
    };
    let at = |us: i64| {
        Utc.timestamp_micros(us)
            .single()
            .unwrap_or_else(Utc::now)
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    };
    let ts_us = start_us + i as i64 * 100;
    let path = format!("{}/{}", PATHS[s], i % 997);
    // Written out directly (not through a JSON value): the client shares the two cores
    // with the server, so it should cost as little as it can.
    let mut line = format!(
        r#"{{"timestamp":"{}","service":"{}","level":"{level}","message":"GET {path} {status} {}ms {extra}","method":"GET","path":"{path}","status":{status},"duration_ms":{}.{:02},"request_id":"{}","sidecar_timestamp":"{}","sidecar_forwarded_by":"{}-logging-sidecar","environment":"bench""#,
        at(ts_us),
        SERVICES[s],
        i % 89,
        i % 89,
        i % 100,
        request_id(i),
        at(ts_us + 900),
        SERVICES[s],
    );
    // The sidecar's structured id: the byte range of the line in its file.
    let len = line.len() as u64 + 60;
    let _ = write!(
        line,
        r#","event_id":"{}:{:016x}:{:x}-{:x}"}}"#,
        SERVICES[s],
        mix(s as u64, 3),
        offsets[s],
        offsets[s] + len
    );
    offsets[s] += len;
    line
}
