//! Events: an order's life as `order.*` events (in process and through
//! RabbitMQ), inventory's events applied once and shown as holds, an expired
//! hold handed to the saga, poison messages dead-lettered, readiness while
//! the broker is down.

use std::sync::Arc;
use std::time::Duration;

use event_bus::rabbit::{self, HEADER_DEAD_LETTER_REASON};
use event_bus::{Envelope, InProcessBus, QueueSpec};
use http::Method;
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::types::AMQPValue;
use lapin::BasicProperties;
use orders_http::clock::SystemClock;
use orders_http::config::Config;
use orders_http::store::OrderStore;
use serde_json::{json, Value};
use test_support::rabbitmq::broker;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::bus::{next, relay_inventory, wait_until, Names, Recorder};
use crate::support::{
    customer, memory, orders_config, GatedPayments, Inventory, Orders, FINAL_WAIT_MS,
};

/// Default hold of inventory reservations plus a minute.
const PAST_HOLD: Duration = Duration::from_secs(16 * 60);

/// Places an order for one product as request `request_id`; its id.
async fn place(
    orders: &Orders,
    user: &str,
    product: Uuid,
    quantity: i64,
    request_id: &str,
) -> String {
    let body = json!({"items": [{"product_id": product, "quantity": quantity}]});
    let reply = orders
        .send(
            Method::POST,
            "/api/orders",
            Some(user),
            &[("x-request-id", request_id)],
            Some(&body),
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    reply.json["id"].as_str().expect("id").to_owned()
}

fn all_holds(order: &Value, status: &str) -> bool {
    order["holds"]
        .as_array()
        .is_some_and(|h| !h.is_empty() && h.iter().all(|h| h["status"] == status))
}

/// The events of `id` among the next envelopes: `(type, correlation id)`
/// until one is final.
async fn life_of(
    events: &mut mpsc::UnboundedReceiver<Envelope>,
    id: &str,
) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        let e = next(events).await;
        if e.payload["order_id"] != id {
            continue;
        }
        assert_eq!(e.source, "orders");
        seen.push((
            e.event_type.clone(),
            e.correlation_id.clone().unwrap_or_default(),
        ));
        if e.event_type != "order.created" {
            return seen;
        }
    }
}

fn pair(event_type: &str, correlation: &str) -> (String, String) {
    (event_type.to_owned(), correlation.to_owned())
}

/// Through the in-process bus (memory stores): a confirmed order publishes
/// `order.created` then `order.confirmed`, an out-of-stock one
/// `order.created` then `order.cancelled`, each with the request id of the
/// POST that placed it; inventory's events reach orders and show as holds.
pub(crate) async fn order_life_in_process() {
    let bus = InProcessBus::new();
    let inventory = Inventory::spawn(inventory_memory::MemoryStore::new()).await;
    let _relay = relay_inventory(&inventory, &bus, None);
    let subscription = bus.subscribe("order.").expect("subscribe");
    let (tx, mut events) = mpsc::unbounded_channel();
    tokio::spawn(event_bus::run_subscription(
        subscription,
        Recorder(tx),
        std::future::pending(),
    ));
    let config = orders_config(&inventory.url());
    let payments = Arc::new(orders_http::payment::PaymentSimulator::new(
        config.payment(),
    ));
    let orders = Orders::spawn_on_bus(config, memory(), payments, Arc::new(SystemClock), bus).await;
    let p = Uuid::new_v4();
    inventory.stock(p, 1).await;
    orders.sell(p, 700).await;
    let user = customer("ola");

    let confirmed = place(&orders, &user, p, 1, "req-life-1").await;
    assert_eq!(
        life_of(&mut events, &confirmed).await,
        [
            pair("order.created", "req-life-1"),
            pair("order.confirmed", "req-life-1")
        ]
    );
    let shown = orders
        .wait_for(&user, &confirmed, |o| all_holds(o, "confirmed"))
        .await;
    assert_eq!(shown["holds"][0]["product_id"], p.to_string());
    assert_eq!(shown["holds"][0]["quantity"], 1);

    let cancelled = place(&orders, &user, p, 1, "req-life-2").await;
    assert_eq!(
        life_of(&mut events, &cancelled).await,
        [
            pair("order.created", "req-life-2"),
            pair("order.cancelled", "req-life-2")
        ]
    );
    let done = orders.wait_final(&user, &cancelled).await;
    assert_eq!(done["cancel_reason"], "out_of_stock");
    let metrics = orders.metrics().await;
    assert!(metrics.contains("events_outbox_depth"), "{metrics}");
}

/// Through RabbitMQ (orders on `store`): the same life, read from a queue
/// bound to orders' exchange; inventory's events come through orders' queue.
pub(crate) async fn order_life_rabbitmq(store: Arc<dyn OrderStore>) {
    let Some(url) = broker().await else {
        return;
    };
    let names = Names::new(&url);
    let bus = InProcessBus::new();
    let inventory = Inventory::spawn(inventory_memory::MemoryStore::new()).await;
    let _relay = relay_inventory(&inventory, &bus, Some(&names));
    let (tx, mut events) = mpsc::unbounded_channel();
    let watch = QueueSpec::new(&names.watch_queue, &names.orders_exchange, "order.#");
    let watcher = event_bus::RabbitConsumer::new(
        event_bus::ConsumerConfig::new(&url, watch, "orders-test-watch"),
        Recorder(tx),
    );
    let watcher_health = watcher.health();
    let (stop_watch, watch_stopped) = oneshot::channel::<()>();
    let watching = tokio::spawn(watcher.run(async move {
        let _ = watch_stopped.await;
    }));
    wait_until(|| watcher_health.is_connected()).await;

    let mut config = orders_config(&inventory.url());
    names.configure(&mut config);
    let orders = Orders::spawn(config, store).await;
    let p = Uuid::new_v4();
    inventory.stock(p, 1).await;
    orders.sell(p, 700).await;
    let user = customer("pia");
    let confirmed = place(&orders, &user, p, 1, "req-rabbit-1").await;
    assert_eq!(
        life_of(&mut events, &confirmed).await,
        [
            pair("order.created", "req-rabbit-1"),
            pair("order.confirmed", "req-rabbit-1")
        ]
    );
    orders
        .wait_for(&user, &confirmed, |o| all_holds(o, "confirmed"))
        .await;
    let cancelled = place(&orders, &user, p, 1, "req-rabbit-2").await;
    assert_eq!(
        life_of(&mut events, &cancelled).await,
        [
            pair("order.created", "req-rabbit-2"),
            pair("order.cancelled", "req-rabbit-2")
        ]
    );
    let ready = orders
        .send(Method::GET, "/health/ready", None, &[], None)
        .await;
    assert_eq!(ready.status, 200, "{:?}", ready.json);
    assert_eq!(ready.json["broker"], "rabbitmq");
    let _ = stop_watch.send(());
    watching.await.expect("watcher");
}

/// The envelope inventory would publish for a hold of `inventory_order`.
fn stock_event(kind: &str, inventory_order: Uuid, reservation: Uuid, product: Uuid) -> Envelope {
    Envelope::new(
        "inventory",
        &format!("inventory.stock.{kind}"),
        1,
        Uuid::new_v4(),
        1_700_000_000_000,
        Some("req-dup"),
        json!({
            "kind": kind,
            "reservation_id": reservation,
            "order_id": inventory_order,
            "product_id": product,
            "quantity": 1,
        }),
    )
}

/// A pending order (its payment held at a gate) with one held line:
/// `(orders, inventory, user, order id, product, reservation id)`.
struct Held {
    orders: Orders,
    inventory: Inventory<inventory_memory::MemoryStore>,
    gated: Arc<GatedPayments>,
    user: String,
    id: String,
    product: Uuid,
    reservation: Uuid,
}

async fn held_order(
    store: Arc<dyn OrderStore>,
    bus: &InProcessBus,
    tweak: impl FnOnce(&mut Config),
) -> Held {
    let inventory = Inventory::spawn(inventory_memory::MemoryStore::new()).await;
    let mut config = orders_config(&inventory.url());
    tweak(&mut config);
    let gated = GatedPayments::closed();
    let orders = Orders::spawn_on_bus(
        config,
        store,
        gated.clone(),
        Arc::new(SystemClock),
        bus.clone(),
    )
    .await;
    let product = Uuid::new_v4();
    inventory.stock(product, 1).await;
    orders.sell(product, 500).await;
    let user = customer("quinn");
    let id = place(&orders, &user, product, 1, "req-held").await;
    let order = orders
        .wait_for(&user, &id, |o| {
            o["reservation_ids"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        })
        .await;
    let reservation = order["reservation_ids"][0]
        .as_str()
        .expect("reservation")
        .parse()
        .expect("uuid");
    Held {
        orders,
        inventory,
        gated,
        user,
        id,
        product,
        reservation,
    }
}

fn inventory_order_of(record: &orders_http::store::OrderRecord) -> Uuid {
    record.saga.inventory_order_id
}

/// The same inventory event delivered twice (in process) is applied once:
/// one hold, and the store already knows the event id.
pub(crate) async fn duplicate_applied_once_in_process(store: Arc<dyn OrderStore>) {
    let bus = InProcessBus::new();
    let h = held_order(store.clone(), &bus, |_| {}).await;
    let order_id = orders_http::domain::OrderId::from_uuid(h.id.parse().expect("uuid"));
    let record = store.get(order_id).await.expect("get").expect("stored");
    let event = stock_event(
        "reserved",
        inventory_order_of(&record),
        h.reservation,
        h.product,
    );
    use event_bus::Publisher as _;
    bus.publish(&[event.clone(), event.clone()])
        .await
        .expect("publish");
    let shown = h
        .orders
        .wait_for(&h.user, &h.id, |o| all_holds(o, "reserved"))
        .await;
    assert_eq!(shown["holds"].as_array().map(Vec::len), Some(1));
    assert_duplicate(&*store, &event).await;
}

/// Applying `event` again directly finds it already recorded.
async fn assert_duplicate(store: &dyn OrderStore, event: &Envelope) {
    let hold = orders_http::store::HoldEvent {
        event_id: event.event_id,
        inventory_order_id: event.payload["order_id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid"),
        hold: orders_http::store::Hold {
            reservation_id: event.payload["reservation_id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("uuid"),
            product_id: orders_http::domain::ProductId::from_uuid(
                event.payload["product_id"]
                    .as_str()
                    .expect("id")
                    .parse()
                    .expect("uuid"),
            ),
            quantity: 1,
            status: orders_http::store::HoldStatus::Reserved,
            updated_at_ms: 0,
        },
    };
    let again = store
        .apply_hold_event(orders_http::events::CONSUMER_NAME, &hold)
        .await
        .expect("apply");
    assert_eq!(again, orders_http::store::HoldApplied::Duplicate);
}

/// An `inventory.stock.expired` event for the hold of a pending order
/// (inventory's own event, relayed in process) hands the order to the
/// saga's expired-hold policy: the hold shows `expired`, and once the
/// payment completes the saga reserves again without trying to confirm the
/// lost hold, and the order is confirmed on the new hold.
pub(crate) async fn expired_event_hands_order_to_saga() {
    let bus = InProcessBus::new();
    let h = held_order(memory(), &bus, |_| {}).await;
    let _relay = relay_inventory(&h.inventory, &bus, None);
    h.inventory.clock.advance(PAST_HOLD);
    h.inventory.expire(h.reservation).await;
    h.orders
        .wait_for(&h.user, &h.id, |o| all_holds(o, "expired"))
        .await;
    assert_eq!(h.inventory.levels(h.product).await, (1, 0), "stock is back");
    h.gated.gate.add_permits(1);
    let done = h.orders.wait_final(&h.user, &h.id).await;
    assert_eq!(done["status"], "confirmed", "{done}");
    assert_ne!(done["reservation_ids"][0], h.reservation.to_string());
    assert_eq!(h.inventory.levels(h.product).await, (0, 0));
    let metrics = h.orders.metrics().await;
    let confirms: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("inventory_calls_total{op=\"confirm\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        confirms, 1.0,
        "only the new hold was confirmed, the lost one never tried: {metrics}"
    );
}

/// A malformed message and an unknown event type on orders' queue go to
/// its dead-letter queue with the reason; events after them still flow; the
/// same event delivered twice through the queue is applied once.
pub(crate) async fn poison_dead_lettered_and_duplicates_absorbed(store: Arc<dyn OrderStore>) {
    let Some(url) = broker().await else {
        return;
    };
    let names = Names::new(&url);
    let bus = InProcessBus::new();
    let h = held_order(store.clone(), &bus, |c| names.configure(c)).await;
    let order_id = orders_http::domain::OrderId::from_uuid(h.id.parse().expect("uuid"));
    let record = store.get(order_id).await.expect("get").expect("stored");
    let connection = rabbit::connect(&url, "orders-test-publisher")
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    names.spec().declare(&channel).await.expect("declare");
    let publish = |routing_key: &'static str, body: Vec<u8>| {
        let channel = channel.clone();
        let exchange = names.inventory_exchange.clone();
        async move {
            channel
                .basic_publish(
                    &exchange,
                    routing_key,
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("published");
        }
    };
    publish("inventory.stock.reserved", b"{not an envelope".to_vec()).await;
    let unknown = stock_event(
        "melted",
        inventory_order_of(&record),
        h.reservation,
        h.product,
    );
    publish("inventory.stock.melted", unknown.to_bytes()).await;
    let event = stock_event(
        "reserved",
        inventory_order_of(&record),
        h.reservation,
        h.product,
    );
    publish("inventory.stock.reserved", event.to_bytes()).await;
    publish("inventory.stock.reserved", event.to_bytes()).await;

    let shown = h
        .orders
        .wait_for(&h.user, &h.id, |o| all_holds(o, "reserved"))
        .await;
    assert_eq!(shown["holds"].as_array().map(Vec::len), Some(1));
    let mut reasons = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(FINAL_WAIT_MS);
    while reasons.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters: {reasons:?}"
        );
        let got = channel
            .basic_get(
                &names.spec().dead_letter_queue,
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("get");
        let Some(message) = got else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let reason = message
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(HEADER_DEAD_LETTER_REASON).cloned());
        let Some(AMQPValue::LongString(reason)) = reason else {
            panic!("a dead letter without its reason: {reason:?}");
        };
        reasons.push(String::from_utf8_lossy(reason.as_bytes()).into_owned());
    }
    assert!(reasons[0].contains("malformed envelope"), "{reasons:?}");
    assert!(reasons[1].contains("unknown event type"), "{reasons:?}");
    // The second copy was acknowledged without a second effect.
    wait_metric_at_least(&h.orders, "events_consumed_total", 2.0).await;
    assert_duplicate(&*store, &event).await;
    let metrics = h.orders.metrics().await;
    assert!(
        metrics.contains("events_dead_lettered_total 2"),
        "{metrics}"
    );
    let _ = connection.close(200, "done").await;
}

async fn wait_metric_at_least(orders: &Orders, name: &str, at_least: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(FINAL_WAIT_MS);
    loop {
        let text = orders.metrics().await;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if value >= at_least {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name}: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// While the broker cannot be reached, readiness is 503 and names it.
pub(crate) async fn not_ready_while_broker_down() {
    let inventory = Inventory::spawn(inventory_memory::MemoryStore::new()).await;
    let mut config = orders_config(&inventory.url());
    config.amqp_url = Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned());
    let orders = Orders::spawn(config, memory()).await;
    let ready = orders
        .send(Method::GET, "/health/ready", None, &[], None)
        .await;
    assert_eq!((ready.status, ready.code()), (503, "broker_unavailable"));
    let detail = ready.json["detail"].as_str().unwrap_or("");
    assert!(detail.contains("event broker (rabbitmq)"), "{detail}");
    assert!(ready.headers.contains_key("retry-after"));
}

/// With a budget of 100 a minute, a user's 101st request is refused with
/// 429 `rate_limited`, `Retry-After` and the rate-limit headers; another
/// user still gets through.
pub(crate) async fn the_101st_request_is_rate_limited() {
    let inventory = Inventory::spawn(inventory_memory::MemoryStore::new()).await;
    let mut config = orders_config(&inventory.url());
    config.rate_limit.rate_limit_per_minute = 100;
    let orders = Orders::spawn(config, memory()).await;
    let user = customer("rae");
    for n in 1..=100 {
        let reply = orders.get("/api/orders", &user).await;
        assert_eq!(reply.status, 200, "request {n}: {:?}", reply.json);
        assert!(reply.headers.contains_key("ratelimit-remaining"));
    }
    let refused = orders.get("/api/orders", &user).await;
    assert_eq!((refused.status, refused.code()), (429, "rate_limited"));
    assert_eq!(
        refused
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(refused.headers["ratelimit-limit"], "100");
    assert_eq!(refused.headers["ratelimit-remaining"], "0");
    let other = orders.get("/api/orders", &customer("sam")).await;
    assert_eq!(other.status, 200);
    let public = orders
        .send(Method::GET, "/api/products", None, &[], None)
        .await;
    assert_eq!(public.status, 200, "the catalog is not limited");
}
