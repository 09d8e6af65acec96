//! Event test plumbing: the broker (or why a test is skipped), uniquely
//! named exchanges and queues deleted when a test ends, a relay of
//! inventory's outbox, and a handler recording what it receives.

use std::time::Duration;

use event_bus::rabbit;
use event_bus::{
    spawn_relay, Envelope, EventsConfig, Handler, HandlerError, InProcessBus, InventoryOutbox,
    QueueSpec, RelayConfig,
};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use orders_http::config::Config;
use rand::Rng;
use tokio::sync::{mpsc, oneshot};

use crate::support::{skip, Inventory, FINAL_WAIT_MS};

/// The broker the tests use when neither `TEST_AMQP_URL` nor `AMQP_URL` is set.
const AMQP_URL_DEFAULT: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker URL when it answers; `None` (after printing why) otherwise,
/// unless `REQUIRE_SERVICES=1`, which fails the test.
pub(crate) async fn broker() -> Option<String> {
    let url = std::env::var("TEST_AMQP_URL")
        .or_else(|_| std::env::var("AMQP_URL"))
        .unwrap_or_else(|_| AMQP_URL_DEFAULT.to_owned());
    match rabbit::connect(&url, "orders-test-probe").await {
        Ok(connection) => {
            let _ = connection.close(200, "probe").await;
            Some(url)
        }
        Err(e) => skip(&format!("RabbitMQ at {url} is unreachable: {e}")),
    }
}

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
}

impl Names {
    pub(crate) fn new(url: &str) -> Self {
        let tag = format!("{:012x}", rand::rng().random::<u64>() >> 16);
        Self {
            url: url.to_owned(),
            orders_exchange: format!("test.orders.{tag}.orders_events"),
            inventory_exchange: format!("test.orders.{tag}.inventory_events"),
            queue: format!("test.orders.{tag}.inventory_queue"),
            watch_queue: format!("test.orders.{tag}.watch"),
        }
    }

    /// Orders' queue spec (as the server declares it).
    pub(crate) fn spec(&self) -> QueueSpec {
        QueueSpec::new(&self.queue, &self.inventory_exchange, "inventory.stock.#")
    }

    /// Points `config` at these names and the broker.
    pub(crate) fn configure(&self, config: &mut Config) {
        config.amqp_url = Some(self.url.clone());
        config.orders_events_exchange = self.orders_exchange.clone();
        config.inventory_events_exchange = self.inventory_exchange.clone();
        config.orders_inventory_queue = self.queue.clone();
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        let url = self.url.clone();
        let spec = self.spec();
        let queues = [
            spec.queue.clone(),
            spec.dead_letter_queue.clone(),
            self.watch_queue.clone(),
            format!("{}.dlq", self.watch_queue),
        ];
        let exchanges = [
            spec.exchange.clone(),
            spec.dead_letter_exchange.clone(),
            self.orders_exchange.clone(),
            format!("{}.dlx", self.watch_queue),
        ];
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                let Ok(connection) = rabbit::connect(&url, "orders-test-cleanup").await else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for q in &queues {
                        let _ = channel.queue_delete(q, QueueDeleteOptions::default()).await;
                    }
                    for x in &exchanges {
                        let _ = channel
                            .exchange_delete(x, ExchangeDeleteOptions::default())
                            .await;
                    }
                }
                let _ = connection.close(200, "cleanup").await;
            });
        });
        let _ = cleanup.join();
    }
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
