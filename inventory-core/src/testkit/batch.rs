//! The rules of batches, one case each, checked through the port: a batch
//! means its commands run one after another in the order given, each with
//! its own answer (the cases of each command's instant, correlation id and
//! the batch's bounds are in `batch_context`), and the helpers both share.

use super::{
    assert_item_consistent, at, create, drain_outbox, item, line_ids, new_order, new_product,
    new_reservation, reserve_many, reserve_one,
};
use crate::{
    Actor, BatchResults, Command, Error, InventoryStore, Meta, OrderId, Outbox, Outcome, ProductId,
    Reason, Reservation, ReservationId, ReservationStatus, StockDelta, StockLevel,
};

/// Runs a batch that the store must accept as a whole; one answer each.
pub(super) async fn run<S: InventoryStore>(store: &S, batch: Vec<(Command, Meta)>) -> BatchResults {
    let len = batch.len();
    let answers = store.execute_batch(batch).await.expect("batch accepted");
    assert_eq!(answers.len(), len, "one answer per command");
    answers
}

/// The reservations of an answer that made new ones.
#[track_caller]
pub(super) fn created(answer: &Result<Outcome, Error>) -> Vec<Reservation> {
    match answer {
        Ok(Outcome::Reserved {
            reservations,
            created: true,
        }) => reservations.clone(),
        other => panic!("expected new reservations, got {other:?}"),
    }
}

/// The reservation of an answer that moved it.
#[track_caller]
pub(super) fn moved(answer: &Result<Outcome, Error>) -> Reservation {
    match answer {
        Ok(Outcome::Reservation {
            reservation,
            changed: true,
        }) => reservation.clone(),
        other => panic!("expected a moved reservation, got {other:?}"),
    }
}

/// `(quantity, reserved, available, version)` of an item that must exist.
pub(super) async fn stock<S: InventoryStore>(
    store: &S,
    product_id: ProductId,
) -> (u64, u64, u64, u64) {
    let it = item(store, product_id).await;
    (
        it.quantity(),
        it.reserved(),
        it.available(),
        it.version().get(),
    )
}

/// The status of a reservation that must exist.
pub(super) async fn status<S: InventoryStore>(store: &S, id: ReservationId) -> ReservationStatus {
    store
        .reservation(id)
        .await
        .expect("read reservation")
        .expect("reservation exists")
        .status()
}

/// `(product, quantity)` of each reservation, in order.
pub(super) fn lines(reservations: &[Reservation]) -> Vec<(ProductId, u64)> {
    reservations
        .iter()
        .map(|r| (r.product_id(), r.quantity()))
        .collect()
}

/// The types of the events committed since the outbox was last drained.
pub(super) async fn event_types<S: Outbox>(store: &S) -> Vec<&'static str> {
    drain_outbox(store)
        .await
        .iter()
        .map(|e| e.event.payload.event_type())
        .collect()
}

/// A change of `delta` units to the stock of `product_id`.
pub(super) fn adjust(product_id: ProductId, delta: i64) -> Command {
    Command::Adjust {
        product_id,
        delta: StockDelta::new(delta).expect("valid delta"),
        reason: Reason::new("recount").expect("valid reason"),
        actor: Actor::system(),
        key: None,
    }
}

/// The same order and product twice in one batch: the second is an
/// idempotent repeat, the stock is held once; a third with another quantity
/// conflicts.
pub(super) async fn same_order_twice_in_one_batch<S: InventoryStore + Outbox>(store: &S) {
    // Arrange
    let p = create(store, 10).await;
    let order = new_order();
    let repeat = reserve_one(order, p, 3, 60);
    let unused = line_ids(&repeat)[0];
    let batch = vec![
        (reserve_one(order, p, 3, 60), at(1)),
        (repeat, at(1)),
        (reserve_one(order, p, 5, 60), at(2)),
    ];

    // Act
    let answers = run(store, batch).await;

    // Assert
    let held = created(&answers[0]);
    assert_eq!(
        answers[1],
        Ok(Outcome::Reserved {
            reservations: held.clone(),
            created: false
        }),
        "the repeat returns the reservation the first made"
    );
    assert_eq!(
        answers[2],
        Err(Error::IdempotencyConflict {
            order_id: order,
            product_id: p,
            existing: 3,
            requested: 5
        })
    );
    assert_eq!(stock(store, p).await, (10, 3, 7, 2), "held once");
    assert_eq!(store.reservations_of_order(order).await.unwrap(), held);
    assert_eq!(store.reservation(unused).await.unwrap(), None);
    assert_eq!(
        event_types(store).await,
        ["inventory.stock.adjusted", "inventory.stock.reserved"]
    );
    assert_item_consistent(store, p).await;
}

/// A reserve and the confirm of its reservation in one batch: the confirm
/// sees the reservation and ships its units once.
pub(super) async fn reserve_then_confirm_in_one_batch<S: InventoryStore + Outbox>(store: &S) {
    // Arrange
    let p = create(store, 10).await;
    let reserve = reserve_one(new_order(), p, 4, 60);
    let id = line_ids(&reserve)[0];
    let batch = vec![
        (reserve, at(1)),
        (Command::Confirm { reservation_id: id }, at(2)),
    ];

    // Act
    let answers = run(store, batch).await;

    // Assert
    let held = created(&answers[0]);
    assert_eq!(
        (held[0].id(), held[0].status()),
        (id, ReservationStatus::Pending)
    );
    let confirmed = moved(&answers[1]);
    assert_eq!(
        (confirmed.id(), confirmed.status()),
        (id, ReservationStatus::Confirmed)
    );
    assert_eq!(
        stock(store, p).await,
        (6, 0, 6, 3),
        "shipped once; one version per command"
    );
    assert_eq!(status(store, id).await, ReservationStatus::Confirmed);
    assert_eq!(
        event_types(store).await,
        [
            "inventory.stock.adjusted",
            "inventory.stock.reserved",
            "inventory.stock.confirmed"
        ]
    );
    assert_item_consistent(store, p).await;
}

/// A reserve, its release, a repeat of the release and a confirm in one
/// batch: the stock comes back once, the repeat changes nothing and the
/// confirm finds a released reservation.
pub(super) async fn reserve_then_release_in_one_batch<S: InventoryStore + Outbox>(store: &S) {
    // Arrange
    let p = create(store, 10).await;
    let reserve = reserve_one(new_order(), p, 4, 60);
    let id = line_ids(&reserve)[0];
    let batch = vec![
        (reserve, at(1)),
        (Command::Release { reservation_id: id }, at(2)),
        (Command::Release { reservation_id: id }, at(3)),
        (Command::Confirm { reservation_id: id }, at(3)),
    ];

    // Act
    let answers = run(store, batch).await;

    // Assert
    created(&answers[0]);
    assert_eq!(moved(&answers[1]).status(), ReservationStatus::Released);
    assert!(
        matches!(&answers[2], Ok(Outcome::Reservation { reservation, changed: false })
            if reservation.status() == ReservationStatus::Released),
        "a repeated release changes nothing: {:?}",
        answers[2]
    );
    assert_eq!(
        answers[3],
        Err(Error::InvalidTransition {
            reservation_id: id,
            from: ReservationStatus::Released,
            to: ReservationStatus::Confirmed
        })
    );
    assert_eq!(stock(store, p).await, (10, 0, 10, 3), "given back once");
    assert_eq!(status(store, id).await, ReservationStatus::Released);
    assert_eq!(
        event_types(store).await,
        [
            "inventory.stock.adjusted",
            "inventory.stock.reserved",
            "inventory.stock.released"
        ]
    );
    assert_item_consistent(store, p).await;
}

/// A confirm and a release of an unknown reservation fail inside a batch,
/// alone: the commands around them happen.
pub(super) async fn unknown_reservation_fails_alone<S: InventoryStore>(store: &S) {
    // Arrange
    let p = create(store, 5).await;
    let unknown = new_reservation();
    let (first, second) = (
        reserve_one(new_order(), p, 2, 60),
        reserve_one(new_order(), p, 1, 60),
    );
    let (a, b) = (line_ids(&first)[0], line_ids(&second)[0]);
    let batch = vec![
        (first, at(1)),
        (
            Command::Confirm {
                reservation_id: unknown,
            },
            at(1),
        ),
        (
            Command::Release {
                reservation_id: unknown,
            },
            at(1),
        ),
        (second, at(2)),
        (Command::Confirm { reservation_id: a }, at(3)),
    ];

    // Act
    let answers = run(store, batch).await;

    // Assert
    let not_found = Err(Error::ReservationNotFound {
        reservation_id: unknown,
    });
    created(&answers[0]);
    assert_eq!(answers[1], not_found);
    assert_eq!(answers[2], not_found);
    created(&answers[3]);
    assert_eq!(moved(&answers[4]).status(), ReservationStatus::Confirmed);
    assert_eq!(stock(store, p).await, (3, 1, 2, 4));
    assert_eq!(status(store, a).await, ReservationStatus::Confirmed);
    assert_eq!(status(store, b).await, ReservationStatus::Pending);
    assert_eq!(store.reservation(unknown).await.unwrap(), None);
    assert_item_consistent(store, p).await;
}

/// Successes and failures mixed in one batch: a failure changes nothing,
/// and each command sees what the commands before it did.
pub(super) async fn failures_change_nothing_and_later_commands_see_earlier<S: InventoryStore>(
    store: &S,
) {
    // Arrange
    let p = create(store, 5).await;
    let q = create(store, 2).await;
    let missing = new_product();
    let [o1, o2, o3, o4] = [new_order(), new_order(), new_order(), new_order()];
    let batch = vec![
        (reserve_one(o1, p, 2, 60), at(1)),
        (reserve_one(o2, missing, 1, 60), at(1)),
        (reserve_one(o3, q, 3, 60), at(1)),
        (adjust(q, 4), at(2)),
        (reserve_one(o3, q, 3, 60), at(3)),
        (reserve_one(o4, p, 4, 60), at(3)),
        (adjust(p, -4), at(4)),
    ];

    // Act
    let answers = run(store, batch).await;

    // Assert
    assert_eq!(lines(&created(&answers[0])), [(p, 2)]);
    assert_eq!(
        answers[1],
        Err(Error::ProductNotFound {
            product_id: missing
        })
    );
    assert_eq!(
        answers[2],
        Err(Error::InsufficientStock {
            product_id: q,
            requested: 3,
            available: 2
        })
    );
    assert!(
        matches!(&answers[3], Ok(Outcome::Item { item, changed: true })
            if (item.quantity(), item.version().get()) == (6, 2)),
        "{:?}",
        answers[3]
    );
    assert_eq!(
        lines(&created(&answers[4])),
        [(q, 3)],
        "the restock is seen"
    );
    assert_eq!(
        answers[5],
        Err(Error::InsufficientStock {
            product_id: p,
            requested: 4,
            available: 3
        }),
        "the first reserve is seen"
    );
    assert_eq!(
        answers[6],
        Err(Error::BelowReserved {
            product_id: p,
            requested: 1,
            reserved: 2
        })
    );
    assert_eq!(stock(store, p).await, (5, 2, 3, 2));
    assert_eq!(stock(store, q).await, (6, 3, 3, 3));
    assert_eq!(store.item(missing).await.unwrap(), None);
    for order in [o2, o4] {
        assert!(store.reservations_of_order(order).await.unwrap().is_empty());
    }
    assert_eq!(
        lines(&store.reservations_of_order(o3).await.unwrap()),
        [(q, 3)]
    );
    assert_eq!(store.adjustments(p, 10).await.unwrap().len(), 1, "no entry");
    assert_eq!(store.adjustments(q, 10).await.unwrap()[0].delta, 4);
    for product in [p, q] {
        assert_item_consistent(store, product).await;
    }
}

/// Buyers contesting the last unit inside one batch.
const LAST_UNIT_BUYERS: usize = 10;

/// The last unit contested inside one batch goes to the first buyer in
/// line; every other gets insufficient stock.
pub(super) async fn last_unit_goes_to_the_first_in_the_batch<S: InventoryStore>(store: &S) {
    // Arrange
    let p = create(store, 1).await;
    let buyers: Vec<Command> = (0..LAST_UNIT_BUYERS)
        .map(|_| reserve_one(new_order(), p, 1, 60))
        .collect();
    let first = line_ids(&buyers[0])[0];

    // Act
    let answers = run(store, buyers.into_iter().map(|c| (c, at(1))).collect()).await;

    // Assert
    assert_eq!(created(&answers[0])[0].id(), first);
    for (i, answer) in answers.iter().enumerate().skip(1) {
        let sold_out = Err(Error::InsufficientStock {
            product_id: p,
            requested: 1,
            available: 0,
        });
        assert_eq!(answer, &sold_out, "buyer {i}");
    }
    assert_eq!(stock(store, p).await, (1, 1, 0, 2));
    let held: Vec<ReservationId> = store
        .reservations_of_product(p)
        .await
        .unwrap()
        .iter()
        .map(Reservation::id)
        .collect();
    assert_eq!(held, [first]);
    assert_item_consistent(store, p).await;
}

/// Multi-line orders sharing products in one batch: the one that cannot be
/// served fully gets nothing, and the orders after it get what it left.
pub(super) async fn overlapping_orders_in_one_batch<S: InventoryStore>(store: &S) {
    // Arrange
    let (a, b, c) = (
        create(store, 5).await,
        create(store, 3).await,
        create(store, 4).await,
    );
    let orders: Vec<OrderId> = (0..5).map(|_| new_order()).collect();
    let wanted: [&[(ProductId, u64)]; 5] = [
        &[(a, 2), (b, 1)],
        &[(b, 1), (c, 2)],
        &[(c, 1), (a, 2), (b, 2)],
        &[(a, 3), (c, 2)],
        &[(b, 1)],
    ];
    let batch = orders
        .iter()
        .zip(wanted)
        .map(|(order, lines)| (reserve_many(*order, lines, 60), at(1)))
        .collect();

    // Act
    let answers = run(store, batch).await;

    // Assert
    assert_eq!(
        answers[2],
        Err(Error::InsufficientStock {
            product_id: b,
            requested: 2,
            available: 1
        })
    );
    for i in [0, 1, 3, 4] {
        let want: Vec<(ProductId, u64)> = wanted[i].iter().map(|(p, q)| (*p, *q)).collect();
        assert_eq!(lines(&created(&answers[i])), want, "order {i}");
        let stored = store.reservations_of_order(orders[i]).await.unwrap();
        assert_eq!(stored.len(), want.len(), "order {i}");
        assert!(stored
            .iter()
            .all(|r| r.status() == ReservationStatus::Pending));
    }
    assert!(store
        .reservations_of_order(orders[2])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(stock(store, a).await, (5, 5, 0, 3));
    assert_eq!(stock(store, b).await, (3, 3, 0, 4));
    assert_eq!(stock(store, c).await, (4, 4, 0, 3));
    for p in [a, b, c] {
        assert_item_consistent(store, p).await;
    }
}

/// An item created in a batch is there for the commands after the create,
/// not for those before it.
pub(super) async fn create_then_reserve_in_one_batch<S: InventoryStore + Outbox>(store: &S) {
    // Arrange
    let p = new_product();
    let create_p = |quantity| Command::CreateItem {
        product_id: p,
        quantity: StockLevel::new(quantity).expect("valid stock"),
        actor: Actor::system(),
    };
    let (early, order) = (new_order(), new_order());
    let batch = vec![
        (reserve_one(early, p, 1, 60), at(1)),
        (create_p(5), at(1)),
        (reserve_one(order, p, 2, 60), at(2)),
        (create_p(9), at(3)),
    ];

    // Act
    let answers = run(store, batch).await;

    // Assert
    assert_eq!(answers[0], Err(Error::ProductNotFound { product_id: p }));
    match &answers[1] {
        Ok(Outcome::Created(it)) => {
            assert_eq!(
                (it.quantity(), it.reserved(), it.version().get()),
                (5, 0, 1)
            );
            assert_eq!(it.created_at(), at(1).now);
        }
        other => panic!("expected the created item, got {other:?}"),
    }
    assert_eq!(lines(&created(&answers[2])), [(p, 2)]);
    assert_eq!(answers[3], Err(Error::AlreadyExists { product_id: p }));
    assert_eq!(stock(store, p).await, (5, 2, 3, 2));
    assert_eq!(item(store, p).await.created_at(), at(1).now);
    assert!(store.reservations_of_order(early).await.unwrap().is_empty());
    assert_eq!(
        event_types(store).await,
        ["inventory.stock.adjusted", "inventory.stock.reserved"]
    );
    assert_item_consistent(store, p).await;
}
