//! user-service and product-service: a read-only catalog of sample entries.
//!
//! Both services answer the same two calls over different data, so one generic
//! [`Catalog`] serves `GET /<plural>` and `GET /<plural>/{id}` for any [`Entry`], and
//! counts lookups in `<singular>_lookups_total{outcome}`, the service's business counter.

use actix_web::{web, HttpResponse};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::http::ApiError;

/// One kind of entry a catalog serves.
pub trait Entry: Serialize + Send + Sync + 'static {
    /// `user`: names the error messages and the lookup counter.
    const SINGULAR: &'static str;
    /// `users`: names the routes and the list field.
    const PLURAL: &'static str;
    fn id(&self) -> u64;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
}

impl Entry for User {
    const SINGULAR: &'static str = "user";
    const PLURAL: &'static str = "users";
    fn id(&self) -> u64 {
        self.id
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub price: f64,
    pub stock: u64,
}

impl Entry for Product {
    const SINGULAR: &'static str = "product";
    const PLURAL: &'static str = "products";
    fn id(&self) -> u64 {
        self.id
    }
}

/// The sample users of user-service.
pub fn sample_users() -> Vec<User> {
    [
        (1, "Alice Johnson", "alice@example.com"),
        (2, "Bob Smith", "bob@example.com"),
        (3, "Charlie Brown", "charlie@example.com"),
        (4, "Diana Prince", "diana@example.com"),
        (5, "Evan Wright", "evan@example.com"),
    ]
    .into_iter()
    .map(|(id, name, email)| User {
        id,
        name: name.to_owned(),
        email: email.to_owned(),
    })
    .collect()
}

/// The sample products of product-service.
pub fn sample_products() -> Vec<Product> {
    [
        (1, "Laptop", 999.99, 50),
        (2, "Mouse", 29.99, 200),
        (3, "Keyboard", 79.99, 150),
        (4, "Monitor", 299.99, 75),
        (5, "Headphones", 149.99, 120),
    ]
    .into_iter()
    .map(|(id, name, price, stock)| Product {
        id,
        name: name.to_owned(),
        price,
        stock,
    })
    .collect()
}

/// Entries and their lookup counter.
pub struct Catalog<T> {
    entries: Vec<T>,
    lookups: IntCounterVec,
}

impl<T: Entry> Catalog<T> {
    pub fn new(entries: Vec<T>, registry: &Registry) -> prometheus::Result<Catalog<T>> {
        let lookups = IntCounterVec::new(
            Opts::new(
                format!("{}_lookups_total", T::SINGULAR),
                format!("Lookups of one {} by id, by outcome.", T::SINGULAR),
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        Ok(Catalog { entries, lookups })
    }

    /// Registers the two routes; the catalog itself must be app data.
    pub fn routes(cfg: &mut web::ServiceConfig) {
        cfg.route(&format!("/{}", T::PLURAL), web::get().to(list::<T>))
            .route(&format!("/{}/{{id}}", T::PLURAL), web::get().to(get::<T>));
    }

    pub fn find(&self, id: u64) -> Option<&T> {
        self.entries.iter().find(|e| e.id() == id)
    }
}

async fn list<T: Entry>(catalog: web::Data<Catalog<T>>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ T::PLURAL: catalog.entries, "count": catalog.entries.len() }))
}

async fn get<T: Entry>(
    catalog: web::Data<Catalog<T>>,
    id: web::Path<u64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    match catalog.find(id) {
        Some(entry) => {
            catalog.lookups.with_label_values(&["found"]).inc();
            Ok(HttpResponse::Ok().json(entry))
        }
        None => {
            catalog.lookups.with_label_values(&["not_found"]).inc();
            Err(ApiError::not_found(format!(
                "{} {id} not found",
                T::SINGULAR
            )))
        }
    }
}
