//! The embedded default: the relay publishing on the in-process bus, and
//! the in-process consumer's retry policy (transient failures retried until
//! they apply, permanent ones skipped and counted), under paused time.

use std::sync::Arc;
use std::time::Duration;

use event_bus::{
    relay, run_subscription, spawn_consumer, spawn_relay, AnyPublisher, Envelope, EventsConfig,
    InProcessBus, InventoryOutbox, Publisher, Relay, RelayConfig,
};
use inventory_core::{Command, ProductId};
use inventory_memory::MemoryStore;

use crate::common::{create, eventually, id, meta, reserve, shutdown, stock_envelope};
use crate::support::Recorder;

/// How long the events may take to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long, in paused (virtual) time, a consumer may retry before a test
/// gives up on it: far more than the retries take with the default pauses.
const RETRIES_VIRTUAL_TIMEOUT: Duration = Duration::from_secs(3_600);

/// Transient failures of one event: far more than the single retry after
/// which the in-process consumer used to drop it.
const TRANSIENT_FAILURES: u32 = 20;

/// A subscriber of the in-process bus receives the same envelopes the
/// RabbitMQ path carries, in order.
#[tokio::test]
async fn subscriber_receives_the_same_envelopes() {
    let store = Arc::new(MemoryStore::new());
    let product = ProductId::from_uuid(id());
    store
        .execute_sync(create(product, 5), &meta(0, "req-1"))
        .expect("create");
    let (command, reservation_id) = reserve(product, 2, 60_000);
    store
        .execute_sync(command, &meta(1, "req-2"))
        .expect("reserve");
    store
        .execute_sync(Command::Confirm { reservation_id }, &meta(2, "req-3"))
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
        event_bus::rabbit::LANES_DEFAULT,
        recorder.clone(),
        &bus,
        consumer_signal,
    )
    .expect("subscribe");
    assert!(consumer.health.as_ref().is_some_and(|h| h.is_connected()));
    let source = InventoryOutbox::new(Arc::clone(&store)).with_depth(|s| s.outbox_len() as u64);
    let (stop_relay, relay_signal) = shutdown();
    let relay = spawn_relay(source, &config, &bus, relay_signal);

    let product = ProductId::from_uuid(id());
    store
        .execute_sync(create(product, 2), &meta(0, "req-1"))
        .expect("create");
    let (command, _) = reserve(product, 2, 60_000);
    store
        .execute_sync(command, &meta(1, "req-2"))
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

/// An event whose handler fails transiently 20 times (its store is down) is
/// applied exactly once when the store is back, before the event behind it:
/// nothing is dropped.
#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_until_applied_in_process() {
    let bus = InProcessBus::new();
    let subscription = bus.subscribe("inventory.stock.").expect("subscribe");
    let recorder = Recorder::failing_transiently("retry", TRANSIENT_FAILURES);
    let (stop, signal) = shutdown();
    let task = tokio::spawn(run_subscription(subscription, recorder.clone(), signal));
    let events = [
        stock_envelope("inventory.stock.adjusted", "fail-transiently", 1),
        stock_envelope("inventory.stock.adjusted", "ok", 2),
    ];

    bus.publish(&events).await.expect("published");
    let applied = recorder
        .wait_applied(events.len(), RETRIES_VIRTUAL_TIMEOUT)
        .await;

    assert!(applied, "applied: {:?}", recorder.applied());
    assert_eq!(recorder.applied(), events);
    assert_eq!(
        recorder.deliveries(),
        u64::from(TRANSIENT_FAILURES) + 2,
        "21 attempts at the first event, one at the second"
    );
    let _ = stop.send(());
    task.await.expect("consumer stops");
}

/// A permanent failure is skipped at once, counted as dead-lettered, and
/// does not hold the event behind it.
#[tokio::test(start_paused = true)]
async fn permanent_failure_is_skipped_and_counted_in_process() {
    let bus = InProcessBus::new();
    let recorder = Recorder::new("permanent");
    let (stop, signal) = shutdown();
    let consumer = spawn_consumer(
        None,
        EventsConfig::orders_inventory_queue(),
        "orders",
        event_bus::rabbit::LANES_DEFAULT,
        recorder.clone(),
        &bus,
        signal,
    )
    .expect("subscribe");
    let health = consumer.health.clone().expect("in-process counts");
    let good = stock_envelope("inventory.stock.adjusted", "ok", 1);

    bus.publish(&[
        stock_envelope("inventory.stock.exploded", "ok", 0),
        good.clone(),
    ])
    .await
    .expect("published");
    let applied = recorder.wait_applied(1, ARRIVAL_TIMEOUT).await;

    assert!(applied);
    assert_eq!(recorder.applied(), [good]);
    assert!(eventually(ARRIVAL_TIMEOUT, || health.applied() == 1).await);
    assert_eq!(health.dead_lettered(), 1);
    assert_eq!(health.retried(), 0);
    assert!(health.is_connected());
    let _ = stop.send(());
    consumer.task.await.expect("consumer stops");
    assert!(!health.is_connected());
}

/// A consumer retrying an event whose store stays down stops as soon as
/// shutdown is asked, without waiting out its pause.
#[tokio::test(start_paused = true)]
async fn shutdown_stops_transient_retries_in_process() {
    let bus = InProcessBus::new();
    let subscription = bus.subscribe("inventory.stock.").expect("subscribe");
    let recorder = Recorder::new("stop");
    let (stop, signal) = shutdown();
    let task = tokio::spawn(run_subscription(subscription, recorder.clone(), signal));
    bus.publish(&[stock_envelope(
        "inventory.stock.adjusted",
        "fail-transiently",
        1,
    )])
    .await
    .expect("published");
    let retrying = eventually(RETRIES_VIRTUAL_TIMEOUT, || recorder.deliveries() >= 3).await;

    let _ = stop.send(());
    // Paused time only moves when every task waits: a consumer still sleeping
    // until its next attempt would let this timeout fire first.
    let stopped = tokio::time::timeout(Duration::from_millis(1), task).await;

    assert!(retrying);
    assert!(stopped.is_ok(), "the consumer did not stop promptly");
    assert!(recorder.applied().is_empty());
}
