//! Before the run: every target must answer `GET /health`, or nothing is sent.
//!
//! A run against a stack that is not up would only fill the summary with connection
//! errors; saying which service is unreachable, and where, is more use.

use std::time::Duration;

use crate::mix::Target;

/// How long each target has to answer.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(3);

/// One sentence per target that did not answer 200; empty when all did.
pub async fn check(targets: &[(Target, String)]) -> Vec<String> {
    let client = awc::Client::builder().timeout(PREFLIGHT_TIMEOUT).finish();
    let probes = targets.iter().map(|(target, base)| {
        let client = &client;
        async move {
            let url = format!("{base}/health");
            let problem = match client.get(&url).send().await {
                Ok(res) if res.status().is_success() => return None,
                Ok(res) => format!("answered {}", res.status()),
                Err(e) => e.to_string(),
            };
            Some(format!(
                "{} is not reachable: GET {url}: {problem}",
                target.service()
            ))
        }
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
}
