//! The rules of batches about each command's context, one case each: its
//! own instant, lazy expiry as a lone command would do it, its own
//! correlation id, and the bounds of a batch.

use super::batch::{adjust, created, event_types, lines, run, status, stock};
use super::{
    assert_item_consistent, at, create, drain_outbox, line_ids, new_order, new_reservation,
    reserve_one, reserved,
};
use crate::{
    Command, Error, InventoryStore, Meta, Outbox, Outcome, ReservationStatus, Timestamp, BATCH_MAX,
    LAZY_EXPIRY_MAX,
};

/// Each command of a batch is decided at its own instant: a hold made in
/// the batch has run out for a later confirm, and its units serve a later
/// reserve.
pub(super) async fn each_command_at_its_own_instant<S: InventoryStore + Outbox>(store: &S) {
    // Arrange
    let p = create(store, 3).await;
    let short = reserve_one(new_order(), p, 2, 5);
    let id = line_ids(&short)[0];
    let batch = vec![
        (short, at(0)),
        (Command::Confirm { reservation_id: id }, at(5)),
        (reserve_one(new_order(), p, 3, 60), at(6)),
    ];

    // Act
    let answers = run(store, batch).await;

    // Assert
    assert_eq!(created(&answers[0])[0].expires_at(), at(5).now);
    assert_eq!(
        answers[1],
        Err(Error::ReservationExpired {
            reservation_id: id,
            expires_at: at(5).now
        })
    );
    assert_eq!(created(&answers[2])[0].expires_at(), at(66).now);
    assert_eq!(stock(store, p).await, (3, 3, 0, 4));
    assert_eq!(status(store, id).await, ReservationStatus::Expired);
    let events: Vec<(&str, Timestamp)> = drain_outbox(store)
        .await
        .iter()
        .map(|e| (e.event.payload.event_type(), e.event.occurred_at))
        .collect();
    assert_eq!(
        events,
        [
            ("inventory.stock.adjusted", at(0).now),
            ("inventory.stock.reserved", at(0).now),
            ("inventory.stock.expired", at(5).now),
            ("inventory.stock.reserved", at(6).now),
            ("inventory.stock.depleted", at(6).now),
        ]
    );
    assert_item_consistent(store, p).await;
}

/// A reserve in a batch expires overdue reservations on the way as a lone
/// reserve would: one made earlier in the batch and one stored before it,
/// even when the stock was short only because an adjustment earlier in the
/// batch lowered it.
pub(super) async fn lazy_expiry_inside_a_batch<S: InventoryStore + Outbox>(store: &S) {
    // Arrange
    let p = create(store, 4).await;
    let before = store
        .execute(reserve_one(new_order(), p, 1, 5), &at(0))
        .await;
    let before = reserved(before)[0].id();
    let inside = reserve_one(new_order(), p, 1, 5);
    let late = reserve_one(new_order(), p, 2, 60);
    let (inside_id, late_id) = (line_ids(&inside)[0], line_ids(&late)[0]);
    let batch = vec![(inside, at(1)), (adjust(p, -2), at(10)), (late, at(10))];
    drain_outbox(store).await;

    // Act
    let answers = run(store, batch).await;

    // Assert
    created(&answers[0]);
    assert!(
        matches!(&answers[1], Ok(Outcome::Item { item, changed: true })
            if (item.quantity(), item.available()) == (2, 0)),
        "{:?}",
        answers[1]
    );
    assert_eq!(
        lines(&created(&answers[2])),
        [(p, 2)],
        "both overdue holds expired on the way"
    );
    assert_eq!(stock(store, p).await, (2, 2, 0, 5));
    assert_eq!(status(store, before).await, ReservationStatus::Expired);
    assert_eq!(status(store, inside_id).await, ReservationStatus::Expired);
    assert_eq!(status(store, late_id).await, ReservationStatus::Pending);
    assert_eq!(
        event_types(store).await,
        [
            "inventory.stock.reserved",
            "inventory.stock.adjusted",
            "inventory.stock.depleted",
            "inventory.stock.expired",
            "inventory.stock.expired",
            "inventory.stock.reserved",
            "inventory.stock.depleted",
        ]
    );
    assert_item_consistent(store, p).await;
}

/// Overdue holds on one product: more than one reserve may expire on the way.
const OVERDUE_HOLDS: usize = LAZY_EXPIRY_MAX + 6;

/// The bound on lazy expiry is per reserve in a batch too: after a first
/// reserve expired [`LAZY_EXPIRY_MAX`] overdue holds, a second one expires
/// the rest it needs, as it would alone.
pub(super) async fn lazy_expiry_bound_is_per_command<S: InventoryStore>(store: &S) {
    // Arrange
    let p = create(store, OVERDUE_HOLDS as u64).await;
    for _ in 0..OVERDUE_HOLDS {
        let hold = store
            .execute(reserve_one(new_order(), p, 1, 5), &at(0))
            .await;
        reserved(hold);
    }
    let batch = vec![
        (
            reserve_one(new_order(), p, LAZY_EXPIRY_MAX as u64, 60),
            at(10),
        ),
        (reserve_one(new_order(), p, 1, 60), at(10)),
    ];

    // Act
    let answers = run(store, batch).await;

    // Assert
    created(&answers[0]);
    created(&answers[1]);
    let holds = OVERDUE_HOLDS as u64;
    let wanted = LAZY_EXPIRY_MAX as u64 + 1;
    assert_eq!(
        stock(store, p).await,
        (holds, wanted, holds - wanted, 1 + holds + 2)
    );
    let expired = store
        .reservations_of_product(p)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.status() == ReservationStatus::Expired)
        .count();
    assert_eq!(expired, OVERDUE_HOLDS, "every overdue hold expired once");
    assert_item_consistent(store, p).await;
}

/// `at(secs)` with a correlation id.
fn traced(secs: i64, correlation_id: &str) -> Meta {
    Meta {
        correlation_id: Some(correlation_id.to_owned()),
        ..at(secs)
    }
}

/// Each command's events carry that command's correlation id (or none) and
/// its instant, in the order of the commands.
pub(super) async fn each_command_has_its_own_correlation_id<S: InventoryStore + Outbox>(store: &S) {
    // Arrange
    let p = create(store, 10).await;
    let first = reserve_one(new_order(), p, 3, 60);
    let first_id = line_ids(&first)[0];
    let unknown = new_reservation();
    let batch = vec![
        (first, traced(1, "req-a")),
        (reserve_one(new_order(), p, 7, 60), traced(2, "req-b")),
        (
            Command::Release {
                reservation_id: first_id,
            },
            traced(3, "req-c"),
        ),
        (
            Command::Confirm {
                reservation_id: unknown,
            },
            traced(3, "req-d"),
        ),
        (adjust(p, 2), traced(4, "req-e")),
        (reserve_one(new_order(), p, 1, 60), at(5)),
    ];

    // Act
    let answers = run(store, batch).await;

    // Assert
    assert_eq!(
        answers[3],
        Err(Error::ReservationNotFound {
            reservation_id: unknown
        })
    );
    for i in [0, 1, 2, 4, 5] {
        assert!(answers[i].is_ok(), "command {i}: {:?}", answers[i]);
    }
    let entries = drain_outbox(store).await;
    assert!(
        entries.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "commit order"
    );
    let events: Vec<(&str, Option<&str>, Timestamp)> = entries
        .iter()
        .map(|e| {
            (
                e.event.payload.event_type(),
                e.correlation_id.as_deref(),
                e.event.occurred_at,
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("inventory.stock.adjusted", None, at(0).now),
            ("inventory.stock.reserved", Some("req-a"), at(1).now),
            ("inventory.stock.reserved", Some("req-b"), at(2).now),
            ("inventory.stock.depleted", Some("req-b"), at(2).now),
            ("inventory.stock.released", Some("req-c"), at(3).now),
            ("inventory.stock.adjusted", Some("req-e"), at(4).now),
            ("inventory.stock.reserved", None, at(5).now),
        ]
    );
    assert_eq!(stock(store, p).await, (12, 8, 4, 6));
}

/// An empty batch answers nothing; one command over [`BATCH_MAX`] is
/// refused as a whole and changes nothing; [`BATCH_MAX`] itself runs.
pub(super) async fn empty_and_oversized_batches<S: InventoryStore + Outbox>(store: &S) {
    // Arrange
    let max = BATCH_MAX as u64;
    let p = create(store, BATCH_MAX as u64).await;
    let buyers = |n: usize| -> Vec<(Command, Meta)> {
        (0..n)
            .map(|_| (reserve_one(new_order(), p, 1, 60), at(1)))
            .collect()
    };

    // Act
    let empty = store.execute_batch(Vec::new()).await;
    let oversized = store.execute_batch(buyers(BATCH_MAX + 1)).await;

    // Assert
    assert_eq!(empty, Ok(Vec::new()));
    assert!(
        matches!(oversized, Err(Error::InvalidInput { field: "batch", .. })),
        "{oversized:?}"
    );
    assert_eq!(stock(store, p).await, (max, 0, max, 1), "nothing changed");
    assert!(store.reservations_of_product(p).await.unwrap().is_empty());
    assert_eq!(event_types(store).await, ["inventory.stock.adjusted"]);

    // Act: the bound itself
    let answers = run(store, buyers(BATCH_MAX)).await;

    // Assert
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(created(answer).len(), 1, "buyer {i}");
    }
    assert_eq!(stock(store, p).await, (max, max, 0, max + 1));
    assert_item_consistent(store, p).await;
}
