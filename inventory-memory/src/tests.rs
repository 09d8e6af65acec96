//! Unit tests of what is particular to this store: lock ordering, the id
//! claims, the sharded outbox, bounded sweeps and purges.

use std::sync::{Arc, Barrier};
use std::thread;

use inventory_core::{
    Actor, Command, Error, EventPayload, Meta, OrderId, Outcome, ProductId, Quantity,
    ReservationId, ReservationStatus, Reserve, ReserveLine, StockLevel, Timestamp, Ttl,
    EXPIRE_BATCH_MAX, OUTBOX_BATCH_MAX,
};
use uuid::Uuid;

use crate::{MemoryStore, OUTBOX_SHARDS};

const T0: i64 = 1_700_000_000_000;

fn at(ms: i64) -> Meta {
    Meta::at(Timestamp::from_millis(T0 + ms))
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn product(n: u128) -> ProductId {
    ProductId::from_uuid(id(0xA000 + n))
}

fn create(store: &MemoryStore, p: ProductId, quantity: u64) {
    let command = Command::CreateItem {
        product_id: p,
        quantity: StockLevel::new(quantity).unwrap(),
        actor: Actor::system(),
    };
    store.execute_sync(command, &at(0)).unwrap();
}

fn line(p: ProductId, quantity: u64, reservation: u128) -> ReserveLine {
    ReserveLine {
        product_id: p,
        quantity: Quantity::new(quantity).unwrap(),
        reservation_id: ReservationId::from_uuid(id(reservation)),
    }
}

fn reserve(order: u128, lines: Vec<ReserveLine>, ttl_ms: u64) -> Command {
    let order = OrderId::from_uuid(id(order));
    Command::Reserve(Reserve::new(order, lines, Ttl::from_millis(ttl_ms).unwrap()).unwrap())
}

/// Two threads reserving the same products named in opposite orders, many
/// times over, never deadlock (cells are locked in product order) and never
/// oversell.
#[test]
fn opposite_line_orders_do_not_deadlock() {
    const ROUNDS: u128 = 2_000;
    let store = Arc::new(MemoryStore::new());
    let (a, b) = (product(1), product(2));
    create(&store, a, ROUNDS as u64);
    create(&store, b, ROUNDS as u64);
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = [false, true]
        .into_iter()
        .enumerate()
        .map(|(t, reversed)| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                for n in 0..ROUNDS / 2 {
                    let base = (t as u128 + 1) << 32 | n << 2;
                    let mut lines = vec![line(a, 1, base), line(b, 1, base + 1)];
                    if reversed {
                        lines.reverse();
                    }
                    store
                        .execute_sync(reserve(base, lines, 60_000), &at(1))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for p in [a, b] {
        let item = store.item_sync(p).unwrap();
        assert_eq!((item.reserved(), item.available()), (ROUNDS as u64, 0));
    }
    store.assert_consistent();
}

/// A reservation id belongs to one reservation only: reusing it for another
/// order fails and changes nothing; a failed reserve gives its claim back.
#[test]
fn reservation_ids_are_claimed_once() {
    let store = MemoryStore::new();
    let (a, b) = (product(1), product(2));
    create(&store, a, 5);
    create(&store, b, 5);
    store
        .execute_sync(reserve(1, vec![line(a, 1, 77)], 60_000), &at(1))
        .unwrap();

    let other_product = store.execute_sync(reserve(2, vec![line(b, 1, 77)], 60_000), &at(1));
    assert!(
        matches!(
            other_product,
            Err(Error::InvalidInput {
                field: "reservation_id",
                ..
            })
        ),
        "{other_product:?}"
    );
    let other_order = store.execute_sync(reserve(3, vec![line(a, 1, 77)], 60_000), &at(1));
    assert!(
        matches!(other_order, Err(Error::InvalidInput { .. })),
        "{other_order:?}"
    );
    assert_eq!(store.item_sync(b).unwrap().reserved(), 0);
    assert_eq!(store.item_sync(a).unwrap().reserved(), 1);

    // The same order repeating its line with the same id is an idempotent repeat.
    let repeat = store.execute_sync(reserve(1, vec![line(a, 1, 77)], 60_000), &at(2));
    assert!(
        matches!(repeat, Ok(Outcome::Reserved { created: false, .. })),
        "{repeat:?}"
    );

    // A reserve that fails (unknown product, short stock) keeps no claim.
    let failed = store.execute_sync(
        reserve(4, vec![line(a, 1, 90), line(product(9), 1, 91)], 60_000),
        &at(2),
    );
    assert!(matches!(failed, Err(Error::ProductNotFound { .. })));
    let short = store.execute_sync(reserve(5, vec![line(b, 6, 92)], 60_000), &at(2));
    assert!(matches!(short, Err(Error::InsufficientStock { .. })));
    store.assert_consistent();
    // ... so those ids are free for a later reserve.
    store
        .execute_sync(reserve(6, vec![line(b, 1, 90)], 60_000), &at(3))
        .unwrap();
    store.assert_consistent();
}

/// Events leave the outbox in sequence order, whichever thread (and so shard)
/// wrote them; marking some published hides exactly those.
#[test]
fn outbox_is_in_sequence_order_and_marks_exactly() {
    let store = Arc::new(MemoryStore::new());
    let threads: Vec<_> = (0..OUTBOX_SHARDS as u128 + 3)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let p = product(100 + t);
                create(&store, p, 50);
                for n in 0..20 {
                    let base = (t + 1) << 32 | n;
                    store
                        .execute_sync(reserve(base, vec![line(p, 1, base)], 60_000), &at(1))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = (OUTBOX_SHARDS + 3) * 21;
    assert_eq!(store.outbox_len(), total);

    let first = store.unpublished_sync(usize::MAX);
    assert_eq!(first.len(), total.min(OUTBOX_BATCH_MAX));
    assert!(
        first.windows(2).all(|w| w[0].sequence + 1 == w[1].sequence),
        "gap-free order"
    );
    // Per product, reserved events follow creation.
    let p = product(100);
    let of_p: Vec<&str> = first
        .iter()
        .filter(|e| e.event.payload.product_id() == p)
        .map(|e| e.event.payload.event_type())
        .collect();
    assert_eq!(of_p[0], "inventory.stock.adjusted");
    assert!(of_p[1..].iter().all(|k| *k == "inventory.stock.reserved"));

    // Mark every other one of the first ten, and one unknown number.
    let marked: Vec<u64> = first[..10].iter().step_by(2).map(|e| e.sequence).collect();
    store.mark_published_sync(&[marked.as_slice(), &[u64::MAX]].concat());
    let after = store.unpublished_sync(10);
    let expected: Vec<u64> = first
        .iter()
        .map(|e| e.sequence)
        .filter(|s| !marked.contains(s))
        .take(10)
        .collect();
    assert_eq!(
        after.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(after[0].event_id, first[1].event_id, "event ids are stable");
    assert_eq!(store.outbox_len(), total - marked.len());

    let drained = store.drain(usize::MAX);
    assert_eq!(drained.len(), total - marked.len());
    assert_eq!(store.outbox_len(), 0);
    assert!(store.unpublished_sync(10).is_empty());
}

/// The correlation id of the request rides on every event it caused.
#[test]
fn correlation_id_is_copied_onto_events() {
    let store = MemoryStore::new();
    let meta = Meta {
        now: Timestamp::from_millis(T0),
        correlation_id: Some("req-42".to_owned()),
    };
    let create = Command::CreateItem {
        product_id: product(1),
        quantity: StockLevel::new(1).unwrap(),
        actor: Actor::system(),
    };
    store.execute_sync(create, &meta).unwrap();
    store
        .execute_sync(reserve(1, vec![line(product(1), 1, 5)], 60_000), &meta)
        .unwrap();
    let events = store.drain(10);
    assert_eq!(events.len(), 3); // adjusted, reserved, depleted
    assert!(events
        .iter()
        .all(|e| e.correlation_id.as_deref() == Some("req-42")));
}

/// The sweep expires at most `limit` (and never more than the batch bound)
/// per call, earliest first per product, and each reservation once.
#[test]
fn expire_due_works_in_bounded_batches() {
    let store = MemoryStore::new();
    let (a, b) = (product(1), product(2));
    create(&store, a, 3_000);
    create(&store, b, 10);
    for n in 0..1_500_u128 {
        // Later reservations expire later.
        let ttl = 1_000 + n as u64;
        store
            .execute_sync(reserve(n, vec![line(a, 1, 10_000 + n)], ttl), &at(0))
            .unwrap();
    }
    store
        .execute_sync(reserve(9_999, vec![line(b, 1, 1)], 1_000), &at(0))
        .unwrap();
    assert_eq!(store.expire_due_sync(&at(999), 100), 0, "nothing due yet");

    let now = at(5_000);
    assert_eq!(store.expire_due_sync(&now, 7), 7);
    assert_eq!(store.expire_due_sync(&now, usize::MAX), EXPIRE_BATCH_MAX);
    let left = 1_501 - 7 - EXPIRE_BATCH_MAX;
    assert_eq!(store.expire_due_sync(&now, usize::MAX), left);
    assert_eq!(store.expire_due_sync(&now, usize::MAX), 0);
    for p in [a, b] {
        assert_eq!(store.item_sync(p).unwrap().reserved(), 0);
        assert!(store
            .reservations_of_product_sync(p)
            .iter()
            .all(|r| r.status() == ReservationStatus::Expired));
    }
    let mut expired = 0;
    loop {
        let batch = store.drain(usize::MAX);
        if batch.is_empty() {
            break;
        }
        expired += batch
            .iter()
            .filter(|e| matches!(e.event.payload, EventPayload::Expired { .. }))
            .count();
    }
    assert_eq!(expired, 1_501, "one expired event per reservation");
    store.assert_consistent();
}

/// Per product, the sweep takes the earliest expiries first.
#[test]
fn expire_due_takes_the_earliest_first() {
    let store = MemoryStore::new();
    let a = product(1);
    create(&store, a, 10);
    for (n, ttl) in [(1_u128, 5_000_u64), (2, 2_000), (3, 3_000)] {
        store
            .execute_sync(reserve(n, vec![line(a, 1, n)], ttl), &at(0))
            .unwrap();
    }
    assert_eq!(store.expire_due_sync(&at(10_000), 2), 2);
    let status = |n: u128| {
        store
            .reservation_sync(ReservationId::from_uuid(id(n)))
            .unwrap()
            .status()
    };
    assert_eq!(status(2), ReservationStatus::Expired);
    assert_eq!(status(3), ReservationStatus::Expired);
    assert_eq!(status(1), ReservationStatus::Pending);
}

/// Purging drops old finished reservations only, and their index entries,
/// and ledger entries older than the cut (here the initial stock).
#[test]
fn purge_drops_only_old_finished_reservations() {
    let store = MemoryStore::new();
    let a = product(1);
    create(&store, a, 10);
    for n in 1..=4_u128 {
        store
            .execute_sync(reserve(n, vec![line(a, 1, n)], 60_000), &at(0))
            .unwrap();
    }
    let rid = |n: u128| ReservationId::from_uuid(id(n));
    store
        .execute_sync(
            Command::Confirm {
                reservation_id: rid(1),
            },
            &at(10),
        )
        .unwrap();
    store
        .execute_sync(
            Command::Release {
                reservation_id: rid(2),
            },
            &at(20),
        )
        .unwrap();
    store
        .execute_sync(
            Command::Release {
                reservation_id: rid(3),
            },
            &at(500),
        )
        .unwrap();

    assert_eq!(
        store.purge_finished(Timestamp::from_millis(T0 + 100), usize::MAX),
        2
    );
    assert!(store.adjustments_sync(a, 10).is_empty());
    assert!(store.reservation_sync(rid(1)).is_none());
    assert!(store.reservation_sync(rid(2)).is_none());
    assert_eq!(
        store.reservation_sync(rid(3)).unwrap().status(),
        ReservationStatus::Released
    );
    assert_eq!(
        store.reservation_sync(rid(4)).unwrap().status(),
        ReservationStatus::Pending
    );
    assert!(store
        .reservations_of_order_sync(OrderId::from_uuid(id(1)))
        .is_empty());
    store.assert_consistent();

    // A purged reservation is unknown; its slot is reused by the next one.
    let again = store.execute_sync(
        Command::Confirm {
            reservation_id: rid(1),
        },
        &at(600),
    );
    assert!(matches!(again, Err(Error::ReservationNotFound { .. })));
    store
        .execute_sync(reserve(8, vec![line(a, 1, 8)], 60_000), &at(600))
        .unwrap();
    store
        .execute_sync(
            Command::Confirm {
                reservation_id: rid(8),
            },
            &at(700),
        )
        .unwrap();
    assert_eq!(
        store.reservation_sync(rid(8)).unwrap().status(),
        ReservationStatus::Confirmed
    );
    assert_eq!(store.item_sync(a).unwrap().quantity(), 8);
    store.assert_consistent();
}

/// Two creates of one product race: one creates, the other finds it.
#[test]
fn concurrent_creates_make_one_item() {
    for round in 0..50 {
        let store = Arc::new(MemoryStore::new());
        let barrier = Arc::new(Barrier::new(4));
        let p = product(round);
        let results: Vec<_> = (0..4)
            .map(|_| {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    let create = Command::CreateItem {
                        product_id: p,
                        quantity: StockLevel::new(3).unwrap(),
                        actor: Actor::system(),
                    };
                    store.execute_sync(create, &at(0))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, Error::AlreadyExists { .. })));
        assert_eq!(store.item_sync(p).unwrap().version().get(), 1);
    }
}
