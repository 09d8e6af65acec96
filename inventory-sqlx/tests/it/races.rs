//! A hundred buyers race for the last unit, through one pool and through two
//! pools (two server instances): exactly one wins, every other one is told
//! the stock ran out, and nobody sees a contention error.

use inventory_core::{Error, InventoryStore, Outcome, ProductId};
use inventory_sqlx::{Concurrency, PgOptions, PgStore};
use tokio::task::JoinSet;

use crate::support::{at_ms, create, order, reserve, TestDb};

/// Buyers in each race.
const BUYERS: usize = 100;

/// Connections per pool: fewer than the buyers, so they also queue for
/// connections, and well below the server's `max_connections`.
const POOL_SIZE: u32 = 10;

/// Runs `BUYERS` reserves of one unit of `p`, buyer `i` going through
/// `stores[i % stores.len()]`, and returns (winners, out of stock, other).
async fn race(stores: &[PgStore], p: ProductId) -> (usize, usize, Vec<String>) {
    let mut tasks = JoinSet::new();
    for i in 0..BUYERS {
        let store = stores[i % stores.len()].clone();
        tasks.spawn(async move {
            store
                .execute(reserve(order(), p, 1, 60_000), &at_ms(1))
                .await
        });
    }
    let (mut won, mut lost, mut other) = (0, 0, Vec::new());
    for result in tasks.join_all().await {
        match result {
            Ok(Outcome::Reserved { created: true, .. }) => won += 1,
            Err(Error::InsufficientStock {
                requested: 1,
                available: 0,
                ..
            }) => lost += 1,
            unexpected => other.push(format!("{unexpected:?}")),
        }
    }
    (won, lost, other)
}

async fn assert_sold_once(store: &PgStore, p: ProductId) {
    let item = store.item(p).await.unwrap().unwrap();
    assert_eq!(
        (item.quantity(), item.reserved(), item.version().get()),
        (1, 1, 2)
    );
    assert_eq!(store.reservations_of_product(p).await.unwrap().len(), 1);
}

/// One pool, row locks: one winner, 99 out of stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_unit_one_pool_has_one_winner() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store(POOL_SIZE, PgOptions::default()).await;
    for _ in 0..3 {
        let p = create(&store, 1).await;
        let (won, lost, other) = race(std::slice::from_ref(&store), p).await;
        assert_eq!((won, lost, other.len()), (1, BUYERS - 1, 0), "{other:?}");
        assert_sold_once(&store, p).await;
    }
    assert_eq!(store.retry_stats().conflicts, 0, "row locks never retry");
}

/// One pool, optimistic: same answers; losers of the version check retry and
/// then see the stock gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_unit_one_pool_optimistic_has_one_winner() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let options = PgOptions {
        concurrency: Concurrency::Optimistic,
        retries_max: 32,
        ..PgOptions::default()
    };
    let store = db.store(POOL_SIZE, options).await;
    let p = create(&store, 1).await;
    let (won, lost, other) = race(std::slice::from_ref(&store), p).await;
    assert_eq!((won, lost, other.len()), (1, BUYERS - 1, 0), "{other:?}");
    assert_sold_once(&store, p).await;
}

/// Two pools on one database, as two server instances would be: still
/// exactly one winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_unit_two_pools_has_one_winner() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let first = db.store(POOL_SIZE, PgOptions::default()).await;
    let second = db.store(POOL_SIZE, PgOptions::default()).await;
    let stores = [first, second];
    for _ in 0..3 {
        let p = create(&stores[0], 1).await;
        let (won, lost, other) = race(&stores, p).await;
        assert_eq!((won, lost, other.len()), (1, BUYERS - 1, 0), "{other:?}");
        assert_sold_once(&stores[1], p).await;
    }
}
