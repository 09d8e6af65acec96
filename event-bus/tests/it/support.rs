//! Test plumbing: uniquely named queue specs, publishing, and a recording
//! handler. The broker itself (or why a test is skipped) and the deletion
//! of a test's topology come from `test_support::rabbitmq`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use event_bus::rabbit::{self, ConsumerConfig};
use event_bus::{Dedup, Envelope, Handler, HandlerError, MemoryDedup, QueueSpec};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};
use parking_lot::Mutex;
use test_support::rabbitmq::unique;
use tokio::sync::watch;

/// A queue spec with unique names, bound to a unique exchange for every
/// inventory stock event.
pub(crate) fn unique_spec(what: &str) -> QueueSpec {
    QueueSpec::new(
        &unique(&format!("{what}.queue")),
        &unique(&format!("{what}.exchange")),
        "inventory.stock.#",
    )
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
