//! Event test plumbing: uniquely named exchanges and queues deleted when a
//! test ends (with `test_support::rabbitmq`), a relay of inventory's outbox,
//! and a handler recording what it receives.

use std::time::Duration;

use event_bus::{
    spawn_relay, Envelope, EventsConfig, Handler, HandlerError, InProcessBus, InventoryOutbox,
    QueueSpec, RelayConfig,
};
use orders_http::config::Config;
use test_support::rabbitmq::{unique, Topology};
use tokio::sync::{mpsc, oneshot};

use crate::support::{Inventory, FINAL_WAIT_MS};

/// Exchange and queue names no other test uses, deleted when dropped.
pub(crate) struct Names {
    pub(crate) url: String,
    /// Orders' exchange.
    pub(crate) orders_exchange: String,
    /// Inventory's exchange.
    pub(crate) inventory_exchange: String,
    /// Orders' queue of inventory events.
    pub(crate) queue: String,
    /// A queue the test reads orders' events from.
    pub(crate) watch_queue: String,
    /// Deletes the exchanges and queues above when dropped.
    _topology: Topology,
}

impl Names {
    /// Fresh names on the broker at `url`.
    pub(crate) fn new(url: &str) -> Self {
        let tag = unique("orders");
        let orders_exchange = format!("{tag}.orders_events");
        let inventory_exchange = format!("{tag}.inventory_events");
        let queue = format!("{tag}.inventory_queue");
        let watch_queue = format!("{tag}.watch");
        // Orders' queue, and the watch queue on orders' exchange as the
        // tests declare it: both with their dead-letter parts.
        let topology = Topology::of(
            url,
            &[
                inventory_events_spec(&queue, &inventory_exchange),
                QueueSpec::new(&watch_queue, &orders_exchange, "order.#"),
            ],
        );
        Self {
            url: url.to_owned(),
            orders_exchange,
            inventory_exchange,
            queue,
            watch_queue,
            _topology: topology,
        }
    }

    /// Orders' queue spec (as the server declares it).
    pub(crate) fn spec(&self) -> QueueSpec {
        inventory_events_spec(&self.queue, &self.inventory_exchange)
    }

    /// Points `config` at these names and the broker.
    pub(crate) fn configure(&self, config: &mut Config) {
        config.amqp_url = Some(self.url.clone());
        config.orders_events_exchange = self.orders_exchange.clone();
        config.inventory_events_exchange = self.inventory_exchange.clone();
        config.orders_inventory_queue = self.queue.clone();
    }
}

/// Orders' queue of inventory events (as the server declares it).
fn inventory_events_spec(queue: &str, exchange: &str) -> QueueSpec {
    QueueSpec::new(queue, exchange, "inventory.stock.#")
}

/// A running relay of inventory's memory store outbox.
pub(crate) struct InventoryRelay {
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for InventoryRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Relays inventory's events to `bus`, or to RabbitMQ when `names` is given.
pub(crate) fn relay_inventory(
    inventory: &Inventory<inventory_memory::MemoryStore>,
    bus: &InProcessBus,
    names: Option<&Names>,
) -> InventoryRelay {
    let config = EventsConfig {
        amqp_url: names.map(|n| n.url.clone()),
        exchange: names.map_or_else(
            || event_bus::INVENTORY_EXCHANGE.to_owned(),
            |n| n.inventory_exchange.clone(),
        ),
        queues: names.map(|n| vec![n.spec()]).unwrap_or_default(),
        connection_name: "orders-test-inventory-relay".to_owned(),
        relay: RelayConfig::default(),
        tls: event_bus::rabbit::AmqpTls::default(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let _handle = spawn_relay(
        InventoryOutbox::new(inventory.store.clone()),
        &config,
        bus,
        async move {
            let _ = stopped.await;
        },
    );
    InventoryRelay { stop: Some(stop) }
}

/// Hands every envelope it is given to a channel.
pub(crate) struct Recorder(pub(crate) mpsc::UnboundedSender<Envelope>);

impl Handler for Recorder {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let _ = self.0.send(envelope.clone());
        Ok(())
    }
}

/// The next envelope, within the tests' deadline.
pub(crate) async fn next(events: &mut mpsc::UnboundedReceiver<Envelope>) -> Envelope {
    tokio::time::timeout(Duration::from_millis(FINAL_WAIT_MS), events.recv())
        .await
        .expect("an event in time")
        .expect("the recorder is alive")
}

/// Polls `done` until it holds, within the tests' deadline.
pub(crate) async fn wait_until(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(FINAL_WAIT_MS);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
