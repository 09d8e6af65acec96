//! The embedded default: the relay publishing on the in-process bus.

use std::sync::Arc;
use std::time::Duration;

use event_bus::{relay, Envelope, InProcessBus, InventoryOutbox, Relay, RelayConfig};
use inventory_core::{Command, ProductId};
use inventory_memory::MemoryStore;

use crate::common::{create, id, meta, reserve, shutdown};

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
