//! Ready-to-call start-up for the servers: read the configuration from the
//! environment, pick RabbitMQ or the in-process bus, and spawn a relay or a
//! consumer with a shutdown signal.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `AMQP_URL` | RabbitMQ URL (`amqp://`, or `amqps://` with the servers' TLS settings); unset means the in-process bus | unset |
//! | `INVENTORY_EVENTS_EXCHANGE` | inventory's topic exchange | `inventory.events` |
//! | `ORDERS_EVENTS_EXCHANGE` | orders' topic exchange | `orders.events` |
//! | `ORDERS_INVENTORY_QUEUE` | orders' queue of inventory events | `orders.inventory_events` |
//! | `OUTBOX_RETENTION_SECS` | how long sent outbox rows are kept | 7 days |
//!
//! ## Inventory
//!
//! Publish from the store's outbox, until the server's shutdown signal (the
//! memory store reports its depth with `outbox_len`; on PostgreSQL any number
//! of instances may relay at once):
//!
//! ```text
//! let events = EventsConfig::inventory_from_env()?;
//! let relay = match store {
//!     Postgres(pg) => spawn_relay(PgOutbox::new(pg.pool().clone()), &events, &bus, stop),
//!     Memory(m)    => spawn_relay(InventoryOutbox::new(m).with_depth(|s| s.outbox_len() as u64),
//!                                 &events, &bus, stop),
//! };
//! // readiness: relay.health.is_ready(); metrics: relay.health.outbox_depth(),
//! // published(), failures(); after the server drained: stop the relay, await relay.task.
//! ```
//!
//! ## Orders
//!
//! Publish `order.*` from its own outbox: in the transaction of the change,
//! `pg::enqueue(&mut tx, &orders::envelope(ORDER_CREATED, id, now_ms,
//! request_id, payload))` (table `pg::ENVELOPE_OUTBOX_DDL`), or
//! `EnvelopeOutbox::push` in the memory store's critical section; then
//! `spawn_relay(PgOutbox::envelopes(pool) | envelope_outbox.clone(),
//! &EventsConfig::orders_from_env()?, &bus, stop)`.
//!
//! Consume inventory's events with a [`crate::Handler`] that deduplicates in
//! its own transaction (`pg::record_processed`, table
//! `pg::PROCESSED_EVENTS_DDL`; `MemoryDedup` on the memory store):
//!
//! ```text
//! let consumer = spawn_consumer(events.amqp_url.as_deref(),
//!     EventsConfig::orders_inventory_queue(), "orders", 8, handler, &bus, stop)?;
//! ```
//!
//! In one process (the embedded stack) both servers get the same
//! [`InProcessBus`], so inventory's events reach orders' handler without a
//! broker.

use std::future::Future;
use std::sync::Arc;

use crate::consume::{run_subscription_with_health, ConsumerHealth};
use crate::handler::Handler;
use crate::in_process::{InProcessBus, TooManySubscribers};
use crate::publisher::AnyPublisher;
#[cfg(feature = "rabbitmq")]
use crate::rabbit::{ConsumerConfig, RabbitConfig, RabbitConsumer, RabbitPublisher};
use crate::relay::{self, Relay, RelayConfig, RelayHealth};
use crate::source::OutboxSource;
use crate::topology::{
    AmqpTls, QueueSpec, INVENTORY_EXCHANGE, ORDERS_EXCHANGE, ORDERS_INVENTORY_QUEUE,
};

/// What an AMQP URL meets in a build without the `rabbitmq` feature.
const RABBITMQ_NOT_BUILT: &str =
    "event-bus was built without RabbitMQ support (cargo feature `rabbitmq`)";

/// A configuration value that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// How one service publishes and consumes events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsConfig {
    /// RabbitMQ URL; `None` for the in-process bus.
    pub amqp_url: Option<String>,
    /// The exchange this service publishes on.
    pub exchange: String,
    /// Queues declared when the publisher connects (so early events wait
    /// for their consumer).
    pub queues: Vec<QueueSpec>,
    /// Broker connection name (shown by management tools).
    pub connection_name: String,
    /// The relay's batches, back-off and retention.
    pub relay: RelayConfig,
    /// How an `amqps://` URL's broker is checked (none from the
    /// environment: the servers set their own, see [`AmqpTls`]).
    pub tls: AmqpTls,
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn relay_from_env() -> Result<RelayConfig, ConfigError> {
    let mut relay = RelayConfig::default();
    if let Some(secs) = var("OUTBOX_RETENTION_SECS") {
        let secs: u64 = secs.parse().map_err(|e| ConfigError {
            variable: "OUTBOX_RETENTION_SECS",
            reason: format!("{e}"),
        })?;
        relay.retention_ms = secs.saturating_mul(1_000);
    }
    Ok(relay)
}

impl EventsConfig {
    /// Inventory's configuration from the environment (see the module doc):
    /// publishes on `inventory.events` and declares orders' queue.
    ///
    /// # Errors
    /// [`ConfigError`] for a value that does not parse.
    pub fn inventory_from_env() -> Result<Self, ConfigError> {
        let exchange =
            var("INVENTORY_EVENTS_EXCHANGE").unwrap_or_else(|| INVENTORY_EXCHANGE.to_owned());
        let queue =
            var("ORDERS_INVENTORY_QUEUE").unwrap_or_else(|| ORDERS_INVENTORY_QUEUE.to_owned());
        let config = Self {
            amqp_url: var("AMQP_URL"),
            queues: vec![QueueSpec::new(&queue, &exchange, "inventory.stock.#")],
            exchange,
            connection_name: "inventory-relay".to_owned(),
            relay: relay_from_env()?,
            tls: AmqpTls::default(),
        };
        config.check_transport()?;
        Ok(config)
    }

    /// Orders' configuration from the environment: publishes on
    /// `orders.events`.
    ///
    /// # Errors
    /// [`ConfigError`] for a value that does not parse.
    pub fn orders_from_env() -> Result<Self, ConfigError> {
        let config = Self {
            amqp_url: var("AMQP_URL"),
            exchange: var("ORDERS_EVENTS_EXCHANGE").unwrap_or_else(|| ORDERS_EXCHANGE.to_owned()),
            queues: Vec::new(),
            connection_name: "orders-relay".to_owned(),
            relay: relay_from_env()?,
            tls: AmqpTls::default(),
        };
        config.check_transport()?;
        Ok(config)
    }

    /// Whether this build can serve the configured transport: an AMQP URL
    /// needs the `rabbitmq` feature. Check it at start: publishing or
    /// consuming with a transport the build lacks panics.
    ///
    /// # Errors
    /// [`ConfigError`] naming `AMQP_URL` and the feature.
    pub fn check_transport(&self) -> Result<(), ConfigError> {
        match &self.amqp_url {
            Some(_) if !cfg!(feature = "rabbitmq") => Err(ConfigError {
                variable: "AMQP_URL",
                reason: RABBITMQ_NOT_BUILT.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Orders' queue of inventory events, as configured in the environment.
    pub fn orders_inventory_queue() -> QueueSpec {
        let exchange =
            var("INVENTORY_EVENTS_EXCHANGE").unwrap_or_else(|| INVENTORY_EXCHANGE.to_owned());
        let queue =
            var("ORDERS_INVENTORY_QUEUE").unwrap_or_else(|| ORDERS_INVENTORY_QUEUE.to_owned());
        QueueSpec::new(&queue, &exchange, "inventory.stock.#")
    }

    /// The publisher this configuration asks for: RabbitMQ (connecting
    /// lazily, so a broker that is down does not stop the server starting)
    /// or `bus`.
    ///
    /// # Panics
    /// With an AMQP URL in a build without the `rabbitmq` feature (see
    /// [`EventsConfig::check_transport`]).
    pub fn publisher(&self, bus: &InProcessBus) -> AnyPublisher {
        match &self.amqp_url {
            Some(url) => self.rabbit_publisher(url),
            None => AnyPublisher::InProcess(bus.clone()),
        }
    }

    #[cfg(feature = "rabbitmq")]
    fn rabbit_publisher(&self, url: &str) -> AnyPublisher {
        AnyPublisher::Rabbit(
            RabbitPublisher::new(RabbitConfig {
                url: url.to_owned(),
                exchange: self.exchange.clone(),
                queues: self.queues.clone(),
                connection_name: self.connection_name.clone(),
            })
            .with_tls(self.tls.clone()),
        )
    }

    #[cfg(not(feature = "rabbitmq"))]
    fn rabbit_publisher(&self, _url: &str) -> AnyPublisher {
        panic!("{RABBITMQ_NOT_BUILT}: check_transport refuses this configuration")
    }
}

/// A running relay.
#[derive(Debug)]
pub struct RelayHandle {
    /// Broker reachability and outbox depth, for readiness and metrics.
    pub health: Arc<RelayHealth>,
    /// The task; it ends after the shutdown signal.
    pub task: tokio::task::JoinHandle<()>,
}

/// Spawns a relay from `source` to the publisher `config` asks for (or
/// `bus`), until `shutdown` resolves.
///
/// For inventory on the memory store, `source` is
/// `InventoryOutbox::new(store).with_depth(|s| s.outbox_len() as u64)`; on
/// PostgreSQL it is `PgOutbox::new(pool)` (several instances may relay).
pub fn spawn_relay<S: OutboxSource>(
    source: S,
    config: &EventsConfig,
    bus: &InProcessBus,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> RelayHandle {
    let relay = Relay::new(source, config.publisher(bus), config.relay.clone());
    let health = relay.health();
    tracing::info!(
        transport = if config.amqp_url.is_some() { "rabbitmq" } else { "in-process" },
        exchange = %config.exchange,
        "event relay started"
    );
    RelayHandle {
        health,
        task: relay::spawn(relay, shutdown),
    }
}

/// A running consumer.
#[derive(Debug)]
pub struct ConsumerHandle {
    /// Connection state and counts (applied, retried, dead-lettered); on
    /// the in-process bus, "connected" means subscribed and "dead-lettered"
    /// counts permanent failures logged and skipped. Always `Some`: an
    /// `Option` for callers written when the in-process bus kept no counts.
    pub health: Option<Arc<ConsumerHealth>>,
    /// The task; it ends after the shutdown signal.
    pub task: tokio::task::JoinHandle<()>,
}

/// Spawns orders' consumer of inventory events: from `queue` on RabbitMQ
/// when `amqp_url` is set, else from `bus` (events whose type starts with
/// `inventory.stock.`), until `shutdown` resolves. Both follow
/// [`crate::consume`]'s retry policy: transient failures are retried until
/// they apply, permanent ones are dead-lettered (in process: skipped).
/// On RabbitMQ, events are applied in `lanes` ordered lanes by ordering key
/// ([`ConsumerConfig::lanes`]); in process, one at a time.
///
/// # Errors
/// [`TooManySubscribers`] when the in-process bus is full.
pub fn spawn_consumer<H: Handler>(
    amqp_url: Option<&str>,
    queue: QueueSpec,
    name: &str,
    lanes: u16,
    handler: H,
    bus: &InProcessBus,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ConsumerHandle, TooManySubscribers> {
    spawn_consumer_with_tls(
        amqp_url,
        &AmqpTls::default(),
        queue,
        name,
        lanes,
        handler,
        bus,
        shutdown,
    )
}

/// [`spawn_consumer`] whose RabbitMQ connection uses `tls` for an
/// `amqps://` URL.
///
/// # Errors
/// [`TooManySubscribers`] when the in-process bus is full.
///
/// # Panics
/// With an AMQP URL in a build without the `rabbitmq` feature (see
/// [`EventsConfig::check_transport`]).
#[allow(clippy::too_many_arguments)] // spawn_consumer's, and the TLS to reach the broker
pub fn spawn_consumer_with_tls<H: Handler>(
    amqp_url: Option<&str>,
    tls: &AmqpTls,
    queue: QueueSpec,
    name: &str,
    lanes: u16,
    handler: H,
    bus: &InProcessBus,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ConsumerHandle, TooManySubscribers> {
    match amqp_url {
        Some(url) => Ok(spawn_rabbit_consumer(
            url, tls, queue, name, lanes, handler, shutdown,
        )),
        None => {
            let subscription = bus.subscribe("inventory.stock.")?;
            let health = Arc::new(ConsumerHealth::default());
            // Subscribed from here on: readiness must not see a gap before
            // the task first runs.
            health.set_connected(true);
            let run =
                run_subscription_with_health(subscription, handler, Arc::clone(&health), shutdown);
            Ok(ConsumerHandle {
                health: Some(health),
                task: tokio::spawn(run),
            })
        }
    }
}

/// The RabbitMQ half of [`spawn_consumer_with_tls`].
#[cfg(feature = "rabbitmq")]
fn spawn_rabbit_consumer<H: Handler>(
    url: &str,
    tls: &AmqpTls,
    queue: QueueSpec,
    name: &str,
    lanes: u16,
    handler: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> ConsumerHandle {
    let config = ConsumerConfig {
        lanes,
        ..ConsumerConfig::new(url, queue, name)
    };
    let consumer = RabbitConsumer::new(config, handler).with_tls(tls.clone());
    let health = consumer.health();
    ConsumerHandle {
        health: Some(health),
        task: tokio::spawn(consumer.run(shutdown)),
    }
}

/// [`spawn_consumer_with_tls`] with an AMQP URL in a build without RabbitMQ.
#[cfg(not(feature = "rabbitmq"))]
fn spawn_rabbit_consumer<H: Handler>(
    _url: &str,
    _tls: &AmqpTls,
    _queue: QueueSpec,
    _name: &str,
    _lanes: u16,
    _handler: H,
    _shutdown: impl Future<Output = ()> + Send + 'static,
) -> ConsumerHandle {
    panic!("{RABBITMQ_NOT_BUILT}: check_transport refuses this configuration")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An AMQP URL is usable exactly when the build has RabbitMQ.
    #[test]
    fn an_amqp_url_needs_the_rabbitmq_feature() {
        let mut config = EventsConfig {
            amqp_url: None,
            exchange: INVENTORY_EXCHANGE.to_owned(),
            queues: Vec::new(),
            connection_name: "test".to_owned(),
            relay: RelayConfig::default(),
            tls: AmqpTls::default(),
        };
        assert_eq!(config.check_transport(), Ok(()));
        config.amqp_url = Some("amqp://127.0.0.1:5672/%2f".to_owned());
        let checked = config.check_transport();
        if cfg!(feature = "rabbitmq") {
            assert_eq!(checked, Ok(()));
        } else {
            let err = checked.unwrap_err().to_string();
            assert!(
                err.contains("AMQP_URL") && err.contains("`rabbitmq`"),
                "{err}"
            );
        }
    }
}
