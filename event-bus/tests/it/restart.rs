//! 10,000 events through RabbitMQ while every connection to the broker is
//! cut by force mid-run and refused for a while, as in a broker restart.

use std::sync::Arc;
use std::time::Duration;

use event_bus::rabbit::{ConsumerConfig, RabbitConfig, RabbitConsumer, RabbitPublisher};
use event_bus::{relay, InventoryOutbox, Relay, RelayConfig};
use inventory_core::ProductId;
use inventory_memory::MemoryStore;
use test_support::rabbitmq::{broker, Topology};

use crate::common::{adjust, create, eventually, id, meta, shutdown};
use crate::faults::Proxy;
use crate::support::{assert_in_order_per_product, unique_spec, Recorder};

/// Events in the run.
const EVENTS: usize = 10_000;

/// Products they are spread over.
const PRODUCTS: usize = 10;

/// Events applied before the connections are cut.
const CUT_AFTER: usize = 2_000;

/// Bound on each phase of the run.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Every one of 10,000 events arrives and is applied exactly once, in order
/// per product, although the connections of relay and consumer are cut mid
/// run: the outbox holds what could not be sent, duplicates are absorbed by
/// the consumer's deduplication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_survive_a_forced_disconnect() {
    let Some(url) = broker().await else { return };
    let spec = unique_spec("restart");
    let _topology = Topology::new(&url, &spec);
    let (proxy, proxied) = Proxy::start(&url).await;
    let store = Arc::new(MemoryStore::new());
    let products: Vec<ProductId> = (0..PRODUCTS).map(|_| ProductId::from_uuid(id())).collect();
    for product in &products {
        store
            .execute_sync(create(*product, 1), &meta(0, "setup"))
            .expect("create");
    }
    store.drain(usize::MAX);
    let write = |from: usize, to: usize| {
        for n in from..to {
            let request = format!("req-{n}");
            store
                .execute_sync(adjust(products[n % PRODUCTS], 1), &meta(n as i64, &request))
                .expect("adjust");
        }
    };

    let publisher = RabbitPublisher::new(RabbitConfig {
        url: proxied.clone(),
        exchange: spec.exchange.clone(),
        queues: vec![spec.clone()],
        connection_name: "restart-relay".to_owned(),
    });
    let config = RelayConfig {
        backoff_min_ms: 20,
        backoff_max_ms: 500,
        ..RelayConfig::default()
    };
    let source = InventoryOutbox::new(Arc::clone(&store)).with_depth(|s| s.outbox_len() as u64);
    let relay = Relay::new(source, publisher.clone(), config);
    let health = relay.health();
    let (stop_relay, relay_signal) = shutdown();
    let relay_task = relay::spawn(relay, relay_signal);
    let recorder = Recorder::new("restart");
    let mut consumer_config = ConsumerConfig::new(&proxied, spec.clone(), "restart-consumer");
    consumer_config.retry_delay_max_ms = 500;
    let consumer = RabbitConsumer::new(consumer_config, recorder.clone());
    let consumer_health = consumer.health();
    let (stop_consumer, consumer_signal) = shutdown();
    let consumer_task = tokio::spawn(consumer.run(consumer_signal));

    // Half the events, then cut everything once some have arrived.
    write(0, EVENTS / 2);
    assert!(
        recorder.wait_applied(CUT_AFTER, PHASE_TIMEOUT).await,
        "first events arrive"
    );
    proxy.cut();
    let failures_before = health.failures();
    // The other half is written while the broker is unreachable.
    write(EVENTS / 2, EVENTS);
    assert!(
        eventually(PHASE_TIMEOUT, || health.failures() > failures_before + 1).await,
        "the relay notices the broker is gone"
    );
    assert!(
        !health.broker_reachable(),
        "readiness reports the broker down"
    );
    let depth_while_down = store.outbox_len();
    assert!(
        depth_while_down >= EVENTS / 2,
        "the outbox grew: {depth_while_down}"
    );
    let applied_while_down = recorder.applied().len();
    proxy.restore();

    // Everything arrives, each effect applied once, in order per product.
    let arrived = recorder.wait_applied(EVENTS, PHASE_TIMEOUT).await;
    assert!(
        arrived,
        "all events arrive: applied {}, deliveries {}, relay published {}, relay failures {}, \
         broker reachable {}, outbox {}, consumer connected {}, consumer sessions {}",
        recorder.applied().len(),
        recorder.deliveries(),
        health.published(),
        health.failures(),
        health.broker_reachable(),
        store.outbox_len(),
        consumer_health.is_connected(),
        consumer_health.sessions(),
    );
    let applied = recorder.applied();
    assert_eq!(applied.len(), EVENTS);
    let mut ids: Vec<_> = applied.iter().map(|e| e.event_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), EVENTS, "no effect applied twice");
    assert_in_order_per_product(&applied);
    assert!(eventually(PHASE_TIMEOUT, || store.outbox_len() == 0).await);
    assert!(health.broker_reachable());
    let deliveries = recorder.deliveries();
    assert!(deliveries >= EVENTS as u64);
    eprintln!(
        "restart: {EVENTS} events applied once each; {deliveries} deliveries \
         ({} duplicates absorbed); {applied_while_down} applied before the cut; \
         outbox depth while down {depth_while_down}; relay failures {}; relay published {}; \
         consumer applied {} (acks)",
        deliveries - EVENTS as u64,
        health.failures(),
        health.published(),
        consumer_health.applied(),
    );

    let _ = stop_relay.send(());
    let _ = stop_consumer.send(());
    relay_task.await.expect("relay stops");
    consumer_task.await.expect("consumer stops");
    publisher.close().await;
}
