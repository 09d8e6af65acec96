//! Integration tests of service-guard: the auth suite, key reloading, and the
//! rate limiter (in-process with paused time, and against a real Redis).

mod auth;
mod jwks_url;
mod limiter;
#[cfg(feature = "redis")]
mod limiter_redis;
mod reload;

use http::header::{HeaderValue, AUTHORIZATION};
use http::HeaderMap;

/// Request headers carrying `token` as a bearer token.
fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}
