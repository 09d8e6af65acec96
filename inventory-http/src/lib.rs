//! # inventory-http
//!
//! The inventory server: DESIGN.md's HTTP contract over any
//! [`inventory_core::InventoryStore`], with a Redis read-through cache, per-IP
//! rate limiting, a background expiry sweep, JSON logs and Prometheus metrics.
//!
//! ## Map
//!
//! - [`config`]: flags and environment variables.
//! - [`routes`]: the route table (method, template, access level) and matcher.
//! - [`app`]: [`App`], the state shared by requests, and [`App::handle`], the
//!   router tests call without a socket.
//! - `handlers`: one function per route (ops, reads, stock, reservations);
//!   parse, call the store, respond.
//! - [`dto`]: the JSON shapes; [`errors`]: domain errors to problems.
//! - [`cache`]: availability in Redis (feature `redis`); [`sweep`]: the expiry job;
//!   [`metrics`]: what `/metrics` shows; [`clock`]: injectable time;
//!   [`auth`]: who may call what; [`openapi`]: the served document.
//! - [`events`]: the relay of the store's outbox to RabbitMQ or an
//!   in-process bus (event-bus), its readiness check and metrics.
//!
//! ## Cargo features
//!
//! `postgres` (the PostgreSQL store and outbox), `redis` (the availability
//! cache and the shared rate limiter) and `rabbitmq` (events through
//! RabbitMQ), all on by default. Without one, its URL is refused at start
//! ([`Config::check_backends`]) and the server runs on memory, in-process
//! limits and the in-process bus.
//!
//! ## Invariants
//!
//! - **No business rule lives here**: handlers only parse, call the store and
//!   map outcomes; every decision is inventory-core's.
//! - **No client input produces a 500 or a panic**: bad input is a 4xx
//!   problem and changes nothing.
//! - **A cache entry is deleted after every committed change** of its product;
//!   Redis failures fall back to the store and never fail a request.
//! - **The route table is the only list of routes**: dispatch, metrics labels,
//!   access checks and the OpenAPI conformance test all read it.

pub mod app;
pub mod auth;
#[cfg(feature = "redis")]
pub mod cache;
#[cfg(not(feature = "redis"))]
#[path = "cache_absent.rs"]
pub mod cache;
pub use service_kit::clock;
pub mod config;
pub mod dto;
pub mod errors;
pub mod events;
mod handlers;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod store;
pub mod sweep;

use std::future::Future;
use std::sync::Arc;

use event_bus::{AmqpTls, EventsConfig, InProcessBus};
use inventory_core::InventoryStore;
use service_guard::KeyWatcher;
use service_kit::ServerLimits;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use app::{App, StartError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::Config;
pub use events::{EventsRelay, EventsStatus};
pub use store::AnyStore;

/// Serves `app` on `listener` with the expiry sweep running beside it, until
/// `shutdown` completes; then stops accepting, drains in-flight requests
/// (bounded by `limits`), and stops the sweep.
pub async fn serve_app<S: InventoryStore>(
    listener: TcpListener,
    app: Arc<App<S>>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopped) = watch::channel(false);
    let sweeper = tokio::spawn(sweep::run_sweep(app.clone(), stopped));
    service_kit::serve(listener, app, limits, shutdown).await;
    let _ = stop.send(true);
    if let Err(e) = sweeper.await {
        tracing::error!(error = %e, "expiry sweep task failed");
    }
}

/// Runs the server as configured (store, Redis, events, limits) on
/// `listener` until `shutdown` completes, reading time from the system clock.
/// Without an AMQP URL the stock events go to a fresh in-process bus.
///
/// # Errors
/// [`StartError`] when the store cannot be opened or the configuration is
/// unusable; nothing is served then.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    run_with_bus(listener, config, InProcessBus::new(), shutdown).await
}

/// [`run`], with the stock events going to `bus` when no AMQP URL is
/// configured: services in one process share one bus this way. A
/// [`KeyWatcher`] reloads the token keys from their file on SIGHUP and when
/// it changes. The event relay and the key watcher stop after the HTTP
/// server drained.
///
/// # Errors
/// As [`run`].
pub async fn run_with_bus(
    listener: TcpListener,
    config: Config,
    bus: InProcessBus,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    config.check_backends()?;
    let addr = listener.local_addr()?;
    let tls = config.tls.client()?;
    let store = Arc::new(AnyStore::open(&config, &tls).await?);
    let app = App::new(Arc::clone(&store), Arc::new(SystemClock), &config).await?;
    if app.guard.is_open() {
        if !service_guard::open_allowed(&addr) {
            return Err(StartError::Config(format!(
                "no token key is configured, so the server only runs on a loopback address, not {addr}"
            )));
        }
        tracing::warn!(%addr, "no token key configured: every caller may write (loopback only)");
    }
    let keys = KeyWatcher::spawn(
        app.guard.authenticator().clone(),
        config.auth.jwks_poll_interval_ms,
    );
    let events = EventsConfig {
        tls: AmqpTls::new(tls.client_config()),
        ..config.events()
    };
    let relay = EventsRelay::spawn(&store, &events, &bus);
    let app = app.with_events(relay.status());
    serve_app(listener, Arc::new(app), config.server_limits(), shutdown).await;
    relay.stop().await;
    keys.stop().await;
    Ok(())
}
