//! Integration tests of service-guard: the auth suite, key reloading, and the
//! rate limiter (in-process with paused time, and against a real Redis).

mod auth;
mod jwks_url;
mod limiter;
#[cfg(feature = "redis")]
mod limiter_redis;
mod reload;
