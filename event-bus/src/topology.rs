//! What names a transport and how it is reached, whatever the transport:
//! the exchanges and queue names, the queue a consumer reads ([`QueueSpec`]),
//! and the TLS configuration of an `amqps://` broker ([`AmqpTls`]). Always
//! built, so that a configuration reads the same with or without the
//! `rabbitmq` feature; declaring and connecting are in `rabbit`.

use std::sync::Arc;

/// The exchange inventory publishes on.
pub const INVENTORY_EXCHANGE: &str = "inventory.events";

/// The exchange orders publishes on.
pub const ORDERS_EXCHANGE: &str = "orders.events";

/// The queue orders consumes inventory events from.
pub const ORDERS_INVENTORY_QUEUE: &str = "orders.inventory_events";

/// The TLS client configuration of `amqps://` connections: which brokers
/// are trusted. The caller builds it (the servers take
/// `service_guard::TlsClient::client_config`, so that every client of a
/// process trusts the same roots); the default has none, and an `amqps://`
/// URL then fails to connect, saying so. Two values are equal when they hold
/// the same configuration.
///
/// ```no_run
/// use std::sync::Arc;
/// use event_bus::{AmqpTls, EventsConfig};
///
/// /// The inventory's event settings, its `amqps://` broker trusted by `config`.
/// fn events(config: Arc<rustls::ClientConfig>) -> Result<EventsConfig, event_bus::wiring::ConfigError> {
///     Ok(EventsConfig {
///         tls: AmqpTls::new(config),
///         ..EventsConfig::inventory_from_env()?
///     })
/// }
/// ```
#[derive(Clone, Default)]
pub struct AmqpTls(Option<Arc<rustls::ClientConfig>>);

impl AmqpTls {
    /// TLS with `config` (its roots, protocol versions and provider).
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Self(Some(config))
    }

    /// Whether a configuration is set.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The configuration, when one is set.
    pub fn config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.0.as_ref()
    }
}

impl PartialEq for AmqpTls {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for AmqpTls {}

impl std::fmt::Debug for AmqpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_set() {
            "AmqpTls(set)"
        } else {
            "AmqpTls(none)"
        })
    }
}

/// A durable queue bound to a topic exchange, with its dead-letter exchange
/// and dead-letter queue. Publisher and consumer declare the same spec, so
/// events published before the consumer first starts are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue.
    pub queue: String,
    /// The topic exchange it is bound to.
    pub exchange: String,
    /// Binding keys (topic patterns such as `inventory.stock.#`).
    pub binding_keys: Vec<String>,
    /// Where rejected messages go (a topic exchange).
    pub dead_letter_exchange: String,
    /// The queue that keeps them, bound to the dead-letter exchange with `#`.
    pub dead_letter_queue: String,
}

impl QueueSpec {
    /// A queue named `queue` on `exchange` for `binding_key`, with a
    /// dead-letter exchange `<queue>.dlx` and queue `<queue>.dlq`.
    pub fn new(queue: &str, exchange: &str, binding_key: &str) -> Self {
        Self {
            queue: queue.to_owned(),
            exchange: exchange.to_owned(),
            binding_keys: vec![binding_key.to_owned()],
            dead_letter_exchange: format!("{queue}.dlx"),
            dead_letter_queue: format!("{queue}.dlq"),
        }
    }

    /// `orders.inventory_events` on `inventory.events`, every stock event.
    pub fn orders_inventory_events() -> Self {
        Self::new(
            ORDERS_INVENTORY_QUEUE,
            INVENTORY_EXCHANGE,
            "inventory.stock.#",
        )
    }
}
