//! Concurrency cases: many tasks at once against one store, then the
//! invariants. The harness decides what "at once" means (threads, a
//! multi-thread runtime, several connection pools).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::model::XorShift;
use super::{
    assert_item_consistent, at, create, drain_outbox, item, new_order, reserve_many, reserve_one,
    Harness, Task,
};
use crate::{
    Command, Error, EventPayload, InventoryStore, Meta, Outcome, ProductId, ReservationId,
};

/// Counts outcomes of many tasks without locks.
#[derive(Default)]
struct Tally {
    won: AtomicUsize,
    lost: AtomicUsize,
    other: AtomicUsize,
}

/// `race_tasks` buyers reserve the last unit at once, `race_rounds` times:
/// exactly one wins each round and every other gets insufficient stock.
pub(super) async fn race_for_last_unit<H: Harness>(harness: &H) {
    let cfg = harness.config();
    let store = Arc::new(harness.store().await);
    for round in 0..cfg.race_rounds {
        let p = create(&*store, 1).await;
        let tally = Arc::new(Tally::default());
        let tasks: Vec<Task> = (0..cfg.race_tasks)
            .map(|_| {
                let (store, tally) = (Arc::clone(&store), Arc::clone(&tally));
                Box::pin(async move {
                    let counter = match store
                        .execute(reserve_one(new_order(), p, 1, 60), &at(1))
                        .await
                    {
                        Ok(Outcome::Reserved { created: true, .. }) => &tally.won,
                        Err(Error::InsufficientStock {
                            requested: 1,
                            available: 0,
                            ..
                        }) => &tally.lost,
                        _ => &tally.other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }) as Task
            })
            .collect();
        harness.run_concurrently(tasks).await;
        let won = tally.won.load(Ordering::Relaxed);
        let lost = tally.lost.load(Ordering::Relaxed);
        assert_eq!(
            (won, lost, tally.other.load(Ordering::Relaxed)),
            (1, cfg.race_tasks - 1, 0),
            "round {round}: exactly one buyer gets the last unit"
        );
        let it = item(&*store, p).await;
        assert_eq!(
            (it.quantity(), it.reserved(), it.version().get()),
            (1, 1, 2)
        );
        assert_item_consistent(&*store, p).await;
    }
}

const MIX_PRODUCTS: usize = 5;
const MIX_STOCK: u64 = 40;

/// Many tasks run random reserve / confirm / release / expire mixes over a few
/// products; afterwards every item is consistent and the units sold plus the
/// units on hand equal the initial stock (nothing sold twice, nothing lost).
pub(super) async fn random_mix_keeps_invariants<H: Harness>(harness: &H) {
    let cfg = harness.config();
    let store = Arc::new(harness.store().await);
    let mut products = Vec::new();
    for _ in 0..MIX_PRODUCTS {
        products.push(create(&*store, MIX_STOCK).await);
    }
    let products = Arc::new(products);
    let sold: Arc<Vec<AtomicU64>> =
        Arc::new((0..MIX_PRODUCTS).map(|_| AtomicU64::new(0)).collect());
    let unexpected = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<Task> = (0..cfg.mix_tasks)
        .map(|task| {
            let (store, products, sold, unexpected) = (
                Arc::clone(&store),
                Arc::clone(&products),
                Arc::clone(&sold),
                Arc::clone(&unexpected),
            );
            let ops = cfg.mix_ops_per_task;
            Box::pin(async move {
                let mut rng = XorShift::new(task as u64 + 1);
                let mut mine: Vec<(ReservationId, usize, u64)> = Vec::new();
                for step in 0..ops {
                    let secs = (step as i64) * 2 + rng.below(3) as i64;
                    let meta = at(secs);
                    let result = match rng.below(10) {
                        0..=4 => {
                            let k = rng.below(MIX_PRODUCTS as u64) as usize;
                            let q = 1 + rng.below(3);
                            let ttl = 1 + rng.below(20);
                            let cmd = reserve_one(new_order(), products[k], q, ttl);
                            store.execute(cmd, &meta).await.map(|o| {
                                if let Outcome::Reserved { reservations, .. } = o {
                                    mine.push((reservations[0].id(), k, q));
                                }
                            })
                        }
                        5..=6 if !mine.is_empty() => {
                            let (id, k, q) =
                                mine.swap_remove(rng.below(mine.len() as u64) as usize);
                            store
                                .execute(Command::Confirm { reservation_id: id }, &meta)
                                .await
                                .map(|o| {
                                    if matches!(o, Outcome::Reservation { changed: true, .. }) {
                                        sold[k].fetch_add(q, Ordering::Relaxed);
                                    }
                                })
                        }
                        7..=8 if !mine.is_empty() => {
                            let (id, _, _) =
                                mine.swap_remove(rng.below(mine.len() as u64) as usize);
                            store
                                .execute(Command::Release { reservation_id: id }, &meta)
                                .await
                                .map(drop)
                        }
                        _ => store.expire_due(&meta, 16).await.map(drop),
                    };
                    match result {
                        Ok(())
                        | Err(Error::InsufficientStock { .. })
                        | Err(Error::ReservationExpired { .. }) => {}
                        Err(_) => {
                            unexpected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }) as Task
        })
        .collect();
    harness.run_concurrently(tasks).await;
    assert_eq!(
        unexpected.load(Ordering::Relaxed),
        0,
        "only business errors"
    );
    for (k, p) in products.iter().enumerate() {
        assert_item_consistent(&*store, *p).await;
        let it = item(&*store, *p).await;
        let sold = sold[k].load(Ordering::Relaxed);
        assert_eq!(it.quantity() + sold, MIX_STOCK, "sold units counted once");
        let confirmed: u64 = store
            .reservations_of_product(*p)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.status() == crate::ReservationStatus::Confirmed)
            .map(|r| r.quantity())
            .sum();
        assert_eq!(confirmed, sold);
    }
}

const SWEEP_RESERVATIONS: usize = 300;
const SWEEPERS: usize = 4;
const SWEEP_BATCH: usize = 25;

/// Several sweepers over the same due reservations: each reservation is
/// expired exactly once and all stock comes back.
pub(super) async fn concurrent_sweepers_expire_once<H: Harness>(harness: &H) {
    let store = Arc::new(harness.store().await);
    let p = create(&*store, SWEEP_RESERVATIONS as u64).await;
    for _ in 0..SWEEP_RESERVATIONS {
        store
            .execute(reserve_one(new_order(), p, 1, 5), &at(0))
            .await
            .unwrap();
    }
    let expired = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<Task> = (0..SWEEPERS)
        .map(|_| {
            let (store, expired) = (Arc::clone(&store), Arc::clone(&expired));
            Box::pin(async move {
                loop {
                    let n = store.expire_due(&at(5), SWEEP_BATCH).await.expect("sweep");
                    if n == 0 {
                        break;
                    }
                    expired.fetch_add(n, Ordering::Relaxed);
                }
            }) as Task
        })
        .collect();
    harness.run_concurrently(tasks).await;
    assert_eq!(expired.load(Ordering::Relaxed), SWEEP_RESERVATIONS);
    let it = item(&*store, p).await;
    assert_eq!(
        (it.quantity(), it.reserved()),
        (SWEEP_RESERVATIONS as u64, 0)
    );
    let events = drain_outbox(&*store).await;
    let mut expired_ids: Vec<_> = events
        .iter()
        .filter_map(|e| match e.event.payload {
            EventPayload::Expired { reservation_id, .. } => Some(reservation_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        expired_ids.len(),
        SWEEP_RESERVATIONS,
        "one expired event each"
    );
    expired_ids.sort();
    expired_ids.dedup();
    assert_eq!(
        expired_ids.len(),
        SWEEP_RESERVATIONS,
        "no reservation expired twice"
    );
}

const DEADLOCK_TASKS: usize = 24;

/// Multi-line orders naming the same products in different orders all
/// complete (items are locked in a fixed order, so nothing deadlocks).
pub(super) async fn multi_line_orders_do_not_deadlock<H: Harness>(harness: &H) {
    let store = Arc::new(harness.store().await);
    let mut ps = Vec::new();
    for _ in 0..3 {
        ps.push(create(&*store, 1_000).await);
    }
    let done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<Task> = (0..DEADLOCK_TASKS)
        .map(|i| {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            let mut lines = vec![(ps[0], 1), (ps[1], 2), (ps[2], 3)];
            lines.rotate_left(i % 3);
            if i % 2 == 0 {
                lines.reverse();
            }
            Box::pin(async move {
                store
                    .execute(reserve_many(new_order(), &lines, 60), &at(1))
                    .await
                    .expect("multi-line reserve");
                done.fetch_add(1, Ordering::Relaxed);
            }) as Task
        })
        .collect();
    harness.run_concurrently(tasks).await;
    assert_eq!(done.load(Ordering::Relaxed), DEADLOCK_TASKS);
    for (p, q) in ps.iter().zip([1u64, 2, 3]) {
        assert_eq!(
            item(&*store, *p).await.reserved(),
            q * DEADLOCK_TASKS as u64
        );
        assert_item_consistent(&*store, *p).await;
    }
}

/// Tasks sending batches at once.
const BATCH_TASKS: usize = 8;
/// Batches each task sends.
const BATCHES_PER_TASK: usize = 6;
/// Commands in each batch.
const COMMANDS_PER_BATCH: usize = 5;
/// Products every batch draws its lines from.
const SHARED_PRODUCTS: usize = 4;
/// Units of each product: fewer than the tasks ask for, so reserves fail too.
const SHARED_STOCK: u64 = 30;

/// What each command of a task's batch was, to read its answer.
enum Sent {
    /// Reserve lines of `(product index, units)`.
    Reserve(Vec<(usize, u64)>),
    /// Confirm a reservation the task holds, of `(product index, units)`.
    Confirm(usize, u64),
    /// Release a reservation the task holds, of `(product index, units)`.
    Release(usize, u64),
}

/// A reservation a task holds: its id, product index and units.
type Held = (ReservationId, usize, u64);

/// Units per product that the tasks hold and sold, counted without locks.
struct Units {
    held: Vec<AtomicU64>,
    sold: Vec<AtomicU64>,
}

impl Units {
    fn new() -> Self {
        let zeros = || (0..SHARED_PRODUCTS).map(|_| AtomicU64::new(0)).collect();
        Self {
            held: zeros(),
            sold: zeros(),
        }
    }

    /// Counts what one answer did (a won reserve joins `mine`); false for
    /// an answer the case does not allow.
    fn count(&self, sent: &Sent, answer: &Result<Outcome, Error>, mine: &mut Vec<Held>) -> bool {
        let moved = matches!(answer, Ok(Outcome::Reservation { changed: true, .. }));
        match (sent, answer) {
            (Sent::Reserve(lines), Ok(Outcome::Reserved { reservations, .. })) => {
                for (r, &(k, q)) in reservations.iter().zip(lines) {
                    mine.push((r.id(), k, q));
                    self.held[k].fetch_add(q, Ordering::Relaxed);
                }
                true
            }
            (Sent::Reserve(_), Err(Error::InsufficientStock { .. })) => true,
            (&Sent::Confirm(k, q), _) if moved => {
                self.held[k].fetch_sub(q, Ordering::Relaxed);
                self.sold[k].fetch_add(q, Ordering::Relaxed);
                true
            }
            (&Sent::Release(k, q), _) if moved => {
                self.held[k].fetch_sub(q, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }
}

/// Several tasks send batches of multi-line reserves (lines over shared
/// products, in random order), confirms and releases at once: every batch
/// finishes (batches lock in product order, so nothing deadlocks), nothing
/// is oversold, and every unit is held, sold or on the shelf exactly once.
pub(super) async fn concurrent_batches_keep_invariants<H: Harness>(harness: &H) {
    let store = Arc::new(harness.store().await);
    let mut products = Vec::new();
    for _ in 0..SHARED_PRODUCTS {
        products.push(create(&*store, SHARED_STOCK).await);
    }
    let products = Arc::new(products);
    let units = Arc::new(Units::new());
    let unexpected = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<Task> = (0..BATCH_TASKS)
        .map(|task| {
            let (store, products) = (Arc::clone(&store), Arc::clone(&products));
            let (units, unexpected) = (Arc::clone(&units), Arc::clone(&unexpected));
            Box::pin(async move {
                let mut rng = XorShift::new(task as u64 + 1_000);
                let mut mine: Vec<Held> = Vec::new();
                for round in 0..BATCHES_PER_TASK {
                    let (batch, sent) = plan_batch(&mut rng, &products, &mut mine, round);
                    let answers = store.execute_batch(batch).await.expect("batch runs");
                    assert_eq!(answers.len(), sent.len(), "one answer per command");
                    for (sent, answer) in sent.iter().zip(answers) {
                        if !units.count(sent, &answer, &mut mine) {
                            let mut unexpected = unexpected.lock().expect("tally");
                            unexpected.push(format!("{answer:?}"));
                        }
                    }
                }
            }) as Task
        })
        .collect();
    harness.run_concurrently(tasks).await;
    let unexpected = std::mem::take(&mut *unexpected.lock().expect("tally"));
    assert!(
        unexpected.is_empty(),
        "only business answers: {unexpected:?}"
    );
    for (k, p) in products.iter().enumerate() {
        assert_item_consistent(&*store, *p).await;
        let it = item(&*store, *p).await;
        let held = units.held[k].load(Ordering::Relaxed);
        let sold = units.sold[k].load(Ordering::Relaxed);
        assert_eq!(it.reserved(), held, "held units counted once");
        assert_eq!(
            it.quantity() + sold,
            SHARED_STOCK,
            "sold units counted once"
        );
    }
}

/// One batch of a task: mostly reserves of 1 to 3 lines over the shared
/// products in random order, and confirms or releases of reservations the
/// task won earlier (each settled once: it leaves `mine`).
fn plan_batch(
    rng: &mut XorShift,
    products: &[ProductId],
    mine: &mut Vec<Held>,
    round: usize,
) -> (Vec<(Command, Meta)>, Vec<Sent>) {
    let meta = at(round as i64);
    let mut batch = Vec::with_capacity(COMMANDS_PER_BATCH);
    let mut sent = Vec::with_capacity(COMMANDS_PER_BATCH);
    for _ in 0..COMMANDS_PER_BATCH {
        let settle = !mine.is_empty() && rng.below(3) == 0;
        if settle {
            let (id, k, q) = mine.swap_remove(rng.below(mine.len() as u64) as usize);
            if rng.below(2) == 0 {
                batch.push((Command::Confirm { reservation_id: id }, meta.clone()));
                sent.push(Sent::Confirm(k, q));
            } else {
                batch.push((Command::Release { reservation_id: id }, meta.clone()));
                sent.push(Sent::Release(k, q));
            }
            continue;
        }
        let mut order: Vec<usize> = (0..SHARED_PRODUCTS).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        order.truncate(1 + rng.below(3) as usize);
        let lines: Vec<(usize, u64)> = order.iter().map(|k| (*k, 1 + rng.below(3))).collect();
        let wanted: Vec<_> = lines.iter().map(|(k, q)| (products[*k], *q)).collect();
        batch.push((reserve_many(new_order(), &wanted, 600), meta.clone()));
        sent.push(Sent::Reserve(lines));
    }
    (batch, sent)
}

/// Tasks that settle a reservation while it is being made.
const SETTLERS: usize = 4;

/// Tries of each settler before it stops waiting for the reservation.
const SETTLE_TRIES_MAX: usize = 200;

/// A caller that chose its reservation id settles it (confirm, release)
/// while the reserve that makes it is still running: each settle meets the
/// reservation before, during or after its commit. Every answer is one the
/// rules allow (not found yet, settled, or refused as already settled), no
/// store error and no panic, exactly one settle wins, and the item ends
/// consistent. (On a store that locks an item and then reads reservations,
/// this is a reservation committed between the two.)
pub(super) async fn settle_races_its_own_reserve<H: Harness>(harness: &H) {
    let cfg = harness.config();
    let store = Arc::new(harness.store().await);
    for round in 0..cfg.race_rounds {
        let p = create(&*store, 2).await;
        let rid = super::new_reservation();
        let line = crate::ReserveLine {
            product_id: p,
            quantity: crate::Quantity::new(1).expect("valid"),
            reservation_id: rid,
        };
        let ttl = crate::Ttl::from_secs(60).expect("valid");
        let reserve = Command::Reserve(crate::Reserve::single(new_order(), line, ttl));
        let won = Arc::new(AtomicUsize::new(0));
        let mut tasks: Vec<Task> = Vec::new();
        let maker = Arc::clone(&store);
        tasks.push(Box::pin(async move {
            let made = maker.execute(reserve, &at(1)).await;
            assert!(matches!(made, Ok(Outcome::Reserved { .. })), "{made:?}");
        }));
        for n in 0..SETTLERS {
            let (store, won) = (Arc::clone(&store), Arc::clone(&won));
            tasks.push(Box::pin(async move {
                let settle = if n % 2 == 0 {
                    Command::Confirm {
                        reservation_id: rid,
                    }
                } else {
                    Command::Release {
                        reservation_id: rid,
                    }
                };
                for _ in 0..SETTLE_TRIES_MAX {
                    match store.execute(settle.clone(), &at(2)).await {
                        Err(Error::ReservationNotFound { .. }) => tokio_free_yield().await,
                        Ok(Outcome::Reservation { changed, .. }) => {
                            if changed {
                                won.fetch_add(1, Ordering::Relaxed);
                            }
                            return;
                        }
                        Err(Error::InvalidTransition { .. }) => return,
                        other => panic!("round {round}: settle answered {other:?}"),
                    }
                }
            }));
        }
        harness.run_concurrently(tasks).await;
        let reservation = store.reservation(rid).await.expect("read");
        let settled = reservation.is_some_and(|r| r.status().is_terminal());
        assert_eq!(
            won.load(Ordering::Relaxed),
            usize::from(settled),
            "round {round}: one settle wins once the reservation exists"
        );
        assert_item_consistent(&*store, p).await;
    }
}

/// Lets other tasks run, without depending on a runtime.
async fn tokio_free_yield() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}
