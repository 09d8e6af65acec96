//! Integration tests of service-guard: the auth suite, key reloading, and the
//! rate limiter (in-process with paused time, and against a real Redis).

mod auth;
mod limiter;
mod reload;
