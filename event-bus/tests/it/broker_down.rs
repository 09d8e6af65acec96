//! A relay whose broker cannot be reached: it backs off, reports the broker
//! down, and drops nothing.

use std::sync::Arc;
use std::time::Duration;

use event_bus::rabbit::{RabbitConfig, RabbitPublisher};
use event_bus::{relay, InventoryOutbox, Relay, RelayConfig};
use inventory_core::ProductId;
use inventory_memory::MemoryStore;

use crate::common::{adjust, create, eventually, id, meta, shutdown};

/// A port nothing listens on.
const DEAD_BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

/// While the broker is down the relay keeps failing, readiness says so, and
/// the outbox keeps every event (its depth is reported).
#[tokio::test]
async fn relay_backs_off_and_keeps_every_event_while_the_broker_is_down() {
    let store = Arc::new(MemoryStore::new());
    let product = ProductId::from_uuid(id());
    store
        .execute_sync(create(product, 1), &meta(0, "r"))
        .expect("create");
    for n in 1..5 {
        store
            .execute_sync(adjust(product, 1), &meta(n, "r"))
            .expect("adjust");
    }
    let publisher = RabbitPublisher::new(RabbitConfig {
        url: DEAD_BROKER_URL.to_owned(),
        exchange: "unused".to_owned(),
        queues: Vec::new(),
        connection_name: "dead".to_owned(),
    });
    let config = RelayConfig {
        backoff_min_ms: 5,
        backoff_max_ms: 20,
        ..RelayConfig::default()
    };
    let source = InventoryOutbox::new(Arc::clone(&store)).with_depth(|s| s.outbox_len() as u64);
    let relay = Relay::new(source, publisher, config);
    let health = relay.health();
    let (stop, signal) = shutdown();
    let task = relay::spawn(relay, signal);

    assert!(eventually(Duration::from_secs(10), || health.failures() >= 3).await);
    assert!(!health.broker_reachable());
    assert!(!health.is_ready());
    assert!(health.outbox_reachable());
    assert_eq!(health.outbox_depth(), 5);
    assert_eq!(health.published(), 0);
    assert_eq!(store.outbox_len(), 5, "nothing was dropped");
    let _ = stop.send(());
    task.await.expect("relay stops");
}
