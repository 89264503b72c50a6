//! The request mix: every endpoint of the three services, each with the statuses it may
//! rightly answer.
//!
//! A request is drawn from a fixed, weighted list of [`Template`]s. The order of the list
//! is shuffled once with a fixed seed and each sending thread walks it from its own
//! offset, so a run is reproducible and every endpoint is hit from the first second.
//! Statistics are kept per [`Endpoint`] (a route of one service), not per template, so
//! `GET /users/1` and `GET /users/abc` land in the same row, as in the services' own
//! `http_requests_total{route}`.

use std::fmt;

/// One of the three services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    User = 0,
    Product = 1,
    Order = 2,
}

impl Target {
    pub fn service(self) -> &'static str {
        match self {
            Target::User => "user-service",
            Target::Product => "product-service",
            Target::Order => "order-service",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
        })
    }
}

/// A route of one service: the unit the summary reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub target: Target,
    pub method: Method,
    /// The route pattern, as the services label it in `http_requests_total`.
    pub route: &'static str,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.target.service(),
            self.method,
            self.route
        )
    }
}

/// Every endpoint, in the order the summary lists them.
pub const ENDPOINTS: &[Endpoint] = &[
    ep(Target::User, Method::Get, "/health"),
    ep(Target::User, Method::Get, "/users"),
    ep(Target::User, Method::Get, "/users/{id}"),
    ep(Target::Product, Method::Get, "/health"),
    ep(Target::Product, Method::Get, "/products"),
    ep(Target::Product, Method::Get, "/products/{id}"),
    ep(Target::Order, Method::Get, "/health"),
    ep(Target::Order, Method::Get, "/orders"),
    ep(Target::Order, Method::Get, "/orders/{id}"),
    ep(Target::Order, Method::Post, "/orders"),
];

const fn ep(target: Target, method: Method, route: &'static str) -> Endpoint {
    Endpoint {
        target,
        method,
        route,
    }
}

/// One kind of request: where it goes, what it carries, what it may answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Index into [`ENDPOINTS`].
    pub endpoint: usize,
    /// The path with its id filled in.
    pub path: &'static str,
    pub body: Option<&'static str>,
    /// The statuses that mean the service behaved; anything else is an error.
    pub expect: &'static [u16],
    /// How many of every full turn through the mix are this request.
    pub weight: u32,
}

const fn t(
    endpoint: usize,
    path: &'static str,
    body: Option<&'static str>,
    expect: &'static [u16],
    weight: u32,
) -> Template {
    Template {
        endpoint,
        path,
        body,
        expect,
        weight,
    }
}

const OK: &[u16] = &[200];
const CREATED: &[u16] = &[201];
const NOT_FOUND: &[u16] = &[404];
const BAD_REQUEST: &[u16] = &[400];
/// order-service keeps only its newest orders, so a seeded order may have been
/// forgotten by the time a long run asks for it.
const OK_OR_FORGOTTEN: &[u16] = &[200, 404];

/// The mix of the three services. Reads dominate, as in most traffic; the list of
/// orders is weighted low because order-service answers it with every order it keeps.
pub const TEMPLATES: &[Template] = &[
    t(0, "/health", None, OK, 1),
    t(1, "/users", None, OK, 3),
    t(2, "/users/1", None, OK, 1),
    t(2, "/users/2", None, OK, 1),
    t(2, "/users/3", None, OK, 1),
    t(2, "/users/4", None, OK, 1),
    t(2, "/users/5", None, OK, 1),
    t(2, "/users/999999", None, NOT_FOUND, 1),
    t(2, "/users/abc", None, BAD_REQUEST, 1),
    t(3, "/health", None, OK, 1),
    t(4, "/products", None, OK, 3),
    t(5, "/products/1", None, OK, 1),
    t(5, "/products/2", None, OK, 1),
    t(5, "/products/3", None, OK, 1),
    t(5, "/products/4", None, OK, 1),
    t(5, "/products/5", None, OK, 1),
    t(5, "/products/999999", None, NOT_FOUND, 1),
    t(5, "/products/abc", None, BAD_REQUEST, 1),
    t(6, "/health", None, OK, 1),
    t(7, "/orders", None, OK, 1),
    t(8, "/orders/1", None, OK_OR_FORGOTTEN, 1),
    t(8, "/orders/2", None, OK_OR_FORGOTTEN, 1),
    t(8, "/orders/3", None, OK_OR_FORGOTTEN, 1),
    t(8, "/orders/999999999", None, NOT_FOUND, 1),
    t(8, "/orders/abc", None, BAD_REQUEST, 1),
    t(
        9,
        "/orders",
        Some(r#"{"user_id":1,"product_id":2,"quantity":1}"#),
        CREATED,
        2,
    ),
    t(
        9,
        "/orders",
        Some(r#"{"user_id":4,"product_id":5,"quantity":3}"#),
        CREATED,
        2,
    ),
    t(
        9,
        "/orders",
        Some(r#"{"user_id":999999,"product_id":1,"quantity":1}"#),
        NOT_FOUND,
        1,
    ),
    t(
        9,
        "/orders",
        Some(r#"{"user_id":1,"product_id":999999,"quantity":1}"#),
        NOT_FOUND,
        1,
    ),
    t(9, "/orders", Some(r#"{"user_id":"#), BAD_REQUEST, 1),
];

/// The templates for the chosen targets, expanded by weight and shuffled: one full turn
/// of the mix. Indices point into [`TEMPLATES`].
pub fn sequence(targets: &[Target]) -> Vec<usize> {
    let mut seq: Vec<usize> = TEMPLATES
        .iter()
        .enumerate()
        .filter(|(_, t)| targets.contains(&ENDPOINTS[t.endpoint].target))
        .flat_map(|(i, t)| std::iter::repeat(i).take(t.weight as usize))
        .collect();
    // Fisher–Yates with a fixed xorshift seed: the same mix order on every run.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..seq.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        seq.swap(i, (state % (i as u64 + 1)) as usize);
    }
    seq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_has_a_template_and_every_template_an_endpoint() {
        for (i, e) in ENDPOINTS.iter().enumerate() {
            assert!(
                TEMPLATES.iter().any(|t| t.endpoint == i),
                "no request for {e}"
            );
        }
        for t in TEMPLATES {
            let e = ENDPOINTS[t.endpoint];
            assert_eq!(t.body.is_some(), e.method == Method::Post, "{t:?}");
            let prefix = e.route.split('{').next().unwrap_or_default();
            assert!(t.path.starts_with(prefix), "{t:?} is not under {e}");
        }
    }

    #[test]
    fn sequence_keeps_weights_and_targets() {
        let all = sequence(&[Target::User, Target::Product, Target::Order]);
        let total: u32 = TEMPLATES.iter().map(|t| t.weight).sum();
        assert_eq!(all.len(), total as usize);
        let posts = all
            .iter()
            .filter(|&&i| ENDPOINTS[TEMPLATES[i].endpoint].method == Method::Post)
            .count();
        assert_eq!(posts, 7);
        assert_eq!(
            all,
            sequence(&[Target::User, Target::Product, Target::Order])
        );

        let users = sequence(&[Target::User]);
        assert_eq!(users.len(), 11);
        assert!(users
            .iter()
            .all(|&i| ENDPOINTS[TEMPLATES[i].endpoint].target == Target::User));
    }

    #[test]
    fn the_shuffle_spreads_a_heavy_template() {
        // The three `GET /users` of a turn are not all next to each other.
        let seq = sequence(&[Target::User, Target::Product, Target::Order]);
        let at: Vec<usize> = seq
            .iter()
            .enumerate()
            .filter(|(_, &i)| TEMPLATES[i].path == "/users")
            .map(|(pos, _)| pos)
            .collect();
        assert_eq!(at.len(), 3);
        assert!(at[2] - at[0] > 2, "{at:?}");
    }
}
