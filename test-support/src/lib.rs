//! Helpers shared by the integration test suites of the workspace, so that
//! each exists once. A dev-dependency only: nothing that ships links it.
//!
//! Map of the modules:
//!
//! - [`services`]: skip a test whose server is absent, printing why, or fail
//!   it when `REQUIRE_SERVICES=1`; the `TEST_*_URL` lookups.
//! - [`cleanup`]: finish async clean-up from a `Drop`, also while a failed
//!   test unwinds.
//! - [`http`]: [`http::Reply`], a response read whole, with the accessors
//!   the suites assert on.
//! - `postgres` (feature `postgres`): a schema of its own per test on
//!   `TEST_DATABASE_URL`, dropped when the test ends.
//! - `redis` (feature `redis`): the Redis on `TEST_REDIS_URL` when it answers.
//! - `rabbitmq` (feature `rabbitmq`): the broker on `TEST_AMQP_URL` when it
//!   answers, names no other test uses, and exchanges and queues deleted
//!   when the test ends.
//!
//! The three backend features are on by default; a suite whose crate can
//! be built without a backend enables only what its own features enable, so
//! that its trimmed build stays trimmed.
//! - [`server`]: bind `127.0.0.1:0` (or a port to reuse) and a handle that
//!   stops the server spawned on it.
//! - [`tokens`]: HS256 test tokens and the wall clock in seconds.
//! - [`tls`]: a CA and server certificates made at test time, a TLS
//!   terminator, an https server of one body, a TLS-only `redis-server`,
//!   and the local PostgreSQL given a test certificate.
//!
//! Invariant: the suites keep their server-specific wiring (which app, which
//! configuration); only the generic part lives here.

pub mod cleanup;
pub mod http;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "redis")]
pub mod redis;
pub mod server;
pub mod services;
pub mod tls;
pub mod tokens;
