//! The optional bearer token that guards writes, clears and queries.
//!
//! Without `AGGREGATOR_TOKEN` the aggregator is open, as the seed was (the start-up log
//! says so). `/health`, `/metrics` and `/` stay open either way, so probes and scrapers
//! need no secret.

use actix_web::http::header::{HeaderMap, AUTHORIZATION};

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send Authorization: Bearer <AGGREGATOR_TOKEN>")]
    Missing,
    #[error("wrong bearer token")]
    Wrong,
}

/// Lets the request through when no token is configured or it carries the right one.
pub fn check(headers: &HeaderMap, token: Option<&str>) -> Result<(), AuthError> {
    let Some(token) = token else {
        return Ok(());
    };
    let value = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)?;
    let (scheme, given) = value.trim().split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(auth: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = auth {
            h.insert(AUTHORIZATION, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn open_without_a_token() {
        assert_eq!(check(&headers(None), None), Ok(()));
        assert_eq!(check(&headers(Some("Bearer x")), None), Ok(()));
    }

    #[test]
    fn token_is_required_when_set() {
        let t = Some("s3cret");
        assert_eq!(check(&headers(Some("Bearer s3cret")), t), Ok(()));
        assert_eq!(check(&headers(Some("bearer  s3cret ")), t), Ok(()));
        assert_eq!(check(&headers(None), t), Err(AuthError::Missing));
        assert_eq!(
            check(&headers(Some("Basic s3cret")), t),
            Err(AuthError::Missing)
        );
        assert_eq!(
            check(&headers(Some("Bearer s3cre")), t),
            Err(AuthError::Wrong)
        );
        assert_eq!(
            check(&headers(Some("Bearer s3cretx")), t),
            Err(AuthError::Wrong)
        );
    }
}
