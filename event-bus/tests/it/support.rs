//! Test plumbing: the broker to use (or why a test is skipped), uniquely
//! named topology deleted when a test ends, and a recording handler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use event_bus::rabbit::ConsumerConfig;
use event_bus::rabbit::{self, LOCAL_AMQP_URL};
use event_bus::{Dedup, Envelope, Handler, HandlerError, MemoryDedup, QueueSpec};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::{BasicProperties, Channel, Connection};
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::watch;

/// Prints why a test is skipped, or fails it when `REQUIRE_SERVICES=1`.
pub(crate) fn skip(reason: &str) {
    if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("REQUIRE_SERVICES=1 but {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// The broker URL: `TEST_AMQP_URL`, else `AMQP_URL`, else the local broker.
pub(crate) fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .or_else(|_| std::env::var("AMQP_URL"))
        .unwrap_or_else(|_| LOCAL_AMQP_URL.to_owned())
}

/// The broker URL when it answers; `None` (after printing why) otherwise,
/// unless `REQUIRE_SERVICES=1`, which fails the test.
pub(crate) async fn broker() -> Option<String> {
    let url = amqp_url();
    match rabbit::connect(&url, "event-bus-test-probe").await {
        Ok(connection) => {
            let _ = connection.close(200, "probe").await;
            Some(url)
        }
        Err(e) => {
            skip(&format!("RabbitMQ at {url} is unreachable: {e}"));
            None
        }
    }
}

/// A name no other test uses.
pub(crate) fn unique(what: &str) -> String {
    format!("test.{what}.{:012x}", rand::rng().random::<u64>() >> 16)
}

/// A queue spec with unique names, bound to a unique exchange for every
/// inventory stock event.
pub(crate) fn unique_spec(what: &str) -> QueueSpec {
    QueueSpec::new(
        &unique(&format!("{what}.queue")),
        &unique(&format!("{what}.exchange")),
        "inventory.stock.#",
    )
}

/// Deletes a spec's exchanges and queues when dropped (also when a test
/// fails).
pub(crate) struct Topology {
    url: String,
    spec: QueueSpec,
}

impl Topology {
    pub(crate) fn new(url: &str, spec: &QueueSpec) -> Self {
        Self {
            url: url.to_owned(),
            spec: spec.clone(),
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let (url, spec) = (self.url.clone(), self.spec.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                let Ok(connection) = rabbit::connect(&url, "event-bus-test-cleanup").await else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for queue in [&spec.queue, &spec.dead_letter_queue] {
                        let _ = channel
                            .queue_delete(queue, QueueDeleteOptions::default())
                            .await;
                    }
                    for exchange in [&spec.exchange, &spec.dead_letter_exchange] {
                        let _ = channel
                            .exchange_delete(exchange, ExchangeDeleteOptions::default())
                            .await;
                    }
                }
                let _ = connection.close(200, "cleanup").await;
            });
        });
        let _ = cleanup.join();
    }
}

/// What a [`Recorder`] saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Every delivery, duplicates included.
    pub(crate) deliveries: u64,
    /// Envelopes applied (first time only), in order.
    pub(crate) applied: Vec<Envelope>,
    /// Transient failures returned so far, per event id.
    pub(crate) transient_failures: HashMap<uuid::Uuid, u32>,
}

/// The event types a consumer of inventory knows.
pub(crate) const STOCK_EVENT_TYPES: [&str; 6] = [
    "inventory.stock.reserved",
    "inventory.stock.confirmed",
    "inventory.stock.released",
    "inventory.stock.expired",
    "inventory.stock.depleted",
    "inventory.stock.adjusted",
];

/// A handler that deduplicates by `event_id` and records each effect once.
/// Event types it does not know are a permanent failure; an event whose
/// correlation id is `fail-transiently` fails transiently on its first
/// `transient_failures_max` deliveries (by default: always), then applies.
#[derive(Clone)]
pub(crate) struct Recorder {
    name: String,
    dedup: MemoryDedup,
    seen: Arc<Mutex<Seen>>,
    applied_count: Arc<watch::Sender<usize>>,
    /// When set: after applying this many events the handler does not
    /// return (the message stays unacknowledged) until the gate opens.
    gate: Option<(usize, watch::Receiver<bool>)>,
    /// Deliveries of each `fail-transiently` event that fail.
    transient_failures_max: u32,
}

impl Recorder {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            dedup: MemoryDedup::new(),
            seen: Arc::default(),
            applied_count: Arc::new(watch::channel(0).0),
            gate: None,
            transient_failures_max: u32::MAX,
        }
    }

    /// A recorder whose `fail-transiently` events fail transiently `times`
    /// times each, then apply.
    pub(crate) fn failing_transiently(name: &str, times: u32) -> Self {
        Self {
            transient_failures_max: times,
            ..Self::new(name)
        }
    }

    /// A recorder that holds the `at`-th applied event unacknowledged until
    /// `open` turns true.
    pub(crate) fn gated(name: &str, at: usize, open: watch::Receiver<bool>) -> Self {
        Self {
            gate: Some((at, open)),
            ..Self::new(name)
        }
    }

    /// Waits until `count` events were applied, at most `timeout`.
    pub(crate) async fn wait_applied(&self, count: usize, timeout: Duration) -> bool {
        let mut receiver = self.applied_count.subscribe();
        let arrived = tokio::time::timeout(timeout, receiver.wait_for(|n| *n >= count)).await;
        arrived.is_ok()
    }

    /// Applied envelopes, in order.
    pub(crate) fn applied(&self) -> Vec<Envelope> {
        self.seen.lock().applied.clone()
    }

    /// Every delivery, duplicates included.
    pub(crate) fn deliveries(&self) -> u64 {
        self.seen.lock().deliveries
    }
}

impl Handler for Recorder {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        self.seen.lock().deliveries += 1;
        if !STOCK_EVENT_TYPES.contains(&envelope.event_type.as_str()) {
            return Err(HandlerError::Permanent(format!(
                "unknown event type {}",
                envelope.event_type
            )));
        }
        if envelope.correlation_id.as_deref() == Some("fail-transiently") {
            let mut seen = self.seen.lock();
            let failures = seen
                .transient_failures
                .entry(envelope.event_id)
                .or_default();
            if *failures < self.transient_failures_max {
                *failures += 1;
                return Err(HandlerError::Transient(
                    "the effect store is down".to_owned(),
                ));
            }
        }
        if self.dedup.first_time(&self.name, envelope.event_id).await? {
            let count = {
                let mut seen = self.seen.lock();
                seen.applied.push(envelope.clone());
                seen.applied.len()
            };
            self.applied_count.send_replace(count);
            if let Some((at, open)) = &self.gate {
                if count == *at {
                    let mut open = open.clone();
                    let _ = open.wait_for(|open| *open).await;
                }
            }
        }
        Ok(())
    }
}

/// Checks that per ordering key, the applied `quantity_after` values (of
/// adjusted events) grow by one at a time: every event once, in order.
pub(crate) fn assert_in_order_per_product(applied: &[Envelope]) {
    let mut last: HashMap<String, u64> = HashMap::new();
    for (position, envelope) in applied.iter().enumerate() {
        let after = envelope.payload["quantity_after"]
            .as_u64()
            .expect("adjusted events carry quantity_after");
        let key = envelope.ordering_key().to_owned();
        if let Some(previous) = last.get(&key) {
            if after != previous + 1 {
                let history: Vec<(usize, u64)> = applied
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.ordering_key() == key)
                    .map(|(i, e)| (i, e.payload["quantity_after"].as_u64().unwrap_or(0)))
                    .collect();
                panic!(
                    "product {key} out of order at position {position}: {after} after \
                     {previous}; its events (position, quantity_after): {history:?}"
                );
            }
        }
        last.insert(key, after);
    }
}

/// Publishes `envelopes` persistently to `spec`'s exchange (routing key =
/// event type), each confirmed before the next.
pub(crate) async fn publish(channel: &Channel, spec: &QueueSpec, envelopes: &[Envelope]) {
    for envelope in envelopes {
        channel
            .basic_publish(
                &spec.exchange,
                &envelope.event_type,
                BasicPublishOptions::default(),
                &envelope.to_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
    }
}

/// A connection and a confirming channel with `spec` declared.
pub(crate) async fn publisher(url: &str, spec: &QueueSpec) -> (Connection, Channel) {
    let connection = rabbit::connect(url, "test-publisher")
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    spec.declare(&channel).await.expect("declare");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    (connection, channel)
}

/// Short pauses so that many retries take little time.
pub(crate) fn quick_config(url: &str, spec: &QueueSpec, name: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(url, spec.clone(), name);
    config.retry_delay_min_ms = 5;
    config.retry_delay_max_ms = 20;
    config
}
