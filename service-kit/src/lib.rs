//! # service-kit
//!
//! Plumbing every HTTP server of the workspace shares, and nothing specific to
//! any one of them.
//!
//! ## Map
//!
//! - [`backends`]: the optional backends (cargo features of the servers)
//!   and the start-up check that refuses a URL for one that is not built in.
//! - [`clock`]: the wall-clock seam (system clock, manual clock for tests).
//! - [`problem`]: RFC 9457 `application/problem+json` errors with a stable `code`.
//! - [`request_id`]: accept a sane `X-Request-Id` or generate one.
//! - [`routing`]: the one route matcher: path patterns for a server's route
//!   table (404, 405 with `Allow`; parsed once, no allocation per request)
//!   and for the gateway's access rules.
//! - [`guard`]: service-guard's auth and rate-limit verdicts as problems.
//! - [`body`]: read a request body under a size limit, check its content type,
//!   parse JSON (413, 415 and 400 as problems).
//! - [`openapi`]: the servers' OpenAPI documents: read, listed, served, and
//!   checked against the code (feature `openapi-check`).
//! - [`response`]: small builders for JSON responses.
//! - [`telemetry`]: the JSON tracing subscriber, set up once per binary.
//! - [`metrics`]: request count and latency by route template and status.
//! - [`server`]: the accept loop of every server, the gateway's included:
//!   connection cap, header-read and request timeouts, request-id spans,
//!   graceful shutdown; full or streamed response bodies.
//! - [`settings`]: the settings groups every server flattens into its
//!   configuration (token verification, rate limit, TLS trust).
//! - [`shutdown`]: a future that completes on ctrl-c or SIGTERM.
//!
//! ## Invariants
//!
//! - **A 500 never carries internals**: [`Problem::internal`] has a fixed text;
//!   the cause goes to the log only.
//! - **Every limit is named** with its unit last ([`server::ServerLimits`],
//!   [`body::BODY_BYTES_MAX_DEFAULT`], [`request_id::REQUEST_ID_LEN_MAX`]).
//! - **Metric labels are bounded**: routes are templates chosen by the caller's
//!   router, never raw paths.

pub mod backends;
pub mod body;
pub mod clock;
pub mod guard;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod request_id;
pub mod response;
pub mod routing;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use problem::Problem;
pub use request_id::RequestId;
pub use server::{serve, ServerLimits};
pub use shutdown::shutdown_signal;

/// The response body type every server of the workspace uses: a full buffer.
pub type Body = http_body_util::Full<bytes::Bytes>;
