//! # event-bus
//!
//! Domain events from the services' transactional outboxes to other services:
//! at least once, in order per product (per order for orders' events),
//! across broker restarts.
//!
//! The transport only: it carries envelopes and knows their common fields,
//! never a payload's shape. Each producer owns its event types and payloads:
//! inventory's are `inventory_core::EventPayload` (put in an envelope by
//! `Envelope::from` an outbox entry), orders' are in `orders_http::events`.
//!
//! ## Map
//!
//! - [`Envelope`]: the one wire format, `{event_id, event_type, occurred_at,
//!   version, correlation_id, source, payload}` (schemas in `docs/events/`).
//! - [`Publisher`]: hands a batch to a transport and resolves once every
//!   message is confirmed. `RabbitPublisher` (persistent messages, publisher
//!   confirms, topic exchange, routing key = event type, reconnects) and
//!   [`InProcessBus`] (the embedded default, same envelope).
//! - [`OutboxSource`] and [`Claim`]: where a relay reads from.
//!   [`InventoryOutbox`] adapts any `inventory_core::Outbox`;
//!   `pg::PgOutbox` lets several relays share one PostgreSQL outbox
//!   (`FOR UPDATE SKIP LOCKED`); [`memory_outbox::EnvelopeOutbox`] is an
//!   outbox in memory for a store without a database.
//! - [`Relay`]: bounded batches, marked sent only after the confirm, jittered
//!   back-off while the broker is down, [`RelayHealth`] for readiness and
//!   metrics, pruning of sent rows.
//! - [`Handler`], [`Dedup`] and `RabbitConsumer`: consuming a durable queue
//!   with a dead-letter queue, ack after commit; deduplication by `event_id`
//!   in the handler's own transaction (`pg::record_processed`).
//! - [`consume`]: the retry policy every consumer follows (also the
//!   in-process [`run_subscription`]): a [`HandlerError::Transient`] failure
//!   is retried with a capped, jittered back-off until it applies, never
//!   dead-lettered; only a [`HandlerError::Permanent`] one (or an
//!   undecodable message) is dead-lettered, at once.
//! - [`wiring`]: configuration from the environment and `spawn_*` helpers
//!   for the servers; [`topology`]: exchange and queue names, [`QueueSpec`]
//!   and [`AmqpTls`], the same whatever the transport.
//!
//! ## Cargo features
//!
//! Both on by default; without them the crate builds neither lapin nor sqlx.
//!
//! - `rabbitmq`: the `rabbit` module (lapin, `amqp://` and `amqps://`),
//!   `RabbitPublisher` and `RabbitConsumer`. Without it an AMQP URL is
//!   refused: [`EventsConfig::inventory_from_env`] and
//!   [`EventsConfig::check_transport`] say so, and publishing or consuming
//!   with one is a programmer error (a panic).
//! - `postgres`: the `pg` module (sqlx): the shared PostgreSQL outbox, the
//!   envelope outbox table and the `processed_events` deduplication.
//!
//! ## Example
//!
//! The embedded default: a relay from the memory store's outbox to a
//! subscriber in the same process.
//!
//! ```
//! use std::sync::Arc;
//! use event_bus::{relay, InProcessBus, InventoryOutbox, Relay, RelayConfig};
//! use inventory_core::{Actor, Command, Meta, ProductId, StockLevel, Timestamp};
//! use inventory_memory::MemoryStore;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Arc::new(MemoryStore::new());
//! let bus = InProcessBus::new();
//! let mut events = bus.subscribe("inventory.stock.").unwrap();
//! let relay = Relay::new(InventoryOutbox::new(store.clone()), bus.clone(), RelayConfig::default());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let task = relay::spawn(relay, async move { let _ = stopped.await; });
//!
//! let meta = Meta { now: Timestamp::from_millis(0), correlation_id: Some("req-1".into()) };
//! let product_id = ProductId::from_uuid(uuid::Uuid::new_v4());
//! let create = Command::CreateItem { product_id, quantity: StockLevel::new(5).unwrap(), actor: Actor::system() };
//! store.execute_sync(create, &meta).unwrap();
//!
//! let envelope = events.recv().await.unwrap();
//! assert_eq!(envelope.event_type, "inventory.stock.adjusted");
//! assert_eq!(envelope.correlation_id.as_deref(), Some("req-1"));
//! stop.send(()).unwrap();
//! task.await.unwrap();
//! # });
//! ```
//!
//! ## Invariants
//!
//! - **An event is marked sent only after the broker confirmed it**; a crash
//!   in between sends it again (consumers deduplicate by `event_id`).
//! - **Nothing is dropped while the broker is down**: the outbox grows.
//! - **A consumer acknowledges only after its handler committed**, and a
//!   message it can never apply goes to the dead-letter queue, never back to
//!   the head of its queue.
//! - **An outage of a consumer's own store loses nothing**: transient
//!   failures are retried in place until they apply or the consumer shuts
//!   down (then the message is redelivered), whatever the outage's length.

pub mod consume;
pub mod envelope;
pub mod handler;
pub mod in_process;
pub mod memory_outbox;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod publisher;
#[cfg(feature = "rabbitmq")]
pub mod rabbit;
pub mod relay;
pub mod source;
pub mod topology;
pub mod wiring;

pub use consume::{
    run_subscription, run_subscription_with_health, ConsumerHealth, TRANSIENT_RETRY_DELAY_MAX_MS,
    TRANSIENT_RETRY_DELAY_MIN_MS,
};
pub use envelope::{Envelope, MalformedEnvelope, INVENTORY_SCHEMA_VERSION, ORDERS_SCHEMA_VERSION};
pub use handler::{Dedup, Handler, HandlerError, MemoryDedup};
pub use in_process::{InProcessBus, Subscription, TooManySubscribers};
pub use publisher::{AnyPublisher, PublishError, Publisher};
#[cfg(feature = "rabbitmq")]
pub use rabbit::{ConsumerConfig, RabbitConfig, RabbitConsumer, RabbitPublisher};
pub use relay::{Relay, RelayConfig, RelayHealth};
pub use source::{Claim, InventoryOutbox, OutboxSource, SourceError};
pub use topology::{
    AmqpTls, QueueSpec, INVENTORY_EXCHANGE, ORDERS_EXCHANGE, ORDERS_INVENTORY_QUEUE,
};
pub use wiring::{spawn_consumer, spawn_relay, EventsConfig};
