//! Group commit over HTTP on PostgreSQL: a row lock held from outside keeps a
//! batch in flight, so the tests decide exactly what waits in line. The line
//! keeps arrival order, a full line answers 503 and commits nothing, and a
//! connection killed under a batch fails every caller of that batch with
//! nothing half applied.

use std::sync::Arc;
use std::time::Duration;

use inventory_core::InventoryStore;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use test_support::postgres::TestSchema;
use uuid::Uuid;

use crate::helpers::{spawn_app, test_config, Reply, TestApp};
use crate::stores::postgres;

/// How long a test waits for the server to reach a state it polls for.
const SETTLE_TIMEOUT_MS: u64 = 10_000;

/// A transaction that holds `product`'s row lock until it is dropped or
/// rolled back.
async fn hold_row(schema: &TestSchema, product: Uuid) -> (PgConnection, i32) {
    let mut conn = schema.connect().await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("SELECT 1 FROM inventory_items WHERE product_id = $1 FOR UPDATE")
        .bind(product)
        .execute(&mut conn)
        .await
        .unwrap();
    (conn, pid)
}

/// Waits until a server connection other than `gone` (one just terminated,
/// which may still show for a moment) waits on `holder`'s lock; returns its
/// pid.
async fn blocked_by(schema: &TestSchema, holder: i32, gone: Option<i32>) -> i32 {
    let mut conn = schema.connect().await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    loop {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE $1 = ANY(pg_blocking_pids(pid)) AND pid <> $2",
        )
        .bind(holder)
        .bind(gone.unwrap_or(0))
        .fetch_optional(&mut conn)
        .await
        .unwrap();
        if let Some(pid) = waiting {
            let _ = conn.close().await;
            return pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing blocked in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `done` holds.
async fn settle(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "state not reached in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

type App = Arc<TestApp<inventory_http::AnyStore>>;

/// Sends a reserve of one unit for `order` without waiting for the answer.
fn send_reserve(t: &App, product: Uuid, order: Uuid) -> tokio::task::JoinHandle<Reply> {
    let t = Arc::clone(t);
    tokio::spawn(async move {
        t.post(
            "/api/inventory/reserve",
            &json!({"product_id": product, "quantity": 1, "order_id": order}),
        )
        .await
    })
}

/// Sends reserves for `orders`, each after the previous one is in line.
async fn queue_in_order(
    t: &App,
    product: Uuid,
    orders: &[Uuid],
) -> Vec<tokio::task::JoinHandle<Reply>> {
    let mut sent = Vec::new();
    for order in orders {
        let before = t.app.queued_writes();
        sent.push(send_reserve(t, product, *order));
        settle(|| t.app.queued_writes() == before + 1).await;
    }
    sent
}

async fn start(config: inventory_http::Config) -> Option<(App, TestSchema)> {
    let (store, schema) = postgres().await?;
    let t = spawn_app(store, config).await;
    Some((Arc::new(t), schema.expect("postgres has a schema")))
}

async fn stop(t: App) {
    if let Ok(t) = Arc::try_unwrap(t) {
        t.shutdown().await;
    }
}

async fn reservations_of(t: &App, orders: &[Uuid]) -> usize {
    let mut found = 0;
    for order in orders {
        let id = inventory_core::OrderId::from_uuid(*order);
        found += t.app.store().reservations_of_order(id).await.unwrap().len();
    }
    found
}

/// Buyers who wait behind a batch in flight are served in arrival order:
/// with two units and one in flight, the first in line gets the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_unit_goes_to_the_first_in_line() {
    let Some((t, schema)) = start(test_config()).await else {
        return;
    };
    let product = t.create_item(2).await;
    let (holder, holder_pid) = hold_row(&schema, product).await;
    let first = send_reserve(&t, product, Uuid::new_v4());
    blocked_by(&schema, holder_pid, None).await;
    let orders: Vec<Uuid> = (0..9).map(|_| Uuid::new_v4()).collect();
    let waiting = queue_in_order(&t, product, &orders).await;

    drop(holder);
    assert_eq!(first.await.unwrap().status, 201);
    let mut statuses = Vec::new();
    for reply in waiting {
        let reply = reply.await.unwrap();
        statuses.push((reply.status, reply.code()));
    }

    assert_eq!(statuses[0].0, 201, "the first in line wins: {statuses:?}");
    for (status, code) in &statuses[1..] {
        assert_eq!((*status, code.as_str()), (409, "insufficient_stock"));
    }
    stop(t).await;
}

/// A full line answers 503 `overloaded` with `Retry-After` and commits
/// nothing; the same request sent again commits once, and again changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_line_answers_503_and_commits_nothing_twice() {
    let config = inventory_http::Config {
        batch_queue_max: 3,
        ..test_config()
    };
    let Some((t, schema)) = start(config).await else {
        return;
    };
    let product = t.create_item(100).await;
    let (holder, holder_pid) = hold_row(&schema, product).await;
    let first = send_reserve(&t, product, Uuid::new_v4());
    blocked_by(&schema, holder_pid, None).await;
    let orders: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let waiting = queue_in_order(&t, product, &orders).await;
    let refused_order = Uuid::new_v4();

    let refused = send_reserve(&t, product, refused_order).await.unwrap();

    assert_eq!(
        (refused.status, refused.code().as_str()),
        (503, "overloaded")
    );
    assert!(refused.header("retry-after").is_some());
    drop(holder);
    assert_eq!(first.await.unwrap().status, 201);
    for reply in waiting {
        assert_eq!(reply.await.unwrap().status, 201);
    }
    assert_eq!(reservations_of(&t, &[refused_order]).await, 0);
    assert_eq!(t.availability(product).await["reserved"], 4);
    let again = send_reserve(&t, product, refused_order).await.unwrap();
    let repeat = send_reserve(&t, product, refused_order).await.unwrap();
    assert_eq!((again.status, repeat.status), (201, 200));
    assert_eq!(t.availability(product).await["reserved"], 5);
    stop(t).await;
}

/// A connection killed while a batch waits inside its transaction fails
/// every caller of that batch, and no command of it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_fails_every_caller_of_its_batch() {
    let Some((t, schema)) = start(test_config()).await else {
        return;
    };
    let product = t.create_item(100).await;
    let (holder, holder_pid) = hold_row(&schema, product).await;
    let mut admin = schema.connect().await;
    let first_order = Uuid::new_v4();
    let first = send_reserve(&t, product, first_order);
    let first_pid = blocked_by(&schema, holder_pid, None).await;
    let orders: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let waiting = queue_in_order(&t, product, &orders).await;

    // The first batch dies; the four waiting form the next one, which
    // blocks on the same lock, and dies too.
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(first_pid)
        .execute(&mut admin)
        .await
        .unwrap();
    let first = first.await.unwrap();
    let batch_pid = blocked_by(&schema, holder_pid, Some(first_pid)).await;
    assert_ne!(batch_pid, first_pid);
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(batch_pid)
        .execute(&mut admin)
        .await
        .unwrap();
    let mut replies = Vec::new();
    for reply in waiting {
        replies.push(reply.await.unwrap());
    }
    drop(holder);

    assert_eq!(
        (first.status, first.code().as_str()),
        (503, "store_unavailable")
    );
    for reply in &replies {
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (503, "store_unavailable")
        );
    }
    let mut all = orders.clone();
    all.push(first_order);
    assert_eq!(reservations_of(&t, &all).await, 0);
    assert_eq!(t.availability(product).await["reserved"], 0);
    let _ = admin.close().await;
    stop(t).await;
}
