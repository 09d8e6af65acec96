//! [`RabbitConsumer`]: consumes a durable queue, hands each envelope to a
//! [`Handler`], acknowledges after the handler committed, and dead-letters
//! (with the reason in a header) what can never be applied.
//!
//! Messages are applied in [`ConsumerConfig::lanes`] ordered lanes: each
//! envelope goes to the lane of its ordering key (the product, for stock
//! events), and a lane applies its messages one at a time, in the order the
//! queue delivered them. So events of one key are applied in order, while
//! events of different keys are applied side by side (one lane, the
//! default, applies the whole queue in order).
//!
//! The retry policy is [`crate::consume`]'s. A transient failure is retried
//! in place, after jittered pauses growing from
//! [`ConsumerConfig::retry_delay_min_ms`] to at most
//! [`ConsumerConfig::retry_delay_max_ms`], **without an attempt limit**, until
//! the handler applies it or shutdown is asked (then the message is left
//! unacknowledged and the broker redelivers it): an outage of the handler's
//! store holds the queue, it never empties it into the dead-letter queue. The
//! message keeps its place in its lane, so later events of the same key wait
//! behind it and their order is kept. A malformed message or a permanent failure is
//! dead-lettered at once: republished to the dead-letter exchange (confirmed)
//! before the original is acknowledged, so it is never lost and never blocks
//! the queue.
//!
//! The connection is re-opened, with a bounded jittered back-off, whenever
//! it breaks; unacknowledged messages are then redelivered by the broker,
//! which the handler's deduplication absorbs. A retry that outlasts the
//! broker's `consumer_timeout` (RabbitMQ's default: 30 minutes) has its
//! channel closed by the broker: the ack fails, the consumer reconnects and
//! the message comes again, already applied or not.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::{mpsc, watch};

use super::{connect_with, rpc, AmqpTls, QueueSpec};
use crate::consume::{
    self, ConsumerHealth, Outcome, TRANSIENT_RETRY_DELAY_MAX_MS, TRANSIENT_RETRY_DELAY_MIN_MS,
};
use crate::envelope::Envelope;
use crate::handler::Handler;

/// Header of a dead-lettered message saying why it was dead-lettered.
pub const HEADER_DEAD_LETTER_REASON: &str = "x-dead-letter-reason";

/// Header of a dead-lettered message holding its original routing key.
pub const HEADER_ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";

/// Unacknowledged messages the broker sends ahead: enough to hide the round
/// trip, few enough that a crash redelivers little.
pub const PREFETCH_DEFAULT: u16 = 128;

/// Ordered lanes of a consumer, by default: one, the whole queue in order.
pub const LANES_DEFAULT: u16 = 1;

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
    /// Ordered lanes applying messages side by side, by ordering key (see
    /// the module doc); default [`LANES_DEFAULT`]. At most `prefetch`.
    pub lanes: u16,
    /// First pause between attempts at a transient failure (and between
    /// reconnections); default [`TRANSIENT_RETRY_DELAY_MIN_MS`].
    pub retry_delay_min_ms: u64,
    /// Longest pause between attempts at a transient failure (and between
    /// reconnections); default [`TRANSIENT_RETRY_DELAY_MAX_MS`]. There is no
    /// attempt limit: a transient failure is retried until it applies.
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
            lanes: LANES_DEFAULT,
            retry_delay_min_ms: TRANSIENT_RETRY_DELAY_MIN_MS,
            retry_delay_max_ms: TRANSIENT_RETRY_DELAY_MAX_MS,
        }
    }

    fn delays(&self) -> (u64, u64) {
        (self.retry_delay_min_ms, self.retry_delay_max_ms)
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        consume::backoff(self.retry_delay_min_ms, self.retry_delay_max_ms)
    }
}

/// Why the consumer stopped consuming (it reconnects after each).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerError {
    /// The broker could not be reached or the connection broke.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// A consumer of one queue.
#[derive(Debug)]
pub struct RabbitConsumer<H> {
    config: ConsumerConfig,
    tls: AmqpTls,
    handler: H,
    health: Arc<ConsumerHealth>,
}

/// What happened to one delivery.
enum Verdict {
    Applied,
    DeadLetter(String),
    /// Shutdown came during a retry pause: leave the message unacknowledged
    /// (the broker redelivers it).
    Abandoned,
}

impl<H: Handler> RabbitConsumer<H> {
    /// A consumer that is not running yet.
    pub fn new(config: ConsumerConfig, handler: H) -> Self {
        Self {
            config,
            tls: AmqpTls::default(),
            handler,
            health: Arc::new(ConsumerHealth::default()),
        }
    }

    /// The same consumer connecting to an `amqps://` URL with `tls`.
    pub fn with_tls(self, tls: AmqpTls) -> Self {
        Self { tls, ..self }
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
        let connection = connect_with(&self.config.url, &self.config.name, &self.tls)
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
            self.health.set_connected(true);
            self.health.record_session();
            tracing::info!(queue = %self.config.queue.queue, "consuming");
            let lanes = usize::from(self.config.lanes.clamp(1, self.config.prefetch.max(1)));
            // Each lane holds at most what the broker sends ahead.
            let lane_capacity = usize::from(self.config.prefetch.max(1));
            let (stop, stopping) = watch::channel(false);
            let mut senders = Vec::with_capacity(lanes);
            let mut running = FuturesUnordered::new();
            for _ in 0..lanes {
                let (send, receive) = mpsc::channel(lane_capacity);
                senders.push(send);
                running.push(self.lane(receive, &dead_letters, stopping.clone()));
            }
            let mut watchdog =
                tokio::time::interval(Duration::from_millis(CONNECTION_CHECK_INTERVAL_MS));
            let ended = loop {
                let delivery = tokio::select! {
                    () = shutdown.as_mut() => break Ok(()),
                    _ = watchdog.tick() => {
                        if !connection.status().connected() || !channel.status().connected() {
                            break Err("connection lost".to_owned());
                        }
                        continue;
                    }
                    Some(lane_ended) = running.next() => {
                        // A lane ends early only when its channel broke.
                        break lane_ended.and(Err("a lane stopped".to_owned()));
                    }
                    next = deliveries.next() => match next {
                        Some(Ok(delivery)) => delivery,
                        Some(Err(e)) => break Err(format!("receive: {e}")),
                        None => break Err("consumer cancelled".to_owned()),
                    },
                };
                let parsed = Envelope::from_bytes(&delivery.data).map_err(|e| e.to_string());
                let lane = parsed
                    .as_ref()
                    .map_or(0, |e| lane_of(e.ordering_key(), lanes));
                // A lane that stopped (its channel broke) ends the session
                // through `running`.
                let _ = senders[lane].send((delivery, parsed)).await;
            };
            // Lanes finish the message in hand (a retry pause is cut short)
            // and leave the rest unacknowledged, for the broker to redeliver.
            let _ = stop.send(true);
            drop(senders);
            while running.next().await.is_some() {}
            ended
        }
        .await;
        self.health.set_connected(false);
        close(&connection).await;
        result.map_err(ConsumerError::Unavailable)
    }

    /// One ordered lane: applies its deliveries one at a time, in order,
    /// until its sender is dropped or shutdown is asked. `Err` when the
    /// channel broke (an ack or a dead-letter failed).
    async fn lane(
        &self,
        mut deliveries: mpsc::Receiver<(Delivery, Result<Envelope, String>)>,
        dead_letters: &Channel,
        stopping: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let mut watching = stopping.clone();
        let shutdown = async move {
            let _ = watching.wait_for(|stop| *stop).await;
        };
        tokio::pin!(shutdown);
        while let Some((delivery, parsed)) = deliveries.recv().await {
            if *stopping.borrow() {
                return Ok(());
            }
            let verdict = match parsed {
                Ok(envelope) => self.verdict(&envelope, &mut shutdown).await,
                Err(reason) => Verdict::DeadLetter(reason),
            };
            match verdict {
                Verdict::Applied => self.health.record_applied(),
                Verdict::DeadLetter(reason) => {
                    self.dead_letter(dead_letters, &delivery, &reason).await?;
                    self.health.record_dead_lettered();
                }
                Verdict::Abandoned => return Ok(()),
            }
            rpc("ack", delivery.ack(BasicAckOptions::default())).await?;
        }
        Ok(())
    }

    /// Applies one envelope, retrying transient failures in place until
    /// they apply or shutdown is asked.
    async fn verdict(
        &self,
        envelope: &Envelope,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Verdict {
        let delays = self.config.delays();
        match consume::apply(&self.handler, envelope, delays, &self.health, shutdown).await {
            Outcome::Applied => Verdict::Applied,
            Outcome::Permanent(reason) => {
                Verdict::DeadLetter(format!("permanent failure: {reason}"))
            }
            Outcome::Shutdown => Verdict::Abandoned,
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

/// The lane of an ordering key: the same key always gets the same lane.
fn lane_of(key: &str, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same lane for a key in every process.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
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
