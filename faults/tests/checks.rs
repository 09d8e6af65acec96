//! The invariant checks of fault runs find what they are for: a database
//! with both services' schemas holding one consistent sale is clean, and
//! each kind of damage, made behind the services' backs, is reported by its
//! check (and only a wrong database makes a check fail).
//!
//! Needs PostgreSQL (`TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`); skipped with a printed reason
//! when it is not reachable, unless `REQUIRE_SERVICES=1`.

use faults::check::{invariants, Expected, Finding};
use orders_http::store::{PgOrderOptions, PgOrderStore};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use test_support::postgres::connect_or_skip;
use uuid::Uuid;

/// A database of its own: both services' migrations, dropped at the end.
async fn fresh() -> Option<(PgPool, String, String)> {
    let (mut conn, admin) = connect_or_skip().await?;
    let name = format!("faults_checks_{}", Uuid::new_v4().simple());
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').expect("a URL with a database").0;
    let db_url = format!("{base}/{name}");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db_url)
        .await
        .expect("connect");
    inventory_sqlx::MIGRATOR
        .run(&pool)
        .await
        .expect("inventory migrations");
    let orders = PgOrderStore::connect(
        &db_url,
        PgOrderOptions {
            schema: Some("orders".to_owned()),
            ..PgOrderOptions::default()
        },
    )
    .await
    .expect("orders store");
    orders.migrate().await.expect("orders migrations");
    Some((pool, name, admin))
}

/// One sale: 10 units created, an order of 2 reserved, paid, confirmed; the
/// events published and applied.
async fn sale(pool: &PgPool) -> (Uuid, Uuid) {
    let (product, order, reservation, inventory_order, event) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let statements = [
        format!("INSERT INTO inventory_items VALUES ('{product}', 8, 0, 3, 0, 0)"),
        format!(
            "INSERT INTO stock_adjustments (product_id, delta, quantity_before, quantity_after, reason, actor, at_ms) \
             VALUES ('{product}', 10, 0, 10, 'created', 'admin', 0)"
        ),
        format!(
            "INSERT INTO reservations VALUES ('{reservation}', '{inventory_order}', '{product}', 2, 'confirmed', 0, 0, 0)"
        ),
        format!(
            "INSERT INTO outbox (event_id, event_type, product_id, payload, occurred_at_ms, published_at) \
             VALUES ('{event}', 'inventory.stock.confirmed', '{product}', '{{}}', 0, now())"
        ),
        format!(
            "INSERT INTO orders.orders (id, user_id, status, total_minor, currency, fingerprint, created_at_ms, updated_at_ms) \
             VALUES ('{order}', 'u', 'confirmed', 200, 'EUR', 'f', 0, 0)"
        ),
        format!("INSERT INTO orders.order_lines VALUES ('{order}', 1, '{product}', 'p', 2, 100, 200)"),
        format!(
            "INSERT INTO orders.order_holds VALUES ('{order}', '{reservation}', '{product}', 2, 'confirmed', 0)"
        ),
        format!("INSERT INTO orders.payments VALUES ('{order}', 'pay-1', 200, 'EUR', 0)"),
        format!("INSERT INTO orders.processed_events (consumer, event_id) VALUES ('orders', '{event}')"),
    ];
    for s in statements {
        sqlx::raw_sql(&s).execute(pool).await.expect(&s);
    }
    (product, order)
}

fn broken(findings: &[Finding]) -> Vec<&'static str> {
    findings
        .iter()
        .filter(|f| f.violations > 0)
        .map(|f| f.check)
        .collect()
}

#[tokio::test]
async fn each_kind_of_damage_is_found_by_its_check() {
    let Some((pool, name, admin)) = fresh().await else {
        return;
    };
    let (product, order) = sale(&pool).await;
    let expected = Expected {
        initial_stock: vec![(product, 10)],
        orders: vec![order],
        adjustments: vec![],
    };
    let clean = invariants(&pool, &expected).await.unwrap();
    assert_eq!(broken(&clean), Vec::<&str>::new(), "{clean:?}");

    // Each damage, the checks that must find it (and no other), and the
    // statement that undoes it.
    let cases = [
        (
            "UPDATE inventory_items SET quantity = 9",
            &["stock: ledger (initial + adjustments) = on hand + units sold"][..],
            "UPDATE inventory_items SET quantity = 8",
        ),
        (
            "UPDATE inventory_items SET reserved = 1",
            &["stock: reserved = units of pending holds, within on hand"][..],
            "UPDATE inventory_items SET reserved = 0",
        ),
        (
            "UPDATE orders.order_lines SET quantity = 3",
            &[
                "stock: units sold (less units returned) = units of confirmed orders",
                "orders: every line of a confirmed order sold exactly once",
            ][..],
            "UPDATE orders.order_lines SET quantity = 2",
        ),
        (
            "UPDATE orders.orders SET status = 'pending'",
            &[
                "stock: units sold (less units returned) = units of confirmed orders",
                "orders: every order terminal",
            ][..],
            "UPDATE orders.orders SET status = 'confirmed'",
        ),
        (
            "UPDATE orders.payments SET amount_minor = 199",
            &["orders: every confirmed order paid once, in full, never refunded"][..],
            "UPDATE orders.payments SET amount_minor = 200",
        ),
        (
            "UPDATE orders.order_holds SET reservation_id = gen_random_uuid()",
            &[
                "orders: every line of a confirmed order sold exactly once",
                "inventory: every unit sold belongs to an order",
            ][..],
            "UPDATE orders.order_holds SET reservation_id = (SELECT id FROM reservations)",
        ),
        (
            "UPDATE orders.order_holds SET status = 'released'",
            &["orders: its record of each hold agrees with inventory"][..],
            "UPDATE orders.order_holds SET status = 'confirmed'",
        ),
        (
            "UPDATE outbox SET published_at = NULL",
            &["events: every outbox row published"][..],
            "UPDATE outbox SET published_at = now()",
        ),
        (
            "DELETE FROM orders.processed_events",
            &["events: every hold event of inventory applied by orders"][..],
            "INSERT INTO orders.processed_events (consumer, event_id) SELECT 'orders', event_id FROM outbox",
        ),
        (
            "UPDATE orders.orders SET status = 'cancelled', cancel_reason = 'customer'",
            &[
                "stock: units sold (less units returned) = units of confirmed orders",
                "orders: every cancelled order's charge refunded in full",
                "orders: every cancelled order's holds released (or sold units returned)",
            ][..],
            "UPDATE orders.orders SET status = 'confirmed', cancel_reason = NULL",
        ),
    ];
    for (damage, checks, repair) in cases {
        sqlx::raw_sql(damage).execute(&pool).await.expect(damage);
        let found = invariants(&pool, &expected).await.unwrap();
        assert_eq!(broken(&found), checks, "{damage}: {found:?}");
        sqlx::raw_sql(repair).execute(&pool).await.expect(repair);
        let again = invariants(&pool, &expected).await.unwrap();
        assert_eq!(
            broken(&again),
            Vec::<&str>::new(),
            "after {repair}: {again:?}"
        );
    }

    // What the clients saw, held against the database.
    let lost = Expected {
        initial_stock: vec![(product, 11)],
        orders: vec![order, Uuid::new_v4()],
        adjustments: vec![(product, "k-1".to_owned())],
    };
    let found = invariants(&pool, &lost).await.unwrap();
    assert_eq!(
        broken(&found),
        vec![
            "stock: the ledger starts with the initial stock",
            "writes: every order acknowledged exists",
            "writes: every adjustment acknowledged is in the ledger",
        ]
    );

    pool.close().await;
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}
