//! # orders-http
//!
//! The orders service: customers place orders for products of this service's
//! own catalog; an asynchronous saga holds the stock in the inventory service,
//! takes the payment and confirms, or undoes what it did.
//!
//! ## Map
//!
//! - [`domain`]: ids, money in minor units, statuses and cancel reasons, order
//!   lines, validation and pricing of a new order.
//! - [`catalog`]: products, prices, the demo catalog.
//! - [`store`]: the storage port and its memory and PostgreSQL adapters.
//! - [`saga`]: the saga's persisted state and the engine running it.
//! - [`inventory`]: the inventory port and its HTTP client.
//! - [`breaker`]: the circuit breaker of that client.
//! - [`payment`]: the payment port and the built-in simulator.
//! - [`clock`]: the wall-clock seam (service-kit's, re-exported).
//! - [`events`]: `order.*` events written with each change, the relay, and
//!   the consumer of inventory's events (holds, expired-hold hand-off).
//! - [`metrics`]: orders, saga, inventory-client and events metrics.
//! - [`http`]: the route table, handlers, JSON shapes and OpenAPI document.
//! - [`config`]: flags and environment variables; [`service`]: assembling
//!   and running it all ([`run`]).
//!
//! ## Invariants
//!
//! - **Prices come only from the catalog**; money is integer minor units.
//! - **A multi-line order is reserved in one call**, under an inventory order
//!   id saved before the call, so a repeated call is idempotent; a re-reserve
//!   after an expired hold uses a fresh one.
//! - **Every reservation held is confirmed or released**; every payment of a
//!   cancelled order is refunded, and the refund recorded.
//! - **Idempotency keys are scoped per user.**
//! - **An order's event is written in the same atomic step as its change**,
//!   and an inventory event is applied at most once (its id is recorded in
//!   the same step as its effect).

pub mod breaker;
pub mod catalog;
pub use service_kit::clock;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod inventory;
pub mod metrics;
pub mod payment;
pub mod saga;
pub mod service;
pub mod store;

pub use service::{run, run_with_bus, serve_app, StartError};
