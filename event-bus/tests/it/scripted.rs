//! A scripted run on the memory store, end to end through the relay and
//! RabbitMQ.

use std::sync::Arc;
use std::time::Duration;

use event_bus::rabbit::{ConsumerConfig, RabbitConfig, RabbitConsumer, RabbitPublisher};
use event_bus::{relay, Envelope, InventoryOutbox, Relay, RelayConfig};
use inventory_core::{Command, ProductId};
use inventory_memory::MemoryStore;
use test_support::rabbitmq::{broker, Topology};

use crate::common::{adjust, create, eventually, id, meta, reserve, shutdown};
use crate::support::{unique_spec, Recorder};

/// How long the whole run may take to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Every change of a scripted run (create, reserve, confirm, release,
/// expire, adjust, and a reserve that depletes) reaches a consumer as
/// exactly the expected events, in order, with the correlation id of the
/// request that caused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_run_produces_exactly_the_expected_events() {
    let Some(url) = broker().await else { return };
    let spec = unique_spec("scripted");
    let _topology = Topology::new(&url, &spec);
    let store = Arc::new(MemoryStore::new());
    let product = ProductId::from_uuid(id());

    // Arrange: the script, each step with its own request id.
    let run = |command: Command, ms: i64, request: &str| {
        store
            .execute_sync(command, &meta(ms, request))
            .expect("scripted step succeeds");
    };
    run(create(product, 10), 0, "req-create");
    let (first, r1) = reserve(product, 3, 60_000);
    run(first, 1, "req-reserve-1");
    run(Command::Confirm { reservation_id: r1 }, 2, "req-confirm");
    let (second, r2) = reserve(product, 2, 60_000);
    run(second, 3, "req-reserve-2");
    run(Command::Release { reservation_id: r2 }, 4, "req-release");
    let (third, _) = reserve(product, 1, 1_000);
    run(third, 5, "req-reserve-3");
    assert_eq!(store.expire_due_sync(&meta(2_000, "req-sweep"), 10), 1);
    run(adjust(product, -2), 2_001, "req-adjust");
    let (fourth, _) = reserve(product, 5, 60_000);
    run(fourth, 2_002, "req-reserve-4");

    let expected: Vec<Envelope> = store
        .unpublished_sync(100)
        .iter()
        .map(Envelope::from_inventory)
        .collect();
    let summary: Vec<(&str, Option<&str>)> = expected
        .iter()
        .map(|e| (e.event_type.as_str(), e.correlation_id.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("inventory.stock.adjusted", Some("req-create")),
            ("inventory.stock.reserved", Some("req-reserve-1")),
            ("inventory.stock.confirmed", Some("req-confirm")),
            ("inventory.stock.reserved", Some("req-reserve-2")),
            ("inventory.stock.released", Some("req-release")),
            ("inventory.stock.reserved", Some("req-reserve-3")),
            ("inventory.stock.expired", Some("req-sweep")),
            ("inventory.stock.adjusted", Some("req-adjust")),
            ("inventory.stock.reserved", Some("req-reserve-4")),
            ("inventory.stock.depleted", Some("req-reserve-4")),
        ]
    );

    // Act: relay to RabbitMQ, consume from the queue.
    let publisher = RabbitPublisher::new(RabbitConfig {
        url: url.clone(),
        exchange: spec.exchange.clone(),
        queues: vec![spec.clone()],
        connection_name: "scripted-relay".to_owned(),
    });
    let source = InventoryOutbox::new(Arc::clone(&store)).with_depth(|s| s.outbox_len() as u64);
    let relay = Relay::new(source, publisher.clone(), RelayConfig::default());
    let health = relay.health();
    let (stop_relay, relay_signal) = shutdown();
    let relay_task = relay::spawn(relay, relay_signal);
    let recorder = Recorder::new("scripted");
    let consumer = RabbitConsumer::new(
        ConsumerConfig::new(&url, spec.clone(), "scripted-consumer"),
        recorder.clone(),
    );
    let (stop_consumer, consumer_signal) = shutdown();
    let consumer_task = tokio::spawn(consumer.run(consumer_signal));

    // Assert: exactly those envelopes, once each, in order; outbox emptied.
    assert!(recorder.wait_applied(expected.len(), ARRIVAL_TIMEOUT).await);
    assert_eq!(recorder.applied(), expected);
    assert!(eventually(ARRIVAL_TIMEOUT, || health.published() == 10).await);
    assert_eq!(store.outbox_len(), 0);
    assert_eq!(recorder.deliveries(), 10, "no message was delivered twice");
    assert!(health.broker_reachable());

    let _ = stop_relay.send(());
    let _ = stop_consumer.send(());
    relay_task.await.expect("relay stops");
    consumer_task.await.expect("consumer stops");
    publisher.close().await;
}
