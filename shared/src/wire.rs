//! The JSON bodies that cross the network between the project's binaries.
//!
//! Field names keep the seed's, so scripts written against the original keep working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /logs` answer: sent only once the records are durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResponse {
    pub status: String,
    pub accepted: u64,
    pub duplicates: u64,
}

/// `GET /logs` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsPage {
    pub total: u64,
    pub logs: Vec<serde_json::Value>,
    pub next_cursor: Option<String>,
}

/// `GET /logs/count` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCount {
    pub total_logs: u64,
    pub by_service: BTreeMap<String, u64>,
    pub by_level: BTreeMap<String, u64>,
}

/// `POST /logs/clear` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearResponse {
    pub status: String,
    pub cleared: u64,
}

/// `GET /health` of a service or sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub service: String,
}

impl Health {
    pub fn healthy(service: &str) -> Health {
        Health {
            status: "healthy".to_owned(),
            service: service.to_owned(),
        }
    }
}

/// `GET /health` of the aggregator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregatorHealth {
    pub status: String,
    pub service: String,
    pub logs_stored: u64,
    /// Problems of the store an operator should see (a damaged segment moved aside,
    /// a flush that keeps failing), as sentences; absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The error body every endpoint uses (see [`crate::http::ApiError`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub status: u16,
}
