//! The broker itself closes every connection mid-run (`rabbitmqctl
//! close_all_connections` on the test's own vhost).

use std::sync::Arc;
use std::time::Duration;

use event_bus::rabbit::{ConsumerConfig, RabbitConfig, RabbitConsumer, RabbitPublisher};
use event_bus::{relay, InventoryOutbox, Relay, RelayConfig};
use inventory_core::ProductId;
use inventory_memory::MemoryStore;
use test_support::rabbitmq::broker;

use crate::common::{adjust, create, id, meta, shutdown};
use crate::faults::Vhost;
use crate::support::{assert_in_order_per_product, unique_spec, Recorder};

/// Events in the run.
const EVENTS: usize = 10_000;

/// Products they are spread over.
const PRODUCTS: usize = 8;

/// The consumer holds this event unacknowledged until the broker has closed
/// the connections, so the close always finds messages in flight.
const HELD_AT: usize = 3_000;

/// Bound on each phase.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Every one of 10,000 events is applied exactly once, in order per product,
/// although the broker closes every connection of relay and consumer while
/// the consumer holds unacknowledged messages (and the relay has thousands
/// of events to publish).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_closing_every_connection_loses_nothing() {
    let Some(url) = broker().await else { return };
    let Some((vhost, url)) = Vhost::create(&url).await else {
        return;
    };
    let spec = unique_spec("close");
    let store = Arc::new(MemoryStore::new());
    let products: Vec<ProductId> = (0..PRODUCTS).map(|_| ProductId::from_uuid(id())).collect();
    for product in &products {
        store
            .execute_sync(create(*product, 1), &meta(0, "setup"))
            .expect("create");
    }
    store.drain(usize::MAX);
    let publisher = RabbitPublisher::new(RabbitConfig {
        url: url.clone(),
        exchange: spec.exchange.clone(),
        queues: vec![spec.clone()],
        connection_name: "close-relay".to_owned(),
    });
    let config = RelayConfig {
        backoff_min_ms: 20,
        backoff_max_ms: 500,
        ..RelayConfig::default()
    };
    let relay = Relay::new(
        InventoryOutbox::new(Arc::clone(&store)),
        publisher.clone(),
        config,
    );
    let health = relay.health();
    let (stop_relay, relay_signal) = shutdown();
    let relay_task = relay::spawn(relay, relay_signal);
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let recorder = Recorder::gated("close", HELD_AT, gate);
    let mut consumer_config = ConsumerConfig::new(&url, spec.clone(), "close-consumer");
    consumer_config.retry_delay_max_ms = 500;
    let consumer = RabbitConsumer::new(consumer_config, recorder.clone());
    let consumer_health = consumer.health();
    let (stop_consumer, consumer_signal) = shutdown();
    let consumer_task = tokio::spawn(consumer.run(consumer_signal));

    let write = |from: usize, to: usize| {
        for n in from..to {
            let request = format!("req-{n}");
            store
                .execute_sync(adjust(products[n % PRODUCTS], 1), &meta(n as i64, &request))
                .expect("adjust");
        }
    };
    write(0, EVENTS / 2);
    assert!(
        recorder.wait_applied(HELD_AT, PHASE_TIMEOUT).await,
        "first events arrive"
    );
    // The consumer now holds an event; the relay gets more to publish.
    write(EVENTS / 2, EVENTS);
    vhost.close_all_connections().await;
    let applied_at_close = recorder.applied().len();
    open_gate.send_replace(true);

    assert!(
        recorder.wait_applied(EVENTS, PHASE_TIMEOUT).await,
        "all events arrive"
    );
    let applied = recorder.applied();
    assert_eq!(applied.len(), EVENTS);
    let mut ids: Vec<_> = applied.iter().map(|e| e.event_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), EVENTS, "no effect applied twice");
    assert_in_order_per_product(&applied);
    assert_eq!(
        applied_at_close, HELD_AT,
        "the close came while an event was held"
    );
    assert!(
        consumer_health.sessions() >= 2,
        "the consumer had to reconnect"
    );
    eprintln!(
        "broker close: {EVENTS} events applied once each; {} deliveries; {applied_at_close} \
         applied when the broker closed the connections; consumer sessions {}; relay failures {}",
        recorder.deliveries(),
        consumer_health.sessions(),
        health.failures(),
    );

    let _ = stop_relay.send(());
    let _ = stop_consumer.send(());
    relay_task.await.expect("relay stops");
    consumer_task.await.expect("consumer stops");
    publisher.close().await;
    drop(vhost);
}
