//! The rules of single changes, one case each, checked through the port.

use super::{
    assert_item_consistent, at, create, item, new_order, new_product, new_reservation,
    reserve_many, reserve_one, reserved,
};
use crate::{
    Actor, AdjustmentKey, Command, Error, EventPayload, InventoryStore, Outbox, Outcome, ProductId,
    Reason, ReservationStatus, StockDelta, StockLevel, Version,
};

/// Confirms a reservation, returning whether it changed.
async fn confirm<S: InventoryStore>(
    store: &S,
    reservation_id: crate::ReservationId,
    secs: i64,
) -> Result<bool, Error> {
    match store
        .execute(Command::Confirm { reservation_id }, &at(secs))
        .await?
    {
        Outcome::Reservation { changed, .. } => Ok(changed),
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// Releases a reservation, returning whether it changed.
async fn release<S: InventoryStore>(
    store: &S,
    reservation_id: crate::ReservationId,
    secs: i64,
) -> Result<bool, Error> {
    match store
        .execute(Command::Release { reservation_id }, &at(secs))
        .await?
    {
        Outcome::Reservation { changed, .. } => Ok(changed),
        other => panic!("unexpected outcome {other:?}"),
    }
}

pub(super) async fn create_and_read<S: InventoryStore>(store: &S) {
    let p = create(store, 10).await;
    let it = item(store, p).await;
    assert_eq!((it.quantity(), it.reserved(), it.available()), (10, 0, 10));
    assert_eq!(it.version(), Version::INITIAL);
    assert_eq!(it.created_at(), at(0).now);
    assert_eq!(store.item(new_product()).await.unwrap(), None);
}

pub(super) async fn create_twice_is_already_exists<S: InventoryStore>(store: &S) {
    let p = create(store, 1).await;
    let again = Command::CreateItem {
        product_id: p,
        quantity: StockLevel::new(5).unwrap(),
        actor: Actor::system(),
    };
    let err = store.execute(again, &at(1)).await.unwrap_err();
    assert_eq!(err, Error::AlreadyExists { product_id: p });
    assert_eq!(item(store, p).await.quantity(), 1);
}

pub(super) async fn reserve_holds_stock<S: InventoryStore>(store: &S) {
    let p = create(store, 10).await;
    let order = new_order();
    let r = reserved(store.execute(reserve_one(order, p, 3, 60), &at(1)).await);
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!((r.product_id(), r.order_id()), (p, order));
    assert_eq!(r.quantity(), 3);
    assert_eq!(r.status(), ReservationStatus::Pending);
    assert_eq!(r.expires_at(), at(61).now);
    let it = item(store, p).await;
    assert_eq!((it.quantity(), it.reserved(), it.available()), (10, 3, 7));
    assert_eq!(it.version(), Version::new(2));
    assert_eq!(store.reservation(r.id()).await.unwrap().as_ref(), Some(r));
    assert_item_consistent(store, p).await;
}

pub(super) async fn reserve_more_than_available_changes_nothing<S: InventoryStore>(store: &S) {
    let p = create(store, 2).await;
    let err = store
        .execute(reserve_one(new_order(), p, 3, 60), &at(1))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::InsufficientStock {
            product_id: p,
            requested: 3,
            available: 2
        }
    );
    let it = item(store, p).await;
    assert_eq!((it.reserved(), it.version()), (0, Version::INITIAL));
    assert!(store.reservations_of_product(p).await.unwrap().is_empty());
}

pub(super) async fn reserve_unknown_product<S: InventoryStore>(store: &S) {
    let p = new_product();
    let err = store
        .execute(reserve_one(new_order(), p, 1, 60), &at(1))
        .await
        .unwrap_err();
    assert_eq!(err, Error::ProductNotFound { product_id: p });
}

pub(super) async fn reserve_repeat_is_idempotent<S: InventoryStore>(store: &S) {
    let p = create(store, 10).await;
    let order = new_order();
    let first = reserved(store.execute(reserve_one(order, p, 4, 60), &at(1)).await);
    let again = store
        .execute(reserve_one(order, p, 4, 60), &at(2))
        .await
        .unwrap();
    match again {
        Outcome::Reserved {
            reservations,
            created,
        } => {
            assert!(!created, "a repeat creates nothing");
            assert_eq!(reservations, first);
        }
        other => panic!("unexpected {other:?}"),
    }
    let it = item(store, p).await;
    assert_eq!((it.reserved(), it.version()), (4, Version::new(2)));
    let err = store
        .execute(reserve_one(order, p, 5, 60), &at(3))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::IdempotencyConflict {
            order_id: order,
            product_id: p,
            existing: 4,
            requested: 5
        }
    );
    assert_eq!(item(store, p).await.reserved(), 4);
}

pub(super) async fn multi_line_is_all_or_nothing<S: InventoryStore>(store: &S) {
    let a = create(store, 5).await;
    let b = create(store, 3).await;
    let order = new_order();
    let err = store
        .execute(reserve_many(order, &[(a, 2), (b, 5)], 60), &at(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InsufficientStock { product_id, .. } if product_id == b));
    let missing = new_product();
    let err = store
        .execute(reserve_many(order, &[(a, 1), (missing, 1)], 60), &at(1))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::ProductNotFound {
            product_id: missing
        }
    );
    for p in [a, b] {
        let it = item(store, p).await;
        assert_eq!((it.reserved(), it.version()), (0, Version::INITIAL));
    }
    assert!(store.reservations_of_order(order).await.unwrap().is_empty());
}

pub(super) async fn multi_line_reserves_every_line<S: InventoryStore>(store: &S) {
    let a = create(store, 5).await;
    let b = create(store, 3).await;
    let order = new_order();
    let lines = reserved(
        store
            .execute(reserve_many(order, &[(b, 3), (a, 2)], 60), &at(1))
            .await,
    );
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0].product_id(), lines[1].product_id()),
        (b, a),
        "one per line, in order"
    );
    assert_eq!(item(store, a).await.reserved(), 2);
    assert_eq!(item(store, b).await.available(), 0);
    let stored = store.reservations_of_order(order).await.unwrap();
    assert_eq!(stored.len(), 2);
    // Confirm each line independently.
    for r in &lines {
        assert!(confirm(store, r.id(), 2).await.unwrap());
    }
    assert_eq!(item(store, a).await.quantity(), 3);
    assert_eq!(item(store, b).await.quantity(), 0);
}

pub(super) async fn confirm_ships_once<S: InventoryStore>(store: &S) {
    let p = create(store, 10).await;
    let r = reserved(
        store
            .execute(reserve_one(new_order(), p, 4, 60), &at(1))
            .await,
    );
    assert!(confirm(store, r[0].id(), 2).await.unwrap());
    let it = item(store, p).await;
    assert_eq!(
        (it.quantity(), it.reserved(), it.version()),
        (6, 0, Version::new(3))
    );
    assert!(
        !confirm(store, r[0].id(), 3).await.unwrap(),
        "repeat changes nothing"
    );
    let it = item(store, p).await;
    assert_eq!((it.quantity(), it.version()), (6, Version::new(3)));
    let stored = store.reservation(r[0].id()).await.unwrap().unwrap();
    assert_eq!(stored.status(), ReservationStatus::Confirmed);
    assert_item_consistent(store, p).await;
}

pub(super) async fn confirm_after_expiry_fails_and_gives_back<S: InventoryStore>(store: &S) {
    let p = create(store, 10).await;
    let r = reserved(
        store
            .execute(reserve_one(new_order(), p, 4, 10), &at(0))
            .await,
    );
    let err = confirm(store, r[0].id(), 10).await.unwrap_err();
    assert_eq!(
        err,
        Error::ReservationExpired {
            reservation_id: r[0].id(),
            expires_at: at(10).now
        }
    );
    let it = item(store, p).await;
    assert_eq!((it.quantity(), it.reserved()), (10, 0));
    let stored = store.reservation(r[0].id()).await.unwrap().unwrap();
    assert_eq!(stored.status(), ReservationStatus::Expired);
    // Still expired on a second try, and nothing moves.
    assert!(matches!(
        confirm(store, r[0].id(), 11).await,
        Err(Error::ReservationExpired { .. })
    ));
    assert_eq!(item(store, p).await.version(), it.version());
}

pub(super) async fn release_gives_back_once<S: InventoryStore>(store: &S) {
    let p = create(store, 10).await;
    let r = reserved(
        store
            .execute(reserve_one(new_order(), p, 4, 60), &at(1))
            .await,
    );
    assert!(release(store, r[0].id(), 2).await.unwrap());
    let it = item(store, p).await;
    assert_eq!(
        (it.quantity(), it.reserved(), it.version()),
        (10, 0, Version::new(3))
    );
    assert!(
        !release(store, r[0].id(), 3).await.unwrap(),
        "repeat changes nothing"
    );
    assert_eq!(item(store, p).await.version(), Version::new(3));
}

pub(super) async fn terminal_states_do_not_move<S: InventoryStore>(store: &S) {
    let p = create(store, 10).await;
    let a = reserved(
        store
            .execute(reserve_one(new_order(), p, 1, 60), &at(1))
            .await,
    )[0]
    .id();
    let b = reserved(
        store
            .execute(reserve_one(new_order(), p, 1, 60), &at(1))
            .await,
    )[0]
    .id();
    confirm(store, a, 2).await.unwrap();
    release(store, b, 2).await.unwrap();
    assert_eq!(
        release(store, a, 3).await.unwrap_err(),
        Error::InvalidTransition {
            reservation_id: a,
            from: ReservationStatus::Confirmed,
            to: ReservationStatus::Released
        }
    );
    assert_eq!(
        confirm(store, b, 3).await.unwrap_err(),
        Error::InvalidTransition {
            reservation_id: b,
            from: ReservationStatus::Released,
            to: ReservationStatus::Confirmed
        }
    );
    let expired = store
        .execute(Command::Expire { reservation_id: a }, &at(1000))
        .await
        .unwrap();
    assert!(matches!(
        expired,
        Outcome::Reservation { changed: false, .. }
    ));
    let it = item(store, p).await;
    assert_eq!((it.quantity(), it.reserved()), (9, 0));
    assert_item_consistent(store, p).await;
}

pub(super) async fn unknown_reservation<S: InventoryStore>(store: &S) {
    let id = new_reservation();
    let not_found = Error::ReservationNotFound { reservation_id: id };
    assert_eq!(confirm(store, id, 0).await.unwrap_err(), not_found);
    assert_eq!(release(store, id, 0).await.unwrap_err(), not_found);
    assert_eq!(store.reservation(id).await.unwrap(), None);
}

pub(super) async fn sweep_expires_in_bounded_batches<S: InventoryStore>(store: &S) {
    let p = create(store, 100).await;
    for _ in 0..5 {
        store
            .execute(reserve_one(new_order(), p, 2, 10), &at(0))
            .await
            .unwrap();
    }
    let late = reserved(
        store
            .execute(reserve_one(new_order(), p, 7, 100), &at(0))
            .await,
    );
    assert_eq!(
        store.expire_due(&at(9), 100).await.unwrap(),
        0,
        "nothing is due yet"
    );
    assert_eq!(
        store.expire_due(&at(10), 2).await.unwrap(),
        2,
        "bounded by the limit"
    );
    assert_eq!(store.expire_due(&at(10), 100).await.unwrap(), 3);
    assert_eq!(
        store.expire_due(&at(10), 100).await.unwrap(),
        0,
        "each expires once"
    );
    let it = item(store, p).await;
    assert_eq!((it.quantity(), it.reserved()), (100, 7));
    let kept = store.reservation(late[0].id()).await.unwrap().unwrap();
    assert_eq!(kept.status(), ReservationStatus::Pending);
    assert_item_consistent(store, p).await;
}

pub(super) async fn lazy_expiry_frees_stock_for_a_reserve<S: InventoryStore>(store: &S) {
    let p = create(store, 1).await;
    let first = reserved(
        store
            .execute(reserve_one(new_order(), p, 1, 5), &at(0))
            .await,
    );
    let blocked = store
        .execute(reserve_one(new_order(), p, 1, 60), &at(4))
        .await;
    assert!(matches!(blocked, Err(Error::InsufficientStock { .. })));
    let second = reserved(
        store
            .execute(reserve_one(new_order(), p, 1, 60), &at(5))
            .await,
    );
    assert_eq!(second[0].status(), ReservationStatus::Pending);
    let old = store.reservation(first[0].id()).await.unwrap().unwrap();
    assert_eq!(
        old.status(),
        ReservationStatus::Expired,
        "expired on the way"
    );
    let it = item(store, p).await;
    assert_eq!((it.quantity(), it.reserved()), (1, 1));
    assert_item_consistent(store, p).await;
}

pub(super) async fn adjust_keeps_a_ledger<S: InventoryStore>(store: &S) {
    let p = create(store, 10).await;
    for (secs, delta, why) in [(1, 5, "restock"), (2, -3, "damaged")] {
        let command = Command::Adjust {
            product_id: p,
            delta: StockDelta::new(delta).unwrap(),
            reason: Reason::new(why).unwrap(),
            actor: Actor::new("alice").unwrap(),
            key: None,
        };
        let outcome = store.execute(command, &at(secs)).await.unwrap();
        assert!(matches!(outcome, Outcome::Item { changed: true, .. }));
    }
    let it = item(store, p).await;
    assert_eq!((it.quantity(), it.version()), (12, Version::new(3)));
    let ledger = store.adjustments(p, 10).await.unwrap();
    let rows: Vec<_> = ledger
        .iter()
        .map(|a| {
            (
                a.delta,
                a.quantity_before,
                a.quantity_after,
                a.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (-3, 15, 12, "damaged"),
            (5, 10, 15, "restock"),
            (10, 0, 10, "initial stock")
        ],
        "newest first"
    );
    assert_eq!(ledger[0].actor.as_str(), "alice");
    assert_eq!(ledger[0].at, at(2).now);
    assert_eq!(store.adjustments(p, 1).await.unwrap().len(), 1);
}

/// An adjustment under an idempotency key happens once per product: a repeat
/// (alone or in the same batch) changes nothing and answers the item; the
/// key with another delta is refused; the same key on another product, or
/// another key, is a new adjustment; the ledger entry carries the key.
pub(super) async fn adjust_with_a_key_applies_once<S: InventoryStore>(store: &S) {
    let (p, q) = (create(store, 10).await, create(store, 10).await);
    let adjust = |product_id, delta, key: &str| Command::Adjust {
        product_id,
        delta: StockDelta::new(delta).unwrap(),
        reason: Reason::new("restock").unwrap(),
        actor: Actor::system(),
        key: Some(AdjustmentKey::new(key).unwrap()),
    };
    let first = store.execute(adjust(p, 5, "k1"), &at(1)).await.unwrap();
    assert!(matches!(first, Outcome::Item { changed: true, .. }));
    let again = store.execute(adjust(p, 5, "k1"), &at(2)).await.unwrap();
    let Outcome::Item { item, changed } = again else {
        panic!("an item answer: {again:?}");
    };
    assert!(!changed, "a repeat changes nothing");
    assert_eq!((item.quantity(), item.version()), (15, Version::new(2)));
    let reused = store.execute(adjust(p, -3, "k1"), &at(3)).await;
    assert_eq!(
        reused,
        Err(Error::AdjustmentKeyConflict {
            product_id: p,
            key: "k1".into(),
            existing: 5,
            requested: -3
        })
    );
    let batch = vec![
        (adjust(p, 2, "k2"), at(4)),
        (adjust(p, 2, "k2"), at(4)),
        (adjust(q, 5, "k1"), at(4)),
    ];
    let answers = store.execute_batch(batch).await.unwrap();
    let changed: Vec<bool> = answers
        .iter()
        .map(|a| matches!(a, Ok(Outcome::Item { changed: true, .. })))
        .collect();
    assert_eq!(changed, vec![true, false, true], "{answers:?}");
    assert_eq!(item_of(store, p).await, (17, 0));
    assert_eq!(item_of(store, q).await, (15, 0));
    let ledger = store.adjustments(p, 10).await.unwrap();
    let keys: Vec<Option<&str>> = ledger
        .iter()
        .map(|a| a.key.as_ref().map(AdjustmentKey::as_str))
        .collect();
    assert_eq!(keys, vec![Some("k2"), Some("k1"), None], "newest first");
    assert_item_consistent(store, p).await;
}

async fn item_of<S: InventoryStore>(store: &S, product_id: ProductId) -> (u64, u64) {
    let it = item(store, product_id).await;
    (it.quantity(), it.reserved())
}

pub(super) async fn adjust_never_below_reserved<S: InventoryStore>(store: &S) {
    let p = create(store, 10).await;
    store
        .execute(reserve_one(new_order(), p, 6, 60), &at(1))
        .await
        .unwrap();
    let command = Command::Adjust {
        product_id: p,
        delta: StockDelta::new(-5).unwrap(),
        reason: Reason::new("shrinkage").unwrap(),
        actor: Actor::system(),
        key: None,
    };
    let err = store.execute(command, &at(2)).await.unwrap_err();
    assert_eq!(
        err,
        Error::BelowReserved {
            product_id: p,
            requested: 5,
            reserved: 6
        }
    );
    let it = item(store, p).await;
    assert_eq!((it.quantity(), it.version()), (10, Version::new(2)));
    assert_eq!(
        store.adjustments(p, 10).await.unwrap().len(),
        1,
        "no ledger entry"
    );
}

pub(super) async fn set_quantity_checks_version<S: InventoryStore>(store: &S) {
    let p = create(store, 10).await;
    let set = |quantity: u64, version: u64| Command::SetQuantity {
        product_id: p,
        quantity: StockLevel::new(quantity).unwrap(),
        expected_version: Version::new(version),
        reason: Reason::new("stock take").unwrap(),
        actor: Actor::system(),
    };
    let outcome = store.execute(set(7, 1), &at(1)).await.unwrap();
    match outcome {
        Outcome::Item { item, changed } => {
            assert!(changed);
            assert_eq!((item.quantity(), item.version()), (7, Version::new(2)));
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = store.execute(set(20, 1), &at(2)).await.unwrap_err();
    assert_eq!(
        err,
        Error::VersionConflict {
            product_id: p,
            expected: Version::new(1),
            actual: Version::new(2)
        }
    );
    let same = store.execute(set(7, 2), &at(3)).await.unwrap();
    assert!(matches!(same, Outcome::Item { changed: false, .. }));
    let it = item(store, p).await;
    assert_eq!((it.quantity(), it.version()), (7, Version::new(2)));
    let ledger = store.adjustments(p, 10).await.unwrap();
    assert_eq!((ledger[0].delta, ledger[0].quantity_after), (-3, 7));
}

pub(super) async fn events_follow_every_change_in_order<S: InventoryStore + Outbox>(store: &S) {
    let p = create(store, 2).await;
    let order = new_order();
    let mut meta = at(1);
    meta.correlation_id = Some("req-1".to_owned());
    let a = reserved(store.execute(reserve_one(order, p, 2, 60), &meta).await)[0].id();
    store
        .execute(Command::Release { reservation_id: a }, &at(2))
        .await
        .unwrap();
    let b = reserved(
        store
            .execute(reserve_one(new_order(), p, 1, 5), &at(3))
            .await,
    )[0]
    .id();
    store
        .execute(Command::Confirm { reservation_id: b }, &at(4))
        .await
        .unwrap();
    let c = reserved(
        store
            .execute(reserve_one(new_order(), p, 1, 5), &at(5))
            .await,
    )[0]
    .id();
    assert_eq!(store.expire_due(&at(10), 10).await.unwrap(), 1);
    let adjust = Command::Adjust {
        product_id: p,
        delta: StockDelta::new(3).unwrap(),
        reason: Reason::new("restock").unwrap(),
        actor: Actor::system(),
        key: None,
    };
    store.execute(adjust, &at(11)).await.unwrap();

    let entries = store.unpublished(100).await.unwrap();
    let mine: Vec<_> = entries
        .iter()
        .filter(|e| e.event.payload.product_id() == p)
        .collect();
    let kinds: Vec<_> = mine.iter().map(|e| e.event.payload.event_type()).collect();
    assert_eq!(
        kinds,
        vec![
            "inventory.stock.adjusted",
            "inventory.stock.reserved",
            "inventory.stock.depleted",
            "inventory.stock.released",
            "inventory.stock.reserved",
            "inventory.stock.confirmed",
            "inventory.stock.reserved",
            "inventory.stock.depleted",
            "inventory.stock.expired",
            "inventory.stock.adjusted",
        ]
    );
    assert!(
        mine.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "commit order"
    );
    assert_eq!(mine[1].correlation_id.as_deref(), Some("req-1"));
    assert_eq!(mine[2].correlation_id.as_deref(), Some("req-1"));
    assert_eq!(mine[3].correlation_id, None);
    assert!(matches!(
        &mine[8].event.payload,
        EventPayload::Expired { reservation_id, quantity: 1, .. } if *reservation_id == c
    ));
    assert_eq!(mine[8].event.occurred_at, at(10).now);
    let mut ids: Vec<_> = mine.iter().map(|e| e.event_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), mine.len(), "event ids are unique");
    let sequences: Vec<u64> = entries.iter().map(|e| e.sequence).collect();
    store.mark_published(&sequences).await.unwrap();
    assert!(store.unpublished(100).await.unwrap().is_empty());
}

pub(super) async fn bulk_read_and_order_lookup<S: InventoryStore>(store: &S) {
    let a = create(store, 1).await;
    let b = create(store, 2).await;
    let unknown = new_product();
    let items = store.items(&[b, unknown, a]).await.unwrap();
    let ids: Vec<_> = items.iter().map(|i| i.product_id()).collect();
    assert_eq!(ids, vec![b, a], "in the order asked, unknown left out");
    let too_many = vec![a; crate::AVAILABILITY_BATCH_MAX + 1];
    assert!(matches!(
        store.items(&too_many).await,
        Err(Error::InvalidInput { .. })
    ));
    let order = new_order();
    store
        .execute(reserve_many(order, &[(a, 1), (b, 1)], 60), &at(1))
        .await
        .unwrap();
    let mut mine: Vec<_> = store
        .reservations_of_order(order)
        .await
        .unwrap()
        .iter()
        .map(|r| r.product_id())
        .collect();
    mine.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(mine, expected);
    assert!(store
        .reservations_of_order(new_order())
        .await
        .unwrap()
        .is_empty());
}

pub(super) async fn reservation_id_is_never_reused<S: InventoryStore>(store: &S) {
    let p = create(store, 10).await;
    let q = create(store, 10).await;
    let first = reserved(
        store
            .execute(reserve_one(new_order(), p, 1, 60), &at(1))
            .await,
    );
    let taken = first[0].id();
    let line = crate::ReserveLine {
        product_id: q,
        quantity: crate::Quantity::new(2).unwrap(),
        reservation_id: taken,
    };
    let again = Command::Reserve(crate::Reserve::single(
        new_order(),
        line,
        crate::Ttl::default(),
    ));
    let err = store.execute(again, &at(2)).await.unwrap_err();
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
    let it = item(store, q).await;
    assert_eq!((it.reserved(), it.version()), (0, Version::INITIAL));
    let kept = store.reservation(taken).await.unwrap().unwrap();
    assert_eq!((kept.product_id(), kept.quantity()), (p, 1));
    assert_item_consistent(store, p).await;
}
