//! The protobuf messages of Loki's push API (`logproto.PushRequest`), written from the
//! public schema (`pkg/push/push.proto`) with `prost`'s derive, so no `protoc` is needed.
//!
//! Strings are read as bytes: a client may send a line that is not valid UTF-8, and it is
//! stored with the invalid bytes replaced (as the sidecar does) instead of refusing the
//! whole request. Field numbers and wire types are the schema's; the test in
//! `tests/loki_push.rs` checks them against bytes written by hand.

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
    /// `format` (`loki` or `otlp`): informational only.
    #[prost(bytes = "vec", tag = "2")]
    pub format: Vec<u8>,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// The labels in Prometheus text form: `{job="api", env="prod"}`.
    #[prost(bytes = "vec", tag = "1")]
    pub labels: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// The client's hash of the labels; not used.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "vec", tag = "2")]
    pub line: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
    /// Only Loki's own query answers carry it; ignored on push.
    #[prost(message, repeated, tag = "4")]
    pub parsed: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}
