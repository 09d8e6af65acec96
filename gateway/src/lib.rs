//! # gateway
//!
//! The one entry point for clients: a hyper reverse proxy that authenticates
//! at the edge and forwards to the orders and inventory services.
//!
//! ## Map
//!
//! - [`config`]: flags and environment variables, and the `token` subcommand.
//! - [`rules`]: which upstream serves a path; public routes; the roles each
//!   route needs at the edge.
//! - [`headers`]: hop-by-hop removal, identity stripping and propagation,
//!   `X-Forwarded-*`.
//! - [`proxy`]: [`Gateway`]: route, rate limit, authenticate, forward over a
//!   pooled keep-alive client with streamed bodies, map upstream failures.
//! - `health`: `GET /health` with each upstream's readiness.
//! - [`openapi`]: the public API's one document, merged from the services'
//!   with the gateway's own answers, at `/openapi.json`, and a viewer at `/docs`.
//! - [`problems`]: the answers the gateway gives itself (401, 403, 429, 413,
//!   502, 503, 504).
//! - [`server`]: service-kit's accept loop over streamed bodies.
//! - [`token`]: minting development tokens.
//!
//! ## Routes
//!
//! | path | goes to |
//! |---|---|
//! | `/api/orders`, `/api/orders/*`, `/api/products`, `/api/products/*` | orders |
//! | `/api/inventory`, `/api/inventory/*` | inventory |
//! | `/health`, `/health/ready`, `/metrics`, `/openapi.json`, `/docs` | the gateway itself |
//!
//! ## Invariants
//!
//! - **Nothing reaches an upstream before authentication and authorization
//!   pass**; a rejected request is answered by the gateway alone.
//! - **Identity headers come only from a validated token**: `X-User-Id`,
//!   `X-User-Roles` (and any configured) sent by a client are removed.
//! - **The bearer token is forwarded unchanged**: services verify it again and
//!   never trust a header a client could forge.
//! - **Every upstream call is bounded** (connect timeout, per-upstream answer
//!   timeout); an unreachable upstream is a prompt 503, a slow one a 504.
//! - **Bodies are streamed**, never buffered whole, in both directions.

pub mod config;
pub mod headers;
mod health;
pub mod openapi;
pub mod problems;
pub mod proxy;
pub mod rules;
pub mod server;
pub mod token;

use std::future::Future;
use std::sync::Arc;

use service_guard::KeyWatcher;
use tokio::net::TcpListener;

pub use config::{Cli, Command, Config, TokenArgs};
pub use proxy::{Gateway, GatewayBody, StartError};

/// Builds the gateway from `config` and serves it on `listener` until
/// `shutdown` completes, then drains in-flight requests. A [`KeyWatcher`]
/// reloads the token keys from their file on SIGHUP and when it changes,
/// until the gateway stops.
///
/// # Errors
/// [`StartError`] when the configuration is unusable; nothing is served then.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    // Whether the gateway may run open depends on where it really listens,
    // not on the address configured (a caller may bind elsewhere).
    let mut config = config;
    config.listen = listener.local_addr()?;
    let gateway = Arc::new(Gateway::new(&config).await?);
    let keys = KeyWatcher::spawn(
        gateway.authenticator().clone(),
        config.auth.jwks_poll_interval_ms,
    );
    server::serve(listener, gateway, config.server_limits(), shutdown).await;
    keys.stop().await;
    Ok(())
}
