//! The order service's calls to user-service and product-service.
//!
//! Each call carries the request's id, is bounded by a timeout, and turns every failure
//! of the dependency (refused, timed out, a 5xx, a body that is not the expected JSON)
//! into a 503 naming it, so a caller can tell "no such user" from "user-service down".

use std::time::Duration;

use serde::de::DeserializeOwned;
use shared::http::{ApiError, RequestId, REQUEST_ID};

use crate::catalog::{Product, User};

/// An HTTP client for the two dependencies; one per worker thread (awc is not `Send`).
pub struct Downstream {
    client: awc::Client,
    user_url: String,
    product_url: String,
    timeout: Duration,
}

impl Downstream {
    pub fn new(user_url: &str, product_url: &str, timeout: Duration) -> Downstream {
        Downstream {
            client: awc::Client::builder().timeout(timeout).finish(),
            user_url: user_url.to_owned(),
            product_url: product_url.to_owned(),
            timeout,
        }
    }

    /// `Ok(None)` when user-service says the user does not exist.
    pub async fn user(&self, id: u64, rid: &RequestId) -> Result<Option<User>, ApiError> {
        let url = format!("{}/users/{id}", self.user_url);
        self.fetch("user-service", &url, rid).await
    }

    /// `Ok(None)` when product-service says the product does not exist.
    pub async fn product(&self, id: u64, rid: &RequestId) -> Result<Option<Product>, ApiError> {
        let url = format!("{}/products/{id}", self.product_url);
        self.fetch("product-service", &url, rid).await
    }

    async fn fetch<T: DeserializeOwned>(
        &self,
        dependency: &'static str,
        url: &str,
        rid: &RequestId,
    ) -> Result<Option<T>, ApiError> {
        let call = async {
            let mut res = self
                .client
                .get(url)
                .insert_header((REQUEST_ID, rid.0.as_str()))
                .send()
                .await
                .map_err(|e| unavailable(dependency, e.to_string()))?;
            match res.status().as_u16() {
                200 => res
                    .json::<T>()
                    .await
                    .map(Some)
                    .map_err(|e| unavailable(dependency, format!("unexpected answer: {e}"))),
                404 => Ok(None),
                other => Err(unavailable(dependency, format!("answered {other}"))),
            }
        };
        match actix_rt::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(unavailable(
                dependency,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }
}

fn unavailable(dependency: &'static str, reason: String) -> ApiError {
    log::warn!(dependency = dependency, reason = reason.as_str(); "Dependency unavailable.");
    ApiError::unavailable(format!("{dependency} is unavailable: {reason}"))
        .with("dependency", dependency)
}
