//! Integration tests of orders-http: the shared store suite on memory and
//! PostgreSQL, and the order flows against a real inventory-http on a socket
//! (memory stores, and PostgreSQL-backed inventory and orders).
//!
//! PostgreSQL tests work in schemas of their own and RabbitMQ tests on
//! exchanges and queues of their own; without a reachable server they print
//! why they were skipped, unless `REQUIRE_SERVICES=1`.

mod bus;
mod events;
mod flows;
mod saga;
mod support;

use std::sync::Arc;

use flows::Stack;
use support::{memory, TestSchema};

fn mem_inventory() -> inventory_memory::MemoryStore {
    inventory_memory::MemoryStore::new()
}

/// The memory store passes the shared store suite.
#[tokio::test]
async fn memory_store_suite() {
    orders_http::store::suite::run_all(memory()).await;
}

/// The PostgreSQL store passes the shared store suite.
#[tokio::test]
async fn postgres_store_suite() {
    let Some(db) = TestSchema::create().await else {
        return;
    };
    orders_http::store::suite::run_all(db.orders_store().await).await;
}

/// The API's acceptance cases, on memory stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_memory() {
    let t = Stack::start(mem_inventory(), memory(), |_| {}).await;
    flows::acceptance(&t).await;
    flows::catalog_admin(&t).await;
}

/// Happy path, out of stock and the last-unit race, on memory stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_outcomes_memory() {
    let t = Stack::start(mem_inventory(), memory(), |_| {}).await;
    flows::happy_path(&t).await;
    flows::out_of_stock(&t).await;
    flows::last_unit_race(&t).await;
}

/// Declined payments are undone, on memory stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_declined_memory() {
    let t = Stack::start(mem_inventory(), memory(), |c| c.payment_decline_rate = 1.0).await;
    flows::payment_declined(&t).await;
}

/// An interrupted saga resumes after a restart, on memory stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_saga_resumes_memory() {
    saga::interrupted_saga_resumes(mem_inventory(), memory()).await;
}

/// An expired hold is reserved again and confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_hold_is_reserved_again() {
    saga::expired_hold_is_reserved_again().await;
}

/// An expired hold whose stock is gone is refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_hold_without_stock_is_refunded() {
    saga::expired_hold_without_stock_is_refunded().await;
}

/// The breaker opens while inventory is down; orders resume when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_and_orders_resume() {
    saga::breaker_opens_and_orders_resume().await;
}

/// The pending deadline cancels `inventory_unavailable`; customer cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_cancels_and_customers_can_cancel() {
    saga::deadline_cancels_and_customers_can_cancel().await;
}

/// A cancel during the payment ends in a refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_payment_refunds() {
    saga::cancel_during_payment_refunds().await;
}

/// Acceptance, happy path, out of stock, decline and the last-unit race with
/// PostgreSQL behind both inventory and orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_postgres() {
    let (Some(inv), Some(ord)) = (TestSchema::create().await, TestSchema::create().await) else {
        return;
    };
    let t = Stack::start(
        inv.inventory_store().await,
        ord.orders_store().await,
        |_| {},
    )
    .await;
    flows::acceptance(&t).await;
    flows::happy_path(&t).await;
    flows::out_of_stock(&t).await;
    flows::last_unit_race(&t).await;
    drop(t);
    let (Some(inv2), Some(ord2)) = (TestSchema::create().await, TestSchema::create().await) else {
        return;
    };
    let declined = Stack::start(
        inv2.inventory_store().await,
        ord2.orders_store().await,
        |c| c.payment_decline_rate = 1.0,
    )
    .await;
    flows::payment_declined(&declined).await;
}

/// An interrupted saga resumes after a restart, with PostgreSQL behind both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_saga_resumes_postgres() {
    let (Some(inv), Some(ord)) = (TestSchema::create().await, TestSchema::create().await) else {
        return;
    };
    let orders_store = ord.orders_store().await;
    saga::interrupted_saga_resumes(inv.inventory_store().await, Arc::clone(&orders_store)).await;
}

/// Two instances on one memory store never run the same saga twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sagas_memory() {
    saga::two_instances_never_run_one_saga_twice(memory()).await;
}

/// Two instances on one PostgreSQL store never run the same saga twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sagas_postgres() {
    let Some(ord) = TestSchema::create().await else {
        return;
    };
    saga::two_instances_never_run_one_saga_twice(ord.orders_store().await).await;
}

/// Finding the order of an inventory event reads one order, however many
/// there are and whether or not the planner has statistics yet (a plan
/// scanning every order made the consumer of inventory's events slower as
/// orders accumulated).
#[tokio::test]
async fn the_order_of_an_event_is_found_without_scanning_orders() {
    let Some(db) = TestSchema::create().await else {
        return;
    };
    let _store = db.orders_store().await;
    let pool = sqlx::PgPool::connect_with(db.options()).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO orders (id, user_id, status, total_minor, currency, fingerprint, created_at_ms, updated_at_ms) \
           SELECT gen_random_uuid(), 'u', 'confirmed', 1, 'EUR', 'f', 0, 0 FROM generate_series(1, 20000); \
         INSERT INTO saga_states (order_id, step, state, updated_at_ms) \
           SELECT id, 'done', jsonb_build_object('inventory_order_id', gen_random_uuid()::text), 0 FROM orders",
    )
    .execute(&pool)
    .await
    .unwrap();
    let plan: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN {}", orders_http::store::HOLD_OWNER_SQL))
            .bind(uuid::Uuid::new_v4().to_string())
            .fetch_all(&pool)
            .await
            .unwrap();
    let plan = plan.join("\n");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

/// An order's life as events through the in-process bus (memory stores).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_events_in_process() {
    events::order_life_in_process().await;
}

/// An order's life as events through RabbitMQ, orders on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_events_rabbitmq_postgres() {
    let Some(ord) = TestSchema::create().await else {
        return;
    };
    events::order_life_rabbitmq(ord.orders_store().await).await;
}

/// A duplicated inventory event is applied once (memory store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_inventory_event_applied_once_memory() {
    events::duplicate_applied_once_in_process(memory()).await;
}

/// A duplicated inventory event is applied once (PostgreSQL dedup table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_inventory_event_applied_once_postgres() {
    let Some(ord) = TestSchema::create().await else {
        return;
    };
    events::duplicate_applied_once_in_process(ord.orders_store().await).await;
}

/// An expired hold reported by inventory's event goes to the saga's policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_event_hands_order_to_saga() {
    events::expired_event_hands_order_to_saga().await;
}

/// Poison messages are dead-lettered, later ones flow, duplicates are
/// absorbed (RabbitMQ, orders on PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_postgres() {
    let Some(ord) = TestSchema::create().await else {
        return;
    };
    events::poison_dead_lettered_and_duplicates_absorbed(ord.orders_store().await).await;
}

/// Poison messages are dead-lettered, later ones flow, duplicates are
/// absorbed (RabbitMQ, memory store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_memory() {
    events::poison_dead_lettered_and_duplicates_absorbed(memory()).await;
}

/// Readiness is 503 while the broker is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_broker_down() {
    events::not_ready_while_broker_down().await;
}

/// The 101st request of a minute gets 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_the_101st_request() {
    events::the_101st_request_is_rate_limited().await;
}

/// Without a key the service refuses a listener bound beyond loopback, even
/// when the configured address is a loopback one (what counts is where it
/// really listens).
#[tokio::test]
async fn open_service_refuses_a_public_listener() {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let config = orders_http::config::Config::embedded();
    assert!(
        config.listen.ip().is_loopback(),
        "the configured address is loopback"
    );

    let result = orders_http::run(listener, config, std::future::ready(())).await;

    assert!(
        matches!(result, Err(orders_http::StartError::Config(_))),
        "{result:?}"
    );
}

/// The inventory client's settling calls work against a real inventory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_settles_unknown_outcomes() {
    saga::inventory_settles_unknown_outcomes().await;
}
