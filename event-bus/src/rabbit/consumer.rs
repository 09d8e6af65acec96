//! [`RabbitConsumer`]: consumes a durable queue one message at a time, hands
//! each envelope to a [`Handler`], acknowledges after the handler committed,
//! and dead-letters (with the reason in a header) what cannot be applied.
//!
//! A transient failure is retried in place, after a short jittered pause, up
//! to [`ConsumerConfig::attempts_max`] attempts; the message keeps its place,
//! so later events of the same product wait behind it and order is kept.
//! Then it is dead-lettered, as a malformed message or a permanent failure is
//! at once. A dead-lettered message is republished to the dead-letter
//! exchange (confirmed) before the original is acknowledged, so it is never
//! lost and never blocks the queue. The connection is re-opened, with a
//! bounded jittered back-off, whenever it breaks; unacknowledged messages are
//! then redelivered by the broker, which the handler's deduplication absorbs.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};

use super::{connect, rpc, QueueSpec};
use crate::envelope::Envelope;
use crate::handler::{Handler, HandlerError};

/// Header of a dead-lettered message saying why it was dead-lettered.
pub const HEADER_DEAD_LETTER_REASON: &str = "x-dead-letter-reason";

/// Header of a dead-lettered message holding its original routing key.
pub const HEADER_ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";

/// Attempts at a transiently failing event before it is dead-lettered.
pub const ATTEMPTS_DEFAULT_MAX: u32 = 5;

/// Unacknowledged messages the broker sends ahead: enough to hide the round
/// trip, few enough that a crash redelivers little.
pub const PREFETCH_DEFAULT: u16 = 128;

/// How often an idle consumer checks that its connection is still open: a
/// stream that missed the connection's end must not wait forever.
const CONNECTION_CHECK_INTERVAL_MS: u64 = 1_000;

/// Longest reason written in the dead-letter header, in bytes.
const REASON_LEN_MAX: usize = 512;

/// Where to consume from and how hard to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// `amqp://user:pass@host:port/vhost`.
    pub url: String,
    /// The queue, its bindings and its dead-letter queue.
    pub queue: QueueSpec,
    /// Connection name and consumer tag.
    pub name: String,
    /// See [`PREFETCH_DEFAULT`].
    pub prefetch: u16,
    /// See [`ATTEMPTS_DEFAULT_MAX`].
    pub attempts_max: u32,
    /// First pause between attempts at a transient failure.
    pub retry_delay_min_ms: u64,
    /// Longest pause between attempts (also caps the reconnect back-off).
    pub retry_delay_max_ms: u64,
}

impl ConsumerConfig {
    /// Defaults for `queue` on the broker at `url`.
    pub fn new(url: &str, queue: QueueSpec, name: &str) -> Self {
        Self {
            url: url.to_owned(),
            queue,
            name: name.to_owned(),
            prefetch: PREFETCH_DEFAULT,
            attempts_max: ATTEMPTS_DEFAULT_MAX,
            retry_delay_min_ms: 50,
            retry_delay_max_ms: 2_000,
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.retry_delay_min_ms))
            .with_max_delay(Duration::from_millis(self.retry_delay_max_ms))
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// Why the consumer stopped consuming (it reconnects after each).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerError {
    /// The broker could not be reached or the connection broke.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// What a running consumer has done, for readiness and metrics.
#[derive(Debug, Default)]
pub struct ConsumerHealth {
    connected: AtomicBool,
    sessions: AtomicU64,
    applied: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

impl ConsumerHealth {
    /// Whether the consumer is connected and consuming.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Times the consumer started consuming (1 + reconnections).
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Messages the handler accepted (acknowledged).
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Attempts repeated after a transient failure.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Messages sent to the dead-letter queue.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
}

/// A consumer of one queue.
#[derive(Debug)]
pub struct RabbitConsumer<H> {
    config: ConsumerConfig,
    handler: H,
    health: Arc<ConsumerHealth>,
}

/// What happened to one delivery.
enum Verdict {
    Applied,
    DeadLetter(String),
    /// Shutdown came during a retry pause: leave the message unacknowledged.
    Abandoned,
}

impl<H: Handler> RabbitConsumer<H> {
    /// A consumer that is not running yet.
    pub fn new(config: ConsumerConfig, handler: H) -> Self {
        Self {
            config,
            handler,
            health: Arc::new(ConsumerHealth::default()),
        }
    }

    /// Its health, shared with the running consumer.
    pub fn health(&self) -> Arc<ConsumerHealth> {
        Arc::clone(&self.health)
    }

    /// Consumes until `shutdown` resolves, reconnecting whenever the
    /// connection breaks. Unacknowledged messages go back to the queue.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut backoff = self.config.backoff();
        loop {
            let sessions_before = self.health.sessions();
            let session = self.session(&mut shutdown);
            match session.await {
                Ok(()) => return,
                Err(ConsumerError::Unavailable(reason)) => {
                    // A session that got as far as consuming resets the back-off.
                    if self.health.sessions() > sessions_before {
                        backoff = self.config.backoff();
                    }
                    let pause = backoff.next().unwrap_or(Duration::from_secs(1));
                    tracing::warn!(%reason, pause_ms = pause.as_millis() as u64, "consumer disconnected");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// One connection's worth of consuming. `Ok` means shutdown.
    async fn session(
        &self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), ConsumerError> {
        let connection = connect(&self.config.url, &self.config.name)
            .await
            .map_err(ConsumerError::Unavailable)?;
        let result = async {
            let channel = rpc("open channel", connection.create_channel()).await?;
            rpc("declare topology", self.config.queue.declare(&channel)).await?;
            let qos = channel.basic_qos(self.config.prefetch, BasicQosOptions::default());
            rpc("set prefetch", qos).await?;
            let dead_letters = rpc("open channel", connection.create_channel()).await?;
            let confirms = dead_letters.confirm_select(ConfirmSelectOptions::default());
            rpc("enable confirms", confirms).await?;
            let consume = channel.basic_consume(
                &self.config.queue.queue,
                &self.config.name,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            );
            let mut deliveries = rpc("consume", consume).await?;
            self.health.connected.store(true, Ordering::Relaxed);
            self.health.sessions.fetch_add(1, Ordering::Relaxed);
            tracing::info!(queue = %self.config.queue.queue, "consuming");
            let mut watchdog =
                tokio::time::interval(Duration::from_millis(CONNECTION_CHECK_INTERVAL_MS));
            loop {
                let delivery = tokio::select! {
                    () = shutdown.as_mut() => return Ok(()),
                    _ = watchdog.tick() => {
                        if !connection.status().connected() || !channel.status().connected() {
                            return Err("connection lost".to_owned());
                        }
                        continue;
                    }
                    next = deliveries.next() => match next {
                        Some(Ok(delivery)) => delivery,
                        Some(Err(e)) => return Err(format!("receive: {e}")),
                        None => return Err("consumer cancelled".to_owned()),
                    },
                };
                match self.verdict(&delivery, shutdown).await {
                    Verdict::Applied => {
                        self.health.applied.fetch_add(1, Ordering::Relaxed);
                    }
                    Verdict::DeadLetter(reason) => {
                        self.dead_letter(&dead_letters, &delivery, &reason).await?;
                        self.health.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    }
                    Verdict::Abandoned => return Ok(()),
                }
                rpc("ack", delivery.ack(BasicAckOptions::default())).await?;
            }
        }
        .await;
        self.health.connected.store(false, Ordering::Relaxed);
        close(&connection).await;
        result.map_err(ConsumerError::Unavailable)
    }

    /// Parses and applies one delivery, retrying transient failures in place.
    async fn verdict(
        &self,
        delivery: &Delivery,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Verdict {
        let envelope = match Envelope::from_bytes(&delivery.data) {
            Ok(envelope) => envelope,
            Err(e) => return Verdict::DeadLetter(e.to_string()),
        };
        let mut pauses = self.config.backoff();
        let mut attempt = 1;
        loop {
            match self.handler.handle(&envelope).await {
                Ok(()) => return Verdict::Applied,
                Err(HandlerError::Permanent(reason)) => {
                    return Verdict::DeadLetter(format!("permanent failure: {reason}"))
                }
                Err(HandlerError::Transient(reason)) if attempt >= self.config.attempts_max => {
                    return Verdict::DeadLetter(format!(
                        "transient failure after {attempt} attempts: {reason}"
                    ))
                }
                Err(HandlerError::Transient(reason)) => {
                    tracing::warn!(event_id = %envelope.event_id, attempt, %reason, "event not applied yet, retrying");
                    self.health.retried.fetch_add(1, Ordering::Relaxed);
                    let pause = pauses.next().unwrap_or(Duration::from_secs(1));
                    tokio::select! {
                        () = shutdown.as_mut() => return Verdict::Abandoned,
                        () = tokio::time::sleep(pause) => {}
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Republishes `delivery` to the dead-letter exchange with `reason`, and
    /// waits for the broker's confirm.
    async fn dead_letter(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<(), String> {
        tracing::error!(routing_key = %delivery.routing_key, %reason, "dead-lettering a message");
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            ShortString::from(HEADER_DEAD_LETTER_REASON),
            AMQPValue::LongString(LongString::from(cut(reason, REASON_LEN_MAX))),
        );
        headers.insert(
            ShortString::from(HEADER_ORIGINAL_ROUTING_KEY),
            AMQPValue::LongString(LongString::from(delivery.routing_key.as_str())),
        );
        let properties: BasicProperties = delivery.properties.clone().with_headers(headers);
        let publish = channel.basic_publish(
            &self.config.queue.dead_letter_exchange,
            delivery.routing_key.as_str(),
            BasicPublishOptions::default(),
            &delivery.data,
            properties,
        );
        let confirm = rpc("dead-letter", publish).await?;
        match rpc("dead-letter confirm", confirm).await? {
            Confirmation::Ack(_) => Ok(()),
            other => Err(format!("dead-letter not confirmed: {other:?}")),
        }
    }
}

async fn close(connection: &Connection) {
    if connection.status().connected() {
        // A connection that died unnoticed never answers the close.
        let _ = rpc("close", connection.close(200, "closing")).await;
    }
}

fn cut(text: &str, len_max: usize) -> &str {
    if text.len() <= len_max {
        return text;
    }
    let mut end = len_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
