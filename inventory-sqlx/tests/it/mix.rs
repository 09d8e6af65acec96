//! Fifty tasks run a random mix of reserve, confirm, release, expire and
//! sweeps over five products; afterwards the tables are checked in SQL.
//!
//! Reserves, confirms and releases happen at `T0`, expiries at `T0 + 2 s`, and
//! holds last 1 s or 60 s, so no reserve or confirm expires anything on the
//! way: every committed change of an item is then one reservation created or
//! one reservation finished, which makes the expected version exact.

use inventory_core::{Command, Error, InventoryStore, Outcome, ProductId, ReservationId};
use inventory_sqlx::{Concurrency, PgOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Row;
use tokio::task::JoinSet;

use crate::support::{at_ms, create, order, reserve, TestDb};

const PRODUCTS: usize = 5;
const STOCK: i64 = 40;
const TASKS: u64 = 50;
const OPS_PER_TASK: usize = 30;
const POOL_SIZE: u32 = 10;
/// Expiries run this long after the reserves, past the short holds.
const LATER_MS: i64 = 2_000;

async fn run_task(
    store: inventory_sqlx::PgStore,
    products: Vec<ProductId>,
    seed: u64,
) -> Result<u64, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mine: Vec<ReservationId> = Vec::new();
    let mut sold = 0;
    for _ in 0..OPS_PER_TASK {
        let pick = |rng: &mut StdRng, mine: &mut Vec<ReservationId>| {
            let i = rng.random_range(0..mine.len());
            mine.swap_remove(i)
        };
        let result = match rng.random_range(0..10) {
            0..=3 => {
                let p = products[rng.random_range(0..PRODUCTS)];
                let q = rng.random_range(1..=3);
                let ttl_ms = if rng.random_bool(0.5) { 1_000 } else { 60_000 };
                store
                    .execute(reserve(order(), p, q, ttl_ms), &at_ms(0))
                    .await
                    .map(|o| {
                        if let Outcome::Reserved { reservations, .. } = o {
                            mine.push(reservations[0].id());
                        }
                    })
            }
            4..=5 if !mine.is_empty() => {
                let id = pick(&mut rng, &mut mine);
                let confirm = Command::Confirm { reservation_id: id };
                store.execute(confirm, &at_ms(0)).await.map(|o| {
                    if let Outcome::Reservation {
                        reservation,
                        changed: true,
                    } = o
                    {
                        sold += reservation.quantity();
                    }
                })
            }
            6 if !mine.is_empty() => {
                let id = pick(&mut rng, &mut mine);
                let release = Command::Release { reservation_id: id };
                store.execute(release, &at_ms(0)).await.map(drop)
            }
            7 if !mine.is_empty() => {
                let id = pick(&mut rng, &mut mine);
                let expire = Command::Expire { reservation_id: id };
                store.execute(expire, &at_ms(LATER_MS)).await.map(|o| {
                    if let Outcome::Reservation {
                        changed: false,
                        reservation,
                    } = o
                    {
                        if reservation.status().as_str() == "pending" {
                            mine.push(id);
                        }
                    }
                })
            }
            _ => store.expire_due(&at_ms(LATER_MS), 8).await.map(drop),
        };
        match result {
            Ok(()) | Err(Error::InsufficientStock { .. } | Error::ReservationExpired { .. }) => {}
            Err(e) => return Err(format!("task {seed}: {e:?}")),
        }
    }
    Ok(sold)
}

async fn run_mix(concurrency: Concurrency) {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let options = PgOptions {
        concurrency,
        retries_max: 64,
        ..PgOptions::default()
    };
    let store = db.store(POOL_SIZE, options).await;
    let mut products = Vec::new();
    for _ in 0..PRODUCTS {
        products.push(create(&store, STOCK as u64).await);
    }
    let mut tasks = JoinSet::new();
    for seed in 0..TASKS {
        tasks.spawn(run_task(store.clone(), products.clone(), seed));
    }
    let mut sold = 0;
    for result in tasks.join_all().await {
        sold += result.expect("only business errors");
    }
    check_in_sql(&db, sold).await;
}

async fn check_in_sql(db: &TestDb, sold: u64) {
    let pool = db.pool().await;
    // reserved == sum of pending; quantity == initial - confirmed; version ==
    // 1 + reservations created + reservations finished.
    let rows = sqlx::query(
        "SELECT i.product_id, i.quantity, i.reserved, i.version, \
           COALESCE(SUM(r.quantity) FILTER (WHERE r.status = 'pending'), 0)::bigint AS pending, \
           COALESCE(SUM(r.quantity) FILTER (WHERE r.status = 'confirmed'), 0)::bigint AS confirmed, \
           COUNT(r.id) AS created, \
           COUNT(r.id) FILTER (WHERE r.status <> 'pending') AS finished \
         FROM inventory_items i LEFT JOIN reservations r ON r.product_id = i.product_id \
         GROUP BY i.product_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), PRODUCTS);
    let mut confirmed_total = 0;
    for row in &rows {
        let (quantity, reserved, version): (i64, i64, i64) =
            (row.get("quantity"), row.get("reserved"), row.get("version"));
        let (pending, confirmed): (i64, i64) = (row.get("pending"), row.get("confirmed"));
        let (created, finished): (i64, i64) = (row.get("created"), row.get("finished"));
        assert_eq!(reserved, pending, "reserved equals the pending sum");
        assert!(confirmed <= STOCK, "never sold more than the initial stock");
        assert_eq!(quantity, STOCK - confirmed, "confirmed units left once");
        assert!(0 <= reserved && reserved <= quantity);
        assert_eq!(version, 1 + created + finished, "one version per change");
        confirmed_total += confirmed;
    }
    assert_eq!(confirmed_total as u64, sold, "confirmations reported match");
    // One event per transition, no more.
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM reservations r WHERE \
           (SELECT COUNT(*) FROM outbox o WHERE o.payload->>'reservation_id' = r.id::text \
              AND o.event_type = 'inventory.stock.reserved') <> 1 \
           OR (SELECT COUNT(*) FROM outbox o WHERE o.payload->>'reservation_id' = r.id::text \
              AND o.event_type <> 'inventory.stock.reserved') \
              <> CASE WHEN r.status = 'pending' THEN 0 ELSE 1 END",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        mismatched, 0,
        "each reservation has one event per transition"
    );
}

/// The row-locking store keeps every invariant under a random mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_mix_keeps_invariants_with_row_locks() {
    run_mix(Concurrency::Locking).await;
}

/// The optimistic store keeps every invariant under a random mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_mix_keeps_invariants_optimistic() {
    run_mix(Concurrency::Optimistic).await;
}
