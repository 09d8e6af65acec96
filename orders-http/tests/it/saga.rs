//! Saga behaviour that needs control over time or failures: expired holds,
//! inventory down (breaker, deadline), restarts, customer cancels. Runs on
//! the memory stores; `interrupted_saga_resumes` also runs on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use inventory_core::InventoryStore;
use orders_http::clock::{Clock, ManualClock, SystemClock};
use orders_http::domain::OrderId;
use orders_http::store::OrderStore;
use serde_json::Value;
use uuid::Uuid;

use crate::support::{
    customer, memory, orders_config, GatedPayments, Inventory, Orders, FINAL_WAIT_MS,
};

/// Default hold of inventory reservations plus a minute: advancing the
/// inventory clock by this makes every hold expire.
const PAST_HOLD: Duration = Duration::from_secs(16 * 60);

fn id_of(reply: &Value) -> String {
    reply["id"].as_str().expect("order id").to_owned()
}

fn held(order: &Value) -> bool {
    order["reservation_ids"]
        .as_array()
        .is_some_and(|r| !r.is_empty())
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn wait_metric(orders: &Orders, name: &str, at_least: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(FINAL_WAIT_MS);
    loop {
        if metric(&orders.metrics().await, name) >= at_least {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn memory_inventory() -> Inventory<inventory_memory::MemoryStore> {
    Inventory::spawn(inventory_memory::MemoryStore::new()).await
}

/// A saga stopped while waiting for the payment, after its reservation was
/// saved, resumes on a restarted service over the same store: it reuses the
/// saved reservation (no second hold), confirms, and leaks nothing.
pub(crate) async fn interrupted_saga_resumes<S: InventoryStore>(
    inventory_store: S,
    orders_store: Arc<dyn OrderStore>,
) {
    let inventory = Inventory::spawn(inventory_store).await;
    let config = orders_config(&inventory.url());
    let gated = GatedPayments::closed();
    let mut first = Orders::spawn_with(
        config.clone(),
        orders_store.clone(),
        gated,
        Arc::new(SystemClock),
    )
    .await;
    let p = Uuid::new_v4();
    inventory.stock(p, 5).await;
    first.sell(p, 300).await;
    let user = customer("gina");
    let placed = first.place(&user, &[(p, 2)], None).await;
    let id = id_of(&placed.json);
    let before = first.wait_for(&user, &id, held).await;
    assert_eq!(inventory.levels(p).await, (5, 2));
    first.stop().await;

    let second = Orders::spawn(config, orders_store).await;
    let done = second.wait_final(&user, &id).await;
    assert_eq!(done["status"], "confirmed", "{done}");
    assert_eq!(
        done["reservation_ids"], before["reservation_ids"],
        "the saved reservation was reused"
    );
    assert_eq!(inventory.levels(p).await, (3, 0));
    assert_eq!(inventory.reservations(p).await, (0, 1, 0));
}

/// A hold that expires before confirm is reserved again under a new
/// inventory order id, then confirmed.
pub(crate) async fn expired_hold_is_reserved_again() {
    let inventory = memory_inventory().await;
    let gated = GatedPayments::closed();
    let orders = Orders::spawn_with(
        orders_config(&inventory.url()),
        memory(),
        gated.clone(),
        Arc::new(SystemClock),
    )
    .await;
    let p = Uuid::new_v4();
    inventory.stock(p, 1).await;
    orders.sell(p, 900).await;
    let user = customer("hank");
    let id = id_of(&orders.place(&user, &[(p, 1)], None).await.json);
    orders.wait_for(&user, &id, held).await;
    let first_hold = orders
        .store
        .get(order_id(&id))
        .await
        .expect("get")
        .expect("stored")
        .saga
        .inventory_order_id;
    inventory.clock.advance(PAST_HOLD);
    gated.gate.add_permits(1);
    let done = orders.wait_final(&user, &id).await;
    assert_eq!(done["status"], "confirmed", "{done}");
    let saga = orders
        .store
        .get(order_id(&id))
        .await
        .expect("get")
        .expect("stored")
        .saga;
    assert_eq!(saga.reserve_attempts, 2);
    assert_ne!(
        saga.inventory_order_id, first_hold,
        "a re-reserve uses a fresh inventory order id"
    );
    assert_eq!(inventory.levels(p).await, (0, 0));
    assert_eq!(
        inventory.reservations(p).await,
        (0, 1, 1),
        "one confirmed, the first one expired"
    );
}

/// A hold that expires before confirm while another buyer takes the stock:
/// the payment is refunded (and the refund recorded), the order cancelled
/// `reservation_expired`.
pub(crate) async fn expired_hold_without_stock_is_refunded() {
    let inventory = memory_inventory().await;
    let gated = GatedPayments::closed();
    let orders = Orders::spawn_with(
        orders_config(&inventory.url()),
        memory(),
        gated.clone(),
        Arc::new(SystemClock),
    )
    .await;
    let p = Uuid::new_v4();
    inventory.stock(p, 1).await;
    orders.sell(p, 900).await;
    let user = customer("ivy");
    let id = id_of(&orders.place(&user, &[(p, 1)], None).await.json);
    orders.wait_for(&user, &id, held).await;
    inventory.clock.advance(PAST_HOLD);
    inventory.hold_directly(p, 1).await;
    gated.gate.add_permits(1);
    let done = orders.wait_final(&user, &id).await;
    assert_eq!(
        (done["status"].as_str(), done["cancel_reason"].as_str()),
        (Some("cancelled"), Some("reservation_expired")),
        "{done}"
    );
    assert!(done["refund_id"].is_string());
    let (payment, refund) = orders.store.money(order_id(&id)).await.expect("money");
    let (payment, refund) = (payment.expect("paid"), refund.expect("refund recorded"));
    assert_eq!(
        (refund.amount_minor, refund.payment_id.as_str()),
        (900, payment.payment_id.as_str())
    );
    assert_eq!(gated.inner.refunded(), 1);
    assert_eq!(
        inventory.levels(p).await,
        (1, 1),
        "the other buyer holds the unit"
    );
    assert_eq!(
        inventory.reservations(p).await.1,
        0,
        "nothing confirmed for the refunded order"
    );
}

/// Inventory down: calls fail, the breaker opens and then refuses calls
/// without trying (counted in metrics), the order stays pending; when
/// inventory is back the order resumes and is confirmed.
pub(crate) async fn breaker_opens_and_orders_resume() {
    let mut inventory = memory_inventory().await;
    let mut config = orders_config(&inventory.url());
    config.breaker_failures_to_open = 2;
    config.breaker_open_ms = 200;
    let orders = Orders::spawn(config, memory()).await;
    let p = Uuid::new_v4();
    inventory.stock(p, 3).await;
    orders.sell(p, 100).await;
    inventory.stop().await;

    let user = customer("jack");
    let id = id_of(&orders.place(&user, &[(p, 1)], None).await.json);
    wait_metric(&orders, "inventory_breaker_rejected_total", 1.0).await;
    let text = orders.metrics().await;
    assert!(
        metric(&text, "inventory_breaker_opened_total") >= 1.0,
        "{text}"
    );
    let status = orders.get(&format!("/api/orders/{id}/status"), &user).await;
    assert_eq!(status.json["status"], "pending");

    inventory.restart().await;
    let done = orders.wait_final(&user, &id).await;
    assert_eq!(done["status"], "confirmed", "{done}");
    assert_eq!(inventory.levels(p).await, (2, 0));
    assert_eq!(
        metric(&orders.metrics().await, "inventory_breaker_state"),
        0.0,
        "closed again"
    );
}

/// Inventory down past the pending deadline: the order is cancelled
/// `inventory_unavailable`. A customer's cancel while waiting is immediate.
pub(crate) async fn deadline_cancels_and_customers_can_cancel() {
    let mut inventory = memory_inventory().await;
    let mut config = orders_config(&inventory.url());
    config.pending_deadline_ms = 60_000;
    config.cancel_wait_ms = 2_000;
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let payments = Arc::new(orders_http::payment::PaymentSimulator::new(
        config.payment(),
    ));
    let orders = Orders::spawn_with(config, memory(), payments, clock.clone()).await;
    let p = Uuid::new_v4();
    inventory.stock(p, 3).await;
    orders.sell(p, 100).await;
    inventory.stop().await;

    let user = customer("kim");
    let waiting = id_of(&orders.place(&user, &[(p, 1)], None).await.json);
    let cancelled = id_of(&orders.place(&user, &[(p, 1)], None).await.json);
    wait_metric(&orders, "inventory_breaker_rejected_total", 1.0).await;
    let reply = orders
        .send(
            Method::POST,
            &format!("/api/orders/{cancelled}/cancel"),
            Some(&user),
            &[],
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert_eq!(reply.json["cancel_reason"], "cancelled_by_user");
    let again = orders
        .send(
            Method::POST,
            &format!("/api/orders/{cancelled}/cancel"),
            Some(&user),
            &[],
            None,
        )
        .await;
    assert_eq!((again.status, again.code()), (409, "order_not_pending"));
    let stranger = orders
        .send(
            Method::POST,
            &format!("/api/orders/{waiting}/cancel"),
            Some(&customer("eve")),
            &[],
            None,
        )
        .await;
    assert_eq!(stranger.status, 404);

    clock.advance(Duration::from_secs(61));
    let done = orders.wait_final(&user, &waiting).await;
    assert_eq!(
        (done["status"].as_str(), done["cancel_reason"].as_str()),
        (Some("cancelled"), Some("inventory_unavailable"))
    );
    inventory.restart().await;
    assert_eq!(inventory.levels(p).await, (3, 0));
}

/// A customer cancels while the payment is in flight: the cancel is
/// accepted (202); once the payment completes, the saga releases the hold,
/// refunds, and the order ends `cancelled_by_user`.
pub(crate) async fn cancel_during_payment_refunds() {
    let inventory = memory_inventory().await;
    let mut config = orders_config(&inventory.url());
    config.cancel_wait_ms = 100;
    let gated = GatedPayments::closed();
    let orders = Orders::spawn_with(config, memory(), gated.clone(), Arc::new(SystemClock)).await;
    let p = Uuid::new_v4();
    inventory.stock(p, 2).await;
    orders.sell(p, 1_500).await;
    let user = customer("lou");
    let id = id_of(&orders.place(&user, &[(p, 1)], None).await.json);
    orders.wait_for(&user, &id, held).await;
    let reply = orders
        .send(
            Method::POST,
            &format!("/api/orders/{id}/cancel"),
            Some(&user),
            &[],
            None,
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    gated.gate.add_permits(1);
    let done = orders.wait_final(&user, &id).await;
    assert_eq!(done["cancel_reason"], "cancelled_by_user", "{done}");
    assert!(done["refund_id"].is_string());
    assert_eq!(inventory.levels(p).await, (2, 0));
    assert_eq!(inventory.reservations(p).await, (0, 0, 1));
}

fn order_id(id: &str) -> OrderId {
    OrderId::from_uuid(id.parse().expect("uuid"))
}

/// Counts charges per order (with a little latency, so sagas stay pending
/// long enough for another instance's resumer to see them).
struct CountingPayments {
    inner: orders_http::payment::PaymentSimulator,
    charges: parking_lot::Mutex<std::collections::HashMap<OrderId, u32>>,
}

impl orders_http::payment::PaymentProvider for CountingPayments {
    fn charge(
        &self,
        request: orders_http::payment::ChargeRequest,
    ) -> orders_http::store::BoxFuture<'_, Result<String, orders_http::payment::PaymentError>> {
        Box::pin(async move {
            *self.charges.lock().entry(request.order_id).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.inner.charge(request).await
        })
    }

    fn charge_of(
        &self,
        order_id: OrderId,
    ) -> orders_http::store::BoxFuture<'_, Result<Option<String>, orders_http::payment::PaymentError>>
    {
        self.inner.charge_of(order_id)
    }

    fn refund(
        &self,
        order_id: OrderId,
        payment_id: String,
        amount_minor: i64,
    ) -> orders_http::store::BoxFuture<'_, Result<String, orders_http::payment::PaymentError>> {
        self.inner.refund(order_id, payment_id, amount_minor)
    }
}

/// Two instances on one store, both resuming pending orders all the time:
/// every saga runs in one instance only (each order is charged once) and
/// every order is confirmed.
pub(crate) async fn two_instances_never_run_one_saga_twice(orders_store: Arc<dyn OrderStore>) {
    let inventory = memory_inventory().await;
    let mut config = orders_config(&inventory.url());
    config.resume_interval_ms = 5;
    let payments = Arc::new(CountingPayments {
        inner: orders_http::payment::PaymentSimulator::new(config.payment()),
        charges: parking_lot::Mutex::new(std::collections::HashMap::new()),
    });
    let a = Orders::spawn_with(
        config.clone(),
        orders_store.clone(),
        payments.clone(),
        Arc::new(SystemClock),
    )
    .await;
    let _b = Orders::spawn_with(
        config,
        orders_store,
        payments.clone(),
        Arc::new(SystemClock),
    )
    .await;
    let p = Uuid::new_v4();
    inventory.stock(p, 100).await;
    a.sell(p, 10).await;
    let user = customer("mia");
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(id_of(&a.place(&user, &[(p, 1)], None).await.json));
    }
    for id in &ids {
        assert_eq!(a.wait_final(&user, id).await["status"], "confirmed");
    }
    let charges = payments.charges.lock().clone();
    assert_eq!(charges.len(), 30);
    assert!(charges.values().all(|n| *n == 1), "{charges:?}");
    assert_eq!(inventory.levels(p).await, (70, 0));
}

/// The calls that settle an unknown outcome, against a real inventory: a
/// reservation's status reads as inventory stores it, and a keyed restock
/// (the service role may adjust) puts units back once however often it is
/// repeated.
pub(crate) async fn inventory_settles_unknown_outcomes() {
    use orders_http::inventory::{
        HttpInventory, InventoryApi, InventoryClientConfig, ServiceCredential,
    };
    use orders_http::store::HoldStatus;
    use service_guard::Role;

    let inventory = memory_inventory().await;
    let p = Uuid::new_v4();
    inventory.stock(p, 5).await;
    let mut config = InventoryClientConfig::new(inventory.url());
    config.credential =
        ServiceCredential::Static(crate::support::token("orders", &[Role::Service]));
    let client = HttpInventory::new(config, orders_http::metrics::OrderMetrics::default());
    let held = client
        .reserve(Uuid::new_v4(), &[(p, 2)], None, "settle")
        .await
        .expect("reserve");
    let rid = held[0].reservation_id;
    let status = client.reservation_status(rid, "settle").await;
    assert_eq!(status, Ok(HoldStatus::Reserved));
    client.confirm(rid, "settle").await.expect("confirm");
    assert_eq!(
        client.reservation_status(rid, "settle").await,
        Ok(HoldStatus::Confirmed)
    );
    assert!(
        client.release(rid, "settle").await.is_err(),
        "a sold hold is not released"
    );
    assert_eq!(inventory.levels(p).await, (3, 0));
    for _ in 0..3 {
        client
            .restock(p, 2, &format!("order-x-{rid}"), "settle")
            .await
            .expect("restock");
    }
    assert_eq!(inventory.levels(p).await, (5, 0), "restocked once");
    let unknown = client.reservation_status(Uuid::new_v4(), "settle").await;
    assert!(matches!(
        unknown,
        Err(orders_http::inventory::InventoryError::NotFound(_))
    ));
}
