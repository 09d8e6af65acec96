//! [`RabbitPublisher`]: persistent messages on a topic exchange, routing key =
//! event type, each batch resolved only after the broker confirmed every
//! message; reconnects on the next publish after the connection broke.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;

use super::{connect_with, declare_exchange, rpc, AmqpTls, QueueSpec, INVENTORY_EXCHANGE};
use crate::envelope::Envelope;
use crate::publisher::{PublishError, Publisher};

/// Header carrying the correlation id (also set as the AMQP `correlation_id`
/// property).
pub const HEADER_CORRELATION_ID: &str = "x-correlation-id";

/// Longest wait for the broker to confirm one batch. A connection that died
/// without the client noticing must not hold the relay forever.
pub const CONFIRM_TIMEOUT_MS: u64 = 30_000;

/// AMQP delivery mode of a message the broker writes to disk.
const DELIVERY_MODE_PERSISTENT: u8 = 2;

/// Where and how to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RabbitConfig {
    /// `amqp://user:pass@host:port/vhost`.
    pub url: String,
    /// The topic exchange (`inventory.events`, `orders.events`).
    pub exchange: String,
    /// Queues declared with their bindings at connect, so events published
    /// before their consumer first starts are kept (see [`QueueSpec`]).
    pub queues: Vec<QueueSpec>,
    /// Connection name shown by the broker's management tools.
    pub connection_name: String,
}

impl RabbitConfig {
    /// Inventory's publisher: exchange `inventory.events`, declaring orders'
    /// queue `orders.inventory_events` with it.
    pub fn inventory(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            exchange: INVENTORY_EXCHANGE.to_owned(),
            queues: vec![QueueSpec::orders_inventory_events()],
            connection_name: "inventory-relay".to_owned(),
        }
    }
}

/// Publishes to RabbitMQ. Cheap to clone: clones share one connection.
///
/// Connects lazily (on the first publish, or with [`RabbitPublisher::connect`])
/// and again on the publish after any failure. Batches are published one at a
/// time on one channel, so their order is kept.
#[derive(Clone, Debug)]
pub struct RabbitPublisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: RabbitConfig,
    tls: AmqpTls,
    link: Mutex<Option<Link>>,
    reachable: AtomicBool,
}

#[derive(Debug)]
struct Link {
    connection: Connection,
    channel: Channel,
}

impl RabbitPublisher {
    /// A publisher that connects on its first publish.
    pub fn new(config: RabbitConfig) -> Self {
        Self::build(config, AmqpTls::default())
    }

    fn build(config: RabbitConfig, tls: AmqpTls) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                tls,
                link: Mutex::new(None),
                reachable: AtomicBool::new(true),
            }),
        }
    }

    /// The same publisher connecting to an `amqps://` URL with `tls` (call
    /// it before the first publish; clones made before do not see it).
    pub fn with_tls(self, tls: AmqpTls) -> Self {
        Self::build(self.inner.config.clone(), tls)
    }

    /// A publisher connected now, with its exchange and queues declared.
    ///
    /// # Errors
    /// [`PublishError::Unavailable`] when the broker cannot be reached or
    /// refuses the topology.
    pub async fn connect(config: RabbitConfig) -> Result<Self, PublishError> {
        let publisher = Self::new(config);
        {
            let mut link = publisher.inner.link.lock().await;
            *link = Some(publisher.open().await?);
        }
        Ok(publisher)
    }

    /// The configuration.
    pub fn config(&self) -> &RabbitConfig {
        &self.inner.config
    }

    /// Closes the connection (a later publish opens a new one).
    pub async fn close(&self) {
        if let Some(link) = self.inner.link.lock().await.take() {
            let _ = rpc("close", link.connection.close(200, "closing")).await;
        }
    }

    async fn open(&self) -> Result<Link, PublishError> {
        let config = &self.inner.config;
        let result = async {
            let connection =
                connect_with(&config.url, &config.connection_name, &self.inner.tls).await?;
            let channel = rpc("open channel", connection.create_channel()).await?;
            rpc(
                "enable confirms",
                channel.confirm_select(ConfirmSelectOptions::default()),
            )
            .await?;
            rpc(
                "declare exchange",
                declare_exchange(&channel, &config.exchange),
            )
            .await?;
            for queue in &config.queues {
                rpc("declare queue", queue.declare(&channel)).await?;
            }
            Ok::<_, String>(Link {
                connection,
                channel,
            })
        }
        .await;
        self.inner
            .reachable
            .store(result.is_ok(), Ordering::Relaxed);
        match result {
            Ok(link) => {
                tracing::info!(exchange = %config.exchange, "connected to the broker");
                Ok(link)
            }
            Err(e) => Err(PublishError::Unavailable(e)),
        }
    }

    fn broken(&self, link: &mut Option<Link>, reason: String) -> PublishError {
        self.inner.reachable.store(false, Ordering::Relaxed);
        if let Some(dead) = link.take() {
            // Closed in the background, bounded: a half-dead connection must
            // not stay open beside the next one.
            tokio::spawn(async move {
                let _ = rpc("close", dead.connection.close(200, "reconnecting")).await;
            });
        }
        tracing::warn!(%reason, "broker connection lost");
        PublishError::Unavailable(reason)
    }
}

/// The AMQP properties of an envelope's message.
pub(crate) fn properties(envelope: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("version"),
        AMQPValue::LongUInt(envelope.version),
    );
    let mut properties = BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(DELIVERY_MODE_PERSISTENT)
        .with_message_id(ShortString::from(envelope.event_id.to_string()))
        .with_type(ShortString::from(envelope.event_type.as_str()))
        .with_app_id(ShortString::from(envelope.source.as_str()))
        .with_timestamp(envelope.occurred_at.unix_timestamp().max(0).unsigned_abs());
    if let Some(id) = &envelope.correlation_id {
        headers.insert(
            ShortString::from(HEADER_CORRELATION_ID),
            AMQPValue::LongString(LongString::from(id.as_str())),
        );
        properties = properties.with_correlation_id(ShortString::from(id.as_str()));
    }
    properties.with_headers(headers)
}

impl Publisher for RabbitPublisher {
    async fn publish(&self, batch: &[Envelope]) -> Result<(), PublishError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut guard = self.inner.link.lock().await;
        if guard
            .as_ref()
            .is_none_or(|l| !l.connection.status().connected() || !l.channel.status().connected())
        {
            *guard = None;
            *guard = Some(self.open().await?);
        }
        let Some(link) = guard.as_ref() else {
            return Err(PublishError::Unavailable("no connection".to_owned()));
        };
        let exchange = &self.inner.config.exchange;
        let sent = rpc("publish", async {
            let mut confirms = Vec::with_capacity(batch.len());
            for envelope in batch {
                let confirm = link
                    .channel
                    .basic_publish(
                        exchange,
                        &envelope.event_type,
                        BasicPublishOptions::default(),
                        &envelope.to_bytes(),
                        properties(envelope),
                    )
                    .await?;
                confirms.push(confirm);
            }
            Ok(confirms)
        })
        .await;
        let confirms = match sent {
            Ok(confirms) => confirms,
            Err(e) => return Err(self.broken(&mut guard, e)),
        };
        let confirmed = tokio::time::timeout(
            Duration::from_millis(CONFIRM_TIMEOUT_MS),
            futures_util::future::join_all(confirms),
        )
        .await;
        let Ok(confirmed) = confirmed else {
            return Err(self.broken(
                &mut guard,
                format!("no confirm within {CONFIRM_TIMEOUT_MS} ms"),
            ));
        };
        for confirm in confirmed {
            match confirm {
                Ok(Confirmation::Ack(_)) => {}
                Ok(Confirmation::Nack(_)) => {
                    return Err(PublishError::Refused("negative confirm".to_owned()))
                }
                Ok(Confirmation::NotRequested) => {
                    return Err(self.broken(&mut guard, "confirms are off".to_owned()))
                }
                Err(e) => return Err(self.broken(&mut guard, format!("confirm: {e}"))),
            }
        }
        self.inner.reachable.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn is_reachable(&self) -> bool {
        self.inner.reachable.load(Ordering::Relaxed)
    }
}
