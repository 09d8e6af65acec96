//! Two sweepers, each on its own pool (two instances), over 1,000 due
//! reservations: each reservation is expired exactly once and all the stock
//! comes back.

use inventory_core::InventoryStore;
use inventory_sqlx::{PgOptions, PgStore};
use tokio::task::JoinSet;

use crate::support::{at_ms, create, order, reserve, TestDb};

const RESERVATIONS: usize = 1_000;
const PRODUCTS: usize = 10;
const SWEEP_BATCH: usize = 100;
/// Bounds each sweeper's loop (the work needs about RESERVATIONS / SWEEP_BATCH).
const SWEEP_ROUNDS_MAX: usize = 1_000;

async fn sweeper(store: PgStore) -> usize {
    let mut expired = 0;
    for _ in 0..SWEEP_ROUNDS_MAX {
        let n = store
            .expire_due(&at_ms(2_000), SWEEP_BATCH)
            .await
            .expect("sweep");
        if n == 0 {
            // Nothing due, or every due item was locked by the other sweeper:
            // stop once nothing is pending any more.
            let pending: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM reservations WHERE status = 'pending'")
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
            if pending == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        expired += n;
    }
    expired
}

/// Each of 1,000 due reservations is expired once, by one of two sweepers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sweepers_expire_each_reservation_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let setup = db.store(8, PgOptions::default()).await;
    let mut products = Vec::new();
    for _ in 0..PRODUCTS {
        products.push(create(&setup, (RESERVATIONS / PRODUCTS) as u64).await);
    }
    let mut loads = JoinSet::new();
    for worker in 0..8 {
        let (store, products) = (setup.clone(), products.clone());
        loads.spawn(async move {
            for i in (worker..RESERVATIONS).step_by(8) {
                let p = products[i % PRODUCTS];
                store
                    .execute(reserve(order(), p, 1, 1_000), &at_ms(0))
                    .await
                    .expect("reserve");
            }
        });
    }
    loads.join_all().await;

    let first = db.store(4, PgOptions::default()).await;
    let second = db.store(4, PgOptions::default()).await;
    let (a, b) = tokio::join!(tokio::spawn(sweeper(first)), tokio::spawn(sweeper(second)));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a + b, RESERVATIONS, "sweepers expired {a} + {b}");

    let pool = setup.pool();
    let per_reservation: Vec<i64> = sqlx::query_scalar(
        "SELECT COUNT(o.sequence) FROM reservations r LEFT JOIN outbox o \
           ON o.event_type = 'inventory.stock.expired' \
          AND o.payload->>'reservation_id' = r.id::text \
         GROUP BY r.id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(per_reservation.len(), RESERVATIONS);
    assert!(
        per_reservation.iter().all(|n| *n == 1),
        "one expired event per reservation"
    );
    let not_expired: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM reservations WHERE status <> 'expired'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(not_expired, 0);
    for p in products {
        let item = setup.item(p).await.unwrap().unwrap();
        assert_eq!(
            (item.quantity(), item.reserved()),
            ((RESERVATIONS / PRODUCTS) as u64, 0),
            "stock fully back"
        );
    }
}

/// The earliest due holds all belong to a product another transaction keeps
/// locked (a hot product): the sweep still expires the due holds of the
/// other products instead of stopping.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sweep_goes_past_a_locked_hot_product() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store(4, PgOptions::default()).await;
    let hot = create(&store, 100).await;
    let other = create(&store, 1).await;
    for _ in 0..50 {
        store
            .execute(reserve(order(), hot, 1, 1_000), &at_ms(0))
            .await
            .expect("reserve the hot product");
    }
    // Due later than every hold of the hot product.
    store
        .execute(reserve(order(), other, 1, 1_000), &at_ms(500))
        .await
        .expect("reserve the other product");
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM inventory_items WHERE product_id = $1 FOR UPDATE")
        .bind(hot.as_uuid())
        .execute(&mut *holder)
        .await
        .unwrap();

    let expired = store.expire_due(&at_ms(5_000), 10).await.expect("sweep");

    holder.rollback().await.unwrap();
    assert_eq!(expired, 1, "the other product's hold is expired");
    let other_item = store.item(other).await.unwrap().unwrap();
    assert_eq!(other_item.reserved(), 0);
    let hot_item = store.item(hot).await.unwrap().unwrap();
    assert_eq!(hot_item.reserved(), 50, "the locked product waits its turn");
}
