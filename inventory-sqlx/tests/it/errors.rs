//! Error mapping: an unreachable database is "unavailable", constraint
//! violations become the domain's errors, and the schema's own checks hold.

use std::time::Duration;

use inventory_core::{
    Command, Error, InventoryStore, Outcome, Quantity, ReservationId, Reserve, ReserveLine, Ttl,
};
use inventory_sqlx::{Concurrency, PgOptions, PgStore};
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::support::{at_ms, create, create_cmd, order, product, TestDb};

/// Nothing listens on port 1.
const UNREACHABLE_URL: &str = "postgres://postgres@127.0.0.1:1/test";

/// Connecting to a server that is not there is `Unavailable`, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_database_is_unavailable() {
    let options = PgOptions {
        acquire_timeout_ms: 2_000,
        ..PgOptions::default()
    };
    let err = PgStore::connect(UNREACHABLE_URL, options)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.is_transient());
}

/// A store whose pool cannot reach its server answers every call with
/// `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_database_is_unavailable_on_every_call() {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(UNREACHABLE_URL)
        .expect("a lazy pool parses the url");
    let store = PgStore::from_pool(pool);
    let p = product();
    let err = store
        .execute(create_cmd(p, 1), &at_ms(0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = store.item(p).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = store.expire_due(&at_ms(0), 10).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = store.migrate().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

/// A malformed URL is invalid input.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_url_is_invalid_input() {
    let err = PgStore::connect("not a url", PgOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: "database_url",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Creating an item twice is `AlreadyExists`, also when ten creators race
/// (then the unique key, not the read, is what refuses the losers).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_create_is_already_exists() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    for concurrency in [Concurrency::Locking, Concurrency::Optimistic] {
        let store = db
            .store(
                8,
                PgOptions {
                    concurrency,
                    ..PgOptions::default()
                },
            )
            .await;
        let p = create(&store, 5).await;
        let err = store
            .execute(create_cmd(p, 7), &at_ms(1))
            .await
            .unwrap_err();
        assert_eq!(err, Error::AlreadyExists { product_id: p });

        let raced = product();
        let mut tasks = JoinSet::new();
        for _ in 0..10 {
            let store = store.clone();
            tasks.spawn(async move { store.execute(create_cmd(raced, 3), &at_ms(0)).await });
        }
        let results = tasks.join_all().await;
        let created = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(
                |r| matches!(r, Err(Error::AlreadyExists { product_id }) if *product_id == raced),
            )
            .count();
        assert_eq!((created, refused), (1, 9), "{concurrency:?}: {results:?}");
    }
}

/// Twenty concurrent repeats of one order line all succeed, one creates it,
/// and the stock is held once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_repeats_of_a_line_hold_stock_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    for concurrency in [Concurrency::Locking, Concurrency::Optimistic] {
        let store = db
            .store(
                8,
                PgOptions {
                    concurrency,
                    retries_max: 32,
                    ..PgOptions::default()
                },
            )
            .await;
        let p = create(&store, 10).await;
        let o = order();
        let mut tasks = JoinSet::new();
        for _ in 0..20 {
            let store = store.clone();
            tasks.spawn(async move {
                store
                    .execute(crate::support::reserve(o, p, 3, 60_000), &at_ms(1))
                    .await
            });
        }
        let mut created = 0;
        for result in tasks.join_all().await {
            match result {
                Ok(Outcome::Reserved { created: c, .. }) => created += usize::from(c),
                other => panic!("{concurrency:?}: unexpected {other:?}"),
            }
        }
        assert_eq!(created, 1, "{concurrency:?}");
        let item = store.item(p).await.unwrap().unwrap();
        assert_eq!((item.reserved(), item.version().get()), (3, 2));
        assert_eq!(store.reservations_of_order(o).await.unwrap().len(), 1);
    }
}

/// A reservation id already used by another order line is refused as
/// invalid input, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reused_reservation_id_is_invalid_input() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store(2, PgOptions::default()).await;
    let (p, q) = (create(&store, 5).await, create(&store, 5).await);
    let id = ReservationId::from_uuid(Uuid::new_v4());
    let line = |product_id| ReserveLine {
        product_id,
        quantity: Quantity::new(1).unwrap(),
        reservation_id: id,
    };
    let first = Command::Reserve(Reserve::single(order(), line(p), Ttl::default()));
    store.execute(first, &at_ms(1)).await.unwrap();
    let second = Command::Reserve(Reserve::single(order(), line(q), Ttl::default()));
    let err = store.execute(second, &at_ms(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: "reservation_id",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.item(q).await.unwrap().unwrap().reserved(), 0);
}

/// The schema refuses states core never produces: reserved above quantity,
/// negative stock, two reservations of one order line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schema_checks_refuse_impossible_states() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store(2, PgOptions::default()).await;
    let p = create(&store, 5).await;
    let pool = store.pool();
    for bad in [
        "UPDATE inventory_items SET reserved = quantity + 1 WHERE product_id = $1",
        "UPDATE inventory_items SET quantity = -1, reserved = 0 WHERE product_id = $1",
        "UPDATE inventory_items SET reserved = -1 WHERE product_id = $1",
    ] {
        let err = sqlx::query(bad)
            .bind(p.as_uuid())
            .execute(pool)
            .await
            .unwrap_err();
        let code = err.as_database_error().and_then(|e| e.code()).unwrap();
        assert_eq!(code, "23514", "{bad}");
    }
    let o = order();
    store
        .execute(crate::support::reserve(o, p, 1, 60_000), &at_ms(1))
        .await
        .unwrap();
    let dup = sqlx::query(
        "INSERT INTO reservations (id, order_id, product_id, quantity, status, expires_at_ms, \
         created_at_ms, updated_at_ms) VALUES ($1, $2, $3, 1, 'pending', 0, 0, 0)",
    )
    .bind(Uuid::new_v4())
    .bind(o.as_uuid())
    .bind(p.as_uuid())
    .execute(pool)
    .await
    .unwrap_err();
    let db_err = dup.as_database_error().unwrap();
    assert_eq!(db_err.constraint(), Some("reservations_order_product_key"));
}

/// Events carry the request's correlation id and leave the outbox once
/// marked published.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_keeps_correlation_and_publication() {
    use inventory_core::Outbox;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store(2, PgOptions::default()).await;
    let p = create(&store, 1).await;
    let mut meta = at_ms(1);
    meta.correlation_id = Some("req-42".to_owned());
    store
        .execute(crate::support::reserve(order(), p, 1, 60_000), &meta)
        .await
        .unwrap();
    let entries = store.unpublished(100).await.unwrap();
    let types: Vec<_> = entries
        .iter()
        .map(|e| e.event.payload.event_type())
        .collect();
    assert_eq!(
        types,
        [
            "inventory.stock.adjusted",
            "inventory.stock.reserved",
            "inventory.stock.depleted"
        ]
    );
    assert_eq!(entries[0].correlation_id, None);
    assert_eq!(entries[1].correlation_id.as_deref(), Some("req-42"));
    assert!(entries.windows(2).all(|w| w[0].sequence < w[1].sequence));
    store.mark_published(&[entries[0].sequence]).await.unwrap();
    let left = store.unpublished(100).await.unwrap();
    assert_eq!(left.len(), 2);
    assert_eq!(left[0].event_id, entries[1].event_id);
}
