//! order-service: `GET /orders`, `GET /orders/{id}`, `POST /orders`.
//!
//! Creating an order checks the user and the product with the two other services, at
//! the same time and under the caller's request id, which is what makes one request
//! visible in three services' logs.

use std::collections::VecDeque;
use std::sync::Mutex;

use actix_web::{web, HttpResponse};
use chrono::{SecondsFormat, Utc};
use prometheus::{IntCounter, Registry};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::http::{ApiError, RequestId};

use crate::downstream::Downstream;

/// Orders kept in memory; older ones are forgotten so a long load test stays bounded.
pub const MAX_ORDERS_KEPT: usize = 10_000;
/// Largest quantity one order may ask for.
pub const MAX_QUANTITY: u64 = 1_000;
/// Orders `GET /orders` lists without `?limit=`, and the most it lists: the newest ones,
/// so a long load test does not make every listing heavier.
pub const LIST_LIMIT_DEFAULT: usize = 100;
pub const LIST_LIMIT_MAX: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub user_id: u64,
    pub product_id: u64,
    pub quantity: u64,
    pub total: f64,
    pub status: String,
    pub created_at: String,
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, Deserialize)]
pub struct NewOrder {
    pub user_id: u64,
    pub product_id: u64,
    #[serde(default = "one")]
    pub quantity: u64,
}

fn one() -> u64 {
    1
}

struct Book {
    orders: VecDeque<Order>,
    next_id: u64,
}

/// The order book and the service's business counter.
pub struct Orders {
    book: Mutex<Book>,
    created: IntCounter,
}

impl Orders {
    pub fn new(registry: &Registry) -> prometheus::Result<Orders> {
        let created = IntCounter::new("orders_created_total", "Orders created.")?;
        registry.register(Box::new(created.clone()))?;
        let now = timestamp();
        let orders: VecDeque<Order> = [
            (1, 1, 1, 1, 999.99),
            (2, 2, 2, 2, 59.98),
            (3, 1, 3, 1, 79.99),
        ]
        .into_iter()
        .map(|(id, user_id, product_id, quantity, total)| Order {
            id,
            user_id,
            product_id,
            quantity,
            total,
            status: "completed".to_owned(),
            created_at: now.clone(),
        })
        .collect();
        Ok(Orders {
            book: Mutex::new(Book {
                next_id: orders.len() as u64 + 1,
                orders,
            }),
            created,
        })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // A panic while holding the lock cannot leave a half-written order behind, so
        // the data stays usable after poisoning.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, new: &NewOrder, unit_price: f64) -> Order {
        let mut book = self.book();
        let order = Order {
            id: book.next_id,
            user_id: new.user_id,
            product_id: new.product_id,
            quantity: new.quantity,
            total: (unit_price * new.quantity as f64 * 100.0).round() / 100.0,
            status: "created".to_owned(),
            created_at: timestamp(),
        };
        book.next_id += 1;
        if book.orders.len() >= MAX_ORDERS_KEPT {
            book.orders.pop_front();
        }
        book.orders.push_back(order.clone());
        self.created.inc();
        order
    }
}

fn timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Registers the routes; `Orders` and a per-worker `Downstream` must be app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/orders", web::get().to(list))
        .route("/orders", web::post().to(create))
        .route("/orders/{id}", web::get().to(get));
}

/// `GET /orders?limit=N`.
#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<usize>,
}

/// The newest `limit` orders, oldest of them first; `total` counts every order kept.
async fn list(
    orders: web::Data<Orders>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = params.limit.unwrap_or(LIST_LIMIT_DEFAULT);
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {LIST_LIMIT_MAX}"
        )));
    }
    let book = orders.book();
    let skip = book.orders.len().saturating_sub(limit);
    let page: Vec<&Order> = book.orders.iter().skip(skip).collect();
    Ok(HttpResponse::Ok()
        .json(json!({ "orders": page, "count": page.len(), "total": book.orders.len() })))
}

async fn get(orders: web::Data<Orders>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let book = orders.book();
    book.orders
        .iter()
        .find(|o| o.id == id)
        .map(|o| HttpResponse::Ok().json(o))
        .ok_or_else(|| ApiError::not_found(format!("order {id} not found")))
}

async fn create(
    orders: web::Data<Orders>,
    downstream: web::Data<Downstream>,
    rid: RequestId,
    body: web::Json<NewOrder>,
) -> Result<HttpResponse, ApiError> {
    let new = body.into_inner();
    if new.quantity == 0 || new.quantity > MAX_QUANTITY {
        return Err(ApiError::bad_request(format!(
            "quantity must be between 1 and {MAX_QUANTITY}"
        )));
    }
    let (user, product) = futures_util::join!(
        downstream.user(new.user_id, &rid),
        downstream.product(new.product_id, &rid)
    );
    if user?.is_none() {
        return Err(ApiError::not_found(format!(
            "user {} not found",
            new.user_id
        )));
    }
    let Some(product) = product? else {
        return Err(ApiError::not_found(format!(
            "product {} not found",
            new.product_id
        )));
    };
    let order = orders.insert(&new, product.price);
    log::info!(
        order_id = order.id,
        user_id = order.user_id,
        product_id = order.product_id,
        request_id = rid.0.as_str();
        "Order created."
    );
    Ok(HttpResponse::Created().json(order))
}
