//! The embedded default: the relay publishing on the in-process bus.

use std::sync::Arc;
use std::time::Duration;

use event_bus::{
    relay, spawn_consumer, spawn_relay, AnyPublisher, Envelope, EventsConfig, InProcessBus,
    InventoryOutbox, Relay, RelayConfig,
};
use inventory_core::{Command, ProductId};
use inventory_memory::MemoryStore;

use crate::common::{create, id, meta, reserve, shutdown};
use crate::support::Recorder;

/// How long the events may take to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A subscriber of the in-process bus receives the same envelopes the
/// RabbitMQ path carries, in order.
#[tokio::test]
async fn subscriber_receives_the_same_envelopes() {
    let store = Arc::new(MemoryStore::new());
    let product = ProductId::from_uuid(id());
    store
        .execute_sync(&create(product, 5), &meta(0, "req-1"))
        .expect("create");
    let (command, reservation_id) = reserve(product, 2, 60_000);
    store
        .execute_sync(&command, &meta(1, "req-2"))
        .expect("reserve");
    store
        .execute_sync(&Command::Confirm { reservation_id }, &meta(2, "req-3"))
        .expect("confirm");
    let expected: Vec<Envelope> = store
        .unpublished_sync(100)
        .iter()
        .map(Envelope::from_inventory)
        .collect();
    let bus = InProcessBus::new();
    let mut subscription = bus.subscribe("inventory.stock.").expect("subscribe");
    let relay = Relay::new(
        InventoryOutbox::new(Arc::clone(&store)),
        bus.clone(),
        RelayConfig::default(),
    );
    let (stop, signal) = shutdown();
    let task = relay::spawn(relay, signal);

    let mut received = Vec::new();
    for _ in 0..expected.len() {
        let next = tokio::time::timeout(ARRIVAL_TIMEOUT, subscription.recv())
            .await
            .expect("an envelope arrives in time")
            .expect("the bus is open");
        received.push((*next).clone());
    }

    assert_eq!(received, expected);
    let _ = stop.send(());
    task.await.expect("relay stops");
    assert_eq!(store.outbox_len(), 0);
}

/// With no AMQP URL, the servers' helpers wire a relay and a consumer
/// through the in-process bus: the consumer's handler applies every event.
#[tokio::test]
async fn wiring_without_a_broker_uses_the_in_process_bus() {
    let store = Arc::new(MemoryStore::new());
    let config = EventsConfig {
        amqp_url: None,
        ..EventsConfig::inventory_from_env().expect("valid environment")
    };
    assert!(matches!(
        config.publisher(&InProcessBus::new()),
        AnyPublisher::InProcess(_)
    ));
    let bus = InProcessBus::new();
    let recorder = Recorder::new("wiring");
    let (stop_consumer, consumer_signal) = shutdown();
    let consumer = spawn_consumer(
        None,
        EventsConfig::orders_inventory_queue(),
        "orders",
        recorder.clone(),
        &bus,
        consumer_signal,
    )
    .expect("subscribe");
    assert!(consumer.health.is_none());
    let source = InventoryOutbox::new(Arc::clone(&store)).with_depth(|s| s.outbox_len() as u64);
    let (stop_relay, relay_signal) = shutdown();
    let relay = spawn_relay(source, &config, &bus, relay_signal);

    let product = ProductId::from_uuid(id());
    store
        .execute_sync(&create(product, 2), &meta(0, "req-1"))
        .expect("create");
    let (command, _) = reserve(product, 2, 60_000);
    store
        .execute_sync(&command, &meta(1, "req-2"))
        .expect("reserve");

    assert!(recorder.wait_applied(3, ARRIVAL_TIMEOUT).await);
    let types: Vec<String> = recorder
        .applied()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "inventory.stock.adjusted",
            "inventory.stock.reserved",
            "inventory.stock.depleted"
        ]
    );
    assert!(relay.health.is_ready());
    let _ = stop_relay.send(());
    let _ = stop_consumer.send(());
    relay.task.await.expect("relay stops");
    consumer.task.await.expect("consumer stops");
}
