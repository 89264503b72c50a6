//! The three demo microservices whose logs and metrics the sidecars collect.
//!
//! - [`config`]: each service's settings, read once from the environment.
//! - [`catalog`]: user-service and product-service, a read-only catalog each.
//! - [`orders`]: order-service, which checks users and products before it creates an order.
//! - [`downstream`]: how the order service checks a user and a product over HTTP.
//! - [`server`]: the common start-up (logging, metrics, middleware, graceful stop).

pub mod catalog;
pub mod config;
pub mod downstream;
pub mod orders;
pub mod server;

/// Which of the three services a binary runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    User,
    Product,
    Order,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::User => "user-service",
            Service::Product => "product-service",
            Service::Order => "order-service",
        }
    }
}
