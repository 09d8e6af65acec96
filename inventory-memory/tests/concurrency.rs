//! The memory store under real threads: a random mix of every operation over a
//! few products with an observer checking invariants while it runs, and a loom
//! model of the per-item commit protocol.
//!
//! The last-unit race (100 threads, 200 rounds) runs in `conformance.rs`,
//! through the shared kit.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use inventory_core::{
    Actor, Command, Error, EventPayload, Meta, OrderId, Outcome, ProductId, Quantity, Reason,
    ReservationId, ReservationStatus, Reserve, ReserveLine, StockDelta, StockLevel, Timestamp, Ttl,
};
use inventory_memory::MemoryStore;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const THREADS: usize = 100;
const OPS_PER_THREAD: usize = 300;
const PRODUCTS: usize = 5;
const INITIAL_STOCK: u64 = 60;
const T0: i64 = 1_700_000_000_000;

fn product(i: usize) -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(0xF000 + i as u128))
}

/// Ids unique per (thread, step, line).
fn unique(thread: usize, step: usize, line: usize) -> Uuid {
    Uuid::from_u128(((thread as u128) << 64) | ((step as u128) << 8) | line as u128)
}

/// What each thread saw succeed, to compare with the store afterwards.
#[derive(Default)]
struct Seen {
    sold: [AtomicU64; PRODUCTS],
    added: [AtomicI64; PRODUCTS],
    /// Units added by positive adjustments only.
    stocked: [AtomicI64; PRODUCTS],
}

/// One worker: random reserves (one or several lines, lines in random order),
/// confirms, releases, expires, sweeps and adjustments, on a clock that
/// moves forward. Only business errors are allowed.
fn worker(store: &MemoryStore, clock: &AtomicI64, seen: &Seen, thread: usize) {
    let mut rng = SmallRng::seed_from_u64(thread as u64);
    let mut mine: Vec<(ReservationId, usize, u64)> = Vec::new();
    let mut finished: Vec<(ReservationId, ReservationStatus)> = Vec::new();
    for step in 0..OPS_PER_THREAD {
        let now = clock.fetch_add(rng.random_range(0..40), Ordering::Relaxed);
        let meta = Meta::at(Timestamp::from_millis(now));
        let result = match rng.random_range(0..20) {
            0..=8 => {
                let mut products: Vec<usize> = (0..PRODUCTS).collect();
                let count = if rng.random_bool(0.3) {
                    rng.random_range(2..=3)
                } else {
                    1
                };
                let mut lines = Vec::new();
                for line in 0..count {
                    let k = products.swap_remove(rng.random_range(0..products.len()));
                    let q = rng.random_range(1..=3);
                    lines.push((k, q, ReservationId::from_uuid(unique(thread, step, line))));
                }
                let reserve = Reserve::new(
                    OrderId::from_uuid(unique(thread, step, 0)),
                    lines
                        .iter()
                        .map(|(k, q, id)| ReserveLine {
                            product_id: product(*k),
                            quantity: Quantity::new(*q as u64).unwrap(),
                            reservation_id: *id,
                        })
                        .collect(),
                    Ttl::from_secs(rng.random_range(1..4)).unwrap(),
                )
                .unwrap();
                store
                    .execute_sync(Command::Reserve(reserve), &meta)
                    .map(|_| {
                        mine.extend(lines.iter().map(|(k, q, id)| (*id, *k, *q as u64)));
                    })
            }
            9..=12 if !mine.is_empty() => {
                let (id, k, q) = mine.swap_remove(rng.random_range(0..mine.len()));
                let confirm = Command::Confirm { reservation_id: id };
                store.execute_sync(confirm, &meta).map(|outcome| {
                    if matches!(outcome, Outcome::Reservation { changed: true, .. }) {
                        seen.sold[k].fetch_add(q, Ordering::Relaxed);
                        finished.push((id, ReservationStatus::Confirmed));
                    }
                })
            }
            13..=14 if !mine.is_empty() => {
                let (id, _, _) = mine.swap_remove(rng.random_range(0..mine.len()));
                if rng.random_bool(0.5) {
                    let release = Command::Release { reservation_id: id };
                    store.execute_sync(release, &meta).map(|outcome| {
                        if matches!(outcome, Outcome::Reservation { changed: true, .. }) {
                            finished.push((id, ReservationStatus::Released));
                        }
                    })
                } else {
                    let expire = Command::Expire { reservation_id: id };
                    store.execute_sync(expire, &meta).map(drop)
                }
            }
            15..=16 => {
                store.expire_due_sync(&meta, rng.random_range(1..10));
                Ok(())
            }
            17 => {
                let k = rng.random_range(0..PRODUCTS);
                let delta = if rng.random_bool(0.5) { 5 } else { -2 };
                let adjust = Command::Adjust {
                    product_id: product(k),
                    delta: StockDelta::new(delta).unwrap(),
                    reason: Reason::new("cycle count").unwrap(),
                    actor: Actor::system(),
                    key: None,
                };
                store.execute_sync(adjust, &meta).map(|_| {
                    seen.added[k].fetch_add(delta, Ordering::Relaxed);
                    seen.stocked[k].fetch_add(delta.max(0), Ordering::Relaxed);
                })
            }
            _ if !finished.is_empty() => {
                // Repeat a confirm or release that succeeded: it succeeds again
                // and changes nothing (never a second count).
                let (id, status) = finished[rng.random_range(0..finished.len())];
                let repeat = if status == ReservationStatus::Confirmed {
                    Command::Confirm { reservation_id: id }
                } else {
                    Command::Release { reservation_id: id }
                };
                let outcome = store.execute_sync(repeat, &meta);
                match outcome {
                    Ok(Outcome::Reservation {
                        reservation,
                        changed: false,
                    }) => {
                        assert_eq!(reservation.status(), status);
                    }
                    other => panic!("repeat of {status} gave {other:?}"),
                }
                Ok(())
            }
            _ => Ok(()),
        };
        match result {
            Ok(())
            | Err(Error::InsufficientStock { .. })
            | Err(Error::ReservationExpired { .. })
            | Err(Error::InvalidTransition { .. })
            | Err(Error::BelowReserved { .. }) => {}
            Err(other) => panic!("thread {thread} step {step}: unexpected {other:?}"),
        }
    }
}

/// Reads every item while the workers run: each read is a committed state, so
/// the item invariants hold and versions never go back.
fn observer(store: &MemoryStore, done: &AtomicBool) -> usize {
    let mut versions = [0_u64; PRODUCTS];
    let mut reads = 0;
    while !done.load(Ordering::Relaxed) {
        for (k, seen) in versions.iter_mut().enumerate() {
            let item = store.item_sync(product(k)).expect("item exists");
            assert!(item.reserved() <= item.quantity(), "reserved <= quantity");
            assert_eq!(item.available(), item.quantity() - item.reserved());
            assert!(item.version().get() >= *seen, "versions never go back");
            *seen = item.version().get();
            reads += 1;
        }
    }
    reads
}

/// 100 threads run random mixes over 5 products while an observer checks the
/// item invariants; afterwards the store is consistent, every unit sold was
/// counted once, sales never exceed the stock that ever existed, and the
/// outbox holds one confirmed event per sale, in sequence order.
#[test]
fn hundred_threads_random_mix_keeps_every_invariant() {
    let store = Arc::new(MemoryStore::new());
    for k in 0..PRODUCTS {
        let create = Command::CreateItem {
            product_id: product(k),
            quantity: StockLevel::new(INITIAL_STOCK).unwrap(),
            actor: Actor::system(),
        };
        store
            .execute_sync(create, &Meta::at(Timestamp::from_millis(T0)))
            .unwrap();
    }
    let clock = Arc::new(AtomicI64::new(T0));
    let seen = Arc::new(Seen::default());
    let done = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(THREADS));
    let watcher = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        thread::spawn(move || observer(&store, &done))
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, clock, seen, barrier) = (
                Arc::clone(&store),
                Arc::clone(&clock),
                Arc::clone(&seen),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                barrier.wait();
                worker(&store, &clock, &seen, t);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    done.store(true, Ordering::Relaxed);
    assert!(watcher.join().expect("observer") > 0);

    store.assert_consistent();
    let events = store.unpublished_sync(usize::MAX);
    let mut confirmed_events = [0_u64; PRODUCTS];
    let mut all = Vec::new();
    loop {
        let batch = store.drain(usize::MAX);
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    assert_eq!(
        events[..],
        all[..events.len()],
        "drain hands out what unpublished shows"
    );
    assert!(
        all.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "sequence order"
    );
    let ids: HashSet<Uuid> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), all.len(), "event ids are unique");
    for entry in &all {
        if let EventPayload::Confirmed {
            product_id,
            quantity,
            ..
        } = entry.event.payload
        {
            let k = (0..PRODUCTS).find(|k| product(*k) == product_id).unwrap();
            confirmed_events[k] += quantity;
        }
    }
    for (k, confirmed_events) in confirmed_events.iter().enumerate() {
        let item = store.item_sync(product(k)).unwrap();
        let sold = seen.sold[k].load(Ordering::Relaxed);
        let added = seen.added[k].load(Ordering::Relaxed);
        let confirmed: u64 = store
            .reservations_of_product_sync(product(k))
            .iter()
            .filter(|r| r.status() == ReservationStatus::Confirmed)
            .map(|r| r.quantity())
            .sum();
        assert_eq!(confirmed, sold, "every sale counted once");
        assert_eq!(*confirmed_events, sold, "one confirmed event per sale");
        assert_eq!(
            item.quantity() as i64,
            INITIAL_STOCK as i64 + added - sold as i64
        );
        let ever_stocked = INITIAL_STOCK as i64 + seen.stocked[k].load(Ordering::Relaxed);
        assert!(
            sold as i64 <= ever_stocked,
            "no oversell: sold {sold} of {ever_stocked}"
        );
    }
}

/// A loom model of the commit protocol the store uses, reduced to its steps:
/// lock every item a change touches in ascending id order, check every line,
/// apply all or nothing, number the events while still holding the locks,
/// unlock. Loom runs every interleaving of three threads (two multi-line
/// orders naming the same items in opposite orders, one single-line order):
/// no interleaving deadlocks, no item is oversold, and each item's events are
/// numbered in the order its changes committed.
mod commit_protocol {
    use loom::sync::atomic::{AtomicU64, Ordering};
    use loom::sync::{Arc, Mutex, MutexGuard};
    use loom::thread;

    struct Item {
        quantity: u64,
        reserved: u64,
        version: u64,
    }

    struct Shared {
        items: [Mutex<Item>; 2],
        next_sequence: AtomicU64,
        /// (sequence, item, version after the change), as an outbox shard.
        events: Mutex<Vec<(u64, usize, u64)>>,
    }

    /// One change: `lines` are (item, units) in the order the caller gave.
    fn reserve(shared: &Shared, lines: &[(usize, u64)]) -> bool {
        let mut order: Vec<usize> = lines.iter().map(|(i, _)| *i).collect();
        order.sort_unstable();
        let mut guards: Vec<MutexGuard<'_, Item>> = order
            .iter()
            .map(|i| shared.items[*i].lock().unwrap())
            .collect();
        let at = |item: usize| order.iter().position(|i| *i == item).unwrap();
        // Check every line first: all or nothing.
        let short = lines.iter().any(|(item, units)| {
            let g = &guards[at(*item)];
            g.quantity - g.reserved < *units
        });
        if short {
            return false;
        }
        for (item, units) in lines {
            let g = &mut guards[at(*item)];
            g.reserved += units;
            g.version += 1;
            // Numbered and queued before the item is unlocked.
            let sequence = shared.next_sequence.fetch_add(1, Ordering::Relaxed);
            shared
                .events
                .lock()
                .unwrap()
                .push((sequence, *item, g.version));
        }
        true
    }

    #[test]
    fn lock_in_order_check_apply_never_oversells_or_deadlocks() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let shared = Arc::new(Shared {
                items: [
                    Mutex::new(Item {
                        quantity: 1,
                        reserved: 0,
                        version: 1,
                    }),
                    Mutex::new(Item {
                        quantity: 2,
                        reserved: 0,
                        version: 1,
                    }),
                ],
                next_sequence: AtomicU64::new(1),
                events: Mutex::new(Vec::new()),
            });
            let orders: [&'static [(usize, u64)]; 3] =
                [&[(0, 1), (1, 1)], &[(1, 1), (0, 1)], &[(1, 2)]];
            let handles: Vec<_> = orders
                .into_iter()
                .map(|lines| {
                    let shared = Arc::clone(&shared);
                    thread::spawn(move || reserve(&shared, lines))
                })
                .collect();
            let won: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();

            // Item 0 has one unit: at most one of the two multi-line orders.
            assert!(!(won[0] && won[1]), "item 0 oversold");
            let reserved0: u64 = [won[0], won[1]].iter().filter(|w| **w).count() as u64;
            let reserved1 = reserved0 + if won[2] { 2 } else { 0 };
            let items: Vec<(u64, u64, u64)> = shared
                .items
                .iter()
                .map(|m| {
                    let item = m.lock().unwrap();
                    (item.quantity, item.reserved, item.version)
                })
                .collect();
            assert_eq!(items[0].1, reserved0);
            assert_eq!(items[1].1, reserved1);
            assert!(items.iter().all(|(q, r, _)| r <= q), "no oversell");
            // A change that fails changes nothing; someone always wins.
            assert!(won.iter().any(|w| *w));

            // Per item, sequence order is commit order (versions grow with it).
            let mut events = shared.events.lock().unwrap().clone();
            events.sort_unstable();
            for item in 0..2 {
                let versions: Vec<u64> = events
                    .iter()
                    .filter(|(_, i, _)| *i == item)
                    .map(|(_, _, v)| *v)
                    .collect();
                let expected: Vec<u64> = (2..2 + versions.len() as u64).collect();
                assert_eq!(versions, expected, "events of item {item} in commit order");
            }
        });
    }
}
