//! # event-bus
//!
//! Domain events from the services' transactional outboxes to other services:
//! at least once, in order per product (per order for orders' events),
//! across broker restarts.
//!
//! ## Map
//!
//! - [`Envelope`]: the one wire format, `{event_id, event_type, occurred_at,
//!   version, correlation_id, source, payload}` (schemas in `docs/events/`).
//! - [`Publisher`]: hands a batch to a transport and resolves once every
//!   message is confirmed. [`RabbitPublisher`] (persistent messages, publisher
//!   confirms, topic exchange, routing key = event type, reconnects) and
//!   [`InProcessBus`] (the embedded default, same envelope).
//! - [`OutboxSource`] and [`Claim`]: where a relay reads from.
//!   [`InventoryOutbox`] adapts any `inventory_core::Outbox`;
//!   [`pg::PgOutbox`] lets several relays share one PostgreSQL outbox
//!   (`FOR UPDATE SKIP LOCKED`).
//! - [`Relay`]: bounded batches, marked sent only after the confirm, jittered
//!   back-off while the broker is down, [`RelayHealth`] for readiness and
//!   metrics, pruning of sent rows.
//! - [`Handler`], [`Dedup`] and [`RabbitConsumer`]: consuming a durable queue
//!   with a dead-letter queue, bounded retries, ack after commit;
//!   deduplication by `event_id` in the handler's own transaction
//!   ([`pg::record_processed`]).
//! - [`wiring`]: configuration from the environment and `spawn_*` helpers
//!   for the servers.
//!
//! ## Invariants
//!
//! - **An event is marked sent only after the broker confirmed it**; a crash
//!   in between sends it again (consumers deduplicate by `event_id`).
//! - **Nothing is dropped while the broker is down**: the outbox grows.
//! - **A consumer acknowledges only after its handler committed**, and a
//!   message it cannot apply goes to the dead-letter queue, never back to the
//!   head of its queue.

pub mod envelope;
pub mod handler;
pub mod in_process;
pub mod orders;
pub mod pg;
pub mod publisher;
pub mod rabbit;
pub mod relay;
pub mod source;
pub mod wiring;

pub use envelope::{Envelope, MalformedEnvelope, INVENTORY_SCHEMA_VERSION, ORDERS_SCHEMA_VERSION};
pub use handler::{run_subscription, Dedup, Handler, HandlerError, MemoryDedup};
pub use in_process::{InProcessBus, Subscription, TooManySubscribers};
pub use publisher::{AnyPublisher, PublishError, Publisher};
pub use rabbit::{
    ConsumerConfig, QueueSpec, RabbitConfig, RabbitConsumer, RabbitPublisher, INVENTORY_EXCHANGE,
    ORDERS_EXCHANGE, ORDERS_INVENTORY_QUEUE,
};
pub use relay::{Relay, RelayConfig, RelayHealth};
pub use source::{Claim, InventoryOutbox, OutboxSource, SourceError};
pub use wiring::{spawn_consumer, spawn_relay, EventsConfig};
