//! The shared store suite: every [`OrderStore`] adapter must pass it (the
//! integration tests run it on the memory store and on PostgreSQL). Each case
//! uses fresh ids and users, so the cases can share one store.

use std::sync::Arc;

use uuid::Uuid;

use super::{
    Hold, HoldApplied, HoldEvent, HoldStatus, OrderStore, OrdersOutbox, PaymentRecord, Placed,
    RefundRecord, StoreError,
};
use crate::catalog::Product;
use crate::domain::{
    CancelReason, IdempotencyKey, Order, OrderId, OrderLine, OrderStatus, ProductId, UserId,
};
use crate::saga::{SagaState, SagaStep};

/// An instant well after the epoch where the suite's clock starts.
pub const T0_MS: i64 = 1_700_000_000_000;

fn user() -> UserId {
    UserId::parse(&format!("user-{}", Uuid::new_v4())).expect("valid user")
}

fn order(user: &UserId, key: Option<&str>, created_at_ms: i64) -> Order {
    let lines = vec![
        OrderLine {
            product_id: ProductId::from_uuid(Uuid::from_u128(1)),
            name: "first".into(),
            quantity: 2,
            unit_price_minor: 150,
            line_total_minor: 300,
        },
        OrderLine {
            product_id: ProductId::from_uuid(Uuid::from_u128(2)),
            name: "second".into(),
            quantity: 1,
            unit_price_minor: 1_000,
            line_total_minor: 1_000,
        },
    ];
    Order {
        id: OrderId::generate(),
        user_id: user.clone(),
        status: OrderStatus::Pending,
        lines,
        total_minor: 1_300,
        currency: "EUR".into(),
        idempotency_key: key.map(|k| IdempotencyKey::parse(k).expect("valid key")),
        fingerprint: "fp".into(),
        created_at_ms,
        updated_at_ms: created_at_ms,
    }
}

fn done(o: &Order, status: OrderStatus) -> event_bus::Envelope {
    crate::events::finished(o, status, Some("req"), T0_MS).expect("a final status")
}

/// The saga owner of the cases: [`place`] claims each new order for it.
const OWNER: Uuid = Uuid::from_u128(0x5a6a);

/// Lease of the cases' claims: long enough never to run out in a case.
const LEASE_MS: i64 = 3_600_000;

async fn place(store: &dyn OrderStore, o: &Order) -> SagaState {
    let saga = SagaState::new(o, o.created_at_ms + 60_000);
    let placed = store
        .place(o, &saga, &crate::events::created(o, Some("req")))
        .await
        .expect("place");
    assert_eq!(placed, Placed::Created);
    assert!(store
        .claim(o.id, OWNER, o.created_at_ms, LEASE_MS)
        .await
        .expect("claim"));
    saga
}

/// Runs every case of the suite against `store`.
///
/// # Panics
/// When the store breaks a rule of the port.
pub async fn run_all(store: Arc<dyn OrderStore>) {
    place_and_get(&*store).await;
    idempotency_keys_are_scoped_per_user(&*store).await;
    concurrent_repeats_agree_on_one_order(store.clone()).await;
    lists_newest_first_and_paginates(&*store).await;
    saga_progress_and_finish(&*store).await;
    cancel_requests(&*store).await;
    payments_and_refunds_are_recorded_once(&*store).await;
    catalog(&*store).await;
    claims_are_exclusive_leases(&*store).await;
    saga_writes_are_fenced_by_the_claim(&*store).await;
    events_are_written_with_their_changes(&*store).await;
    hold_events_apply_once(&*store).await;
    prune_forgets_old_event_records(&*store).await;
}

/// `(event type, correlation id)` of the events an order wrote to the
/// store's outbox, oldest first (sent or not).
async fn outbox_events(store: &dyn OrderStore, id: OrderId) -> Vec<(String, Option<String>)> {
    use event_bus::{Claim, OutboxSource};
    let key = id.to_string();
    match store.outbox() {
        OrdersOutbox::Memory(outbox) => {
            let claim = outbox.claim(usize::MAX).await.expect("claim");
            claim
                .envelopes()
                .iter()
                .filter(|e| e.ordering_key() == key)
                .map(|e| (e.event_type.clone(), e.correlation_id.clone()))
                .collect()
        }
        #[cfg(feature = "postgres")]
        OrdersOutbox::Postgres(pool) => {
            let rows: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT event_type, envelope ->> 'correlation_id' FROM event_outbox \
                 WHERE ordering_key = $1 ORDER BY sequence",
            )
            .bind(&key)
            .fetch_all(&pool)
            .await
            .expect("read outbox");
            rows
        }
    }
}

/// Placing writes `order.created` and finishing writes one final event, in
/// the same step; a repeat or a second finish writes nothing.
pub async fn events_are_written_with_their_changes(store: &dyn OrderStore) {
    let u = user();
    let o = order(&u, Some("events-key"), T0_MS);
    let mut saga = place(store, &o).await;
    let repeat = Order {
        id: OrderId::generate(),
        ..o.clone()
    };
    let again = store
        .place(&repeat, &saga, &crate::events::created(&repeat, None))
        .await
        .expect("place");
    assert!(matches!(again, Placed::Existing(_)));
    assert!(outbox_events(store, repeat.id).await.is_empty());
    saga.step = SagaStep::Done;
    let status = OrderStatus::Confirmed;
    assert!(store
        .finish(&saga, OWNER, status, T0_MS + 1, &done(&o, status))
        .await
        .expect("finish"));
    let cancelled = OrderStatus::Cancelled(CancelReason::OutOfStock);
    assert!(!store
        .finish(&saga, OWNER, cancelled, T0_MS + 2, &done(&o, cancelled))
        .await
        .expect("finish"));
    let req = Some("req".to_owned());
    assert_eq!(
        outbox_events(store, o.id).await,
        [
            ("order.created".to_owned(), req.clone()),
            ("order.confirmed".to_owned(), req)
        ]
    );
}

async fn apply(store: &dyn OrderStore, event: &HoldEvent) -> Result<HoldApplied, StoreError> {
    store.apply_hold_event("suite", event).await
}

fn hold_event(inventory_order_id: Uuid, reservation_id: Uuid, status: HoldStatus) -> HoldEvent {
    HoldEvent {
        event_id: Uuid::new_v4(),
        inventory_order_id,
        hold: Hold {
            reservation_id,
            product_id: ProductId::from_uuid(Uuid::from_u128(1)),
            quantity: 2,
            status,
            updated_at_ms: T0_MS,
        },
    }
}

/// An inventory event is applied once per consumer; a settled hold is not
/// set back to reserved; a lost hold the pending saga relies on hands the
/// order to the saga; events of unknown orders are only recorded.
pub async fn hold_events_apply_once(store: &dyn OrderStore) {
    let o = order(&user(), None, T0_MS);
    let mut saga = place(store, &o).await;
    let (r1, r2) = (Uuid::new_v4(), Uuid::new_v4());
    saga.step = SagaStep::Pay;
    saga.lines[0].reservation_id = Some(r1);
    saga.lines[1].reservation_id = Some(r2);
    store
        .save_saga(&saga, OWNER, T0_MS + 1)
        .await
        .expect("save");
    let inv = saga.inventory_order_id;
    let applied = |hands_to_saga| HoldApplied::Applied {
        order_id: o.id,
        hands_to_saga,
    };

    let reserved = hold_event(inv, r1, HoldStatus::Reserved);
    assert_eq!(
        apply(store, &reserved).await.expect("apply"),
        applied(false)
    );
    assert_eq!(
        apply(store, &reserved).await.expect("apply"),
        HoldApplied::Duplicate
    );
    let other_consumer = store.apply_hold_event("other", &reserved).await;
    assert_eq!(other_consumer.expect("apply"), applied(false));
    let expired = hold_event(inv, r1, HoldStatus::Expired);
    assert_eq!(apply(store, &expired).await.expect("apply"), applied(true));
    let stale = hold_event(inv, r1, HoldStatus::Reserved);
    assert_eq!(apply(store, &stale).await.expect("apply"), applied(false));
    let holds = store.get(o.id).await.expect("get").expect("stored").holds;
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].status, HoldStatus::Expired, "settled holds stay");
    assert_eq!((holds[0].reservation_id, holds[0].quantity), (r1, 2));

    let stranger = hold_event(Uuid::new_v4(), Uuid::new_v4(), HoldStatus::Expired);
    assert_eq!(
        apply(store, &stranger).await.expect("apply"),
        HoldApplied::UnknownOrder
    );
    assert_eq!(
        apply(store, &stranger).await.expect("apply"),
        HoldApplied::Duplicate
    );

    saga.step = SagaStep::Done;
    let status = OrderStatus::Cancelled(CancelReason::ReservationExpired);
    assert!(store
        .finish(&saga, OWNER, status, T0_MS + 2, &done(&o, status))
        .await
        .expect("finish"));
    let late = hold_event(inv, r2, HoldStatus::Released);
    assert_eq!(
        apply(store, &late).await.expect("apply"),
        applied(false),
        "a finished order's saga has nothing to do"
    );
    let holds = store.get(o.id).await.expect("get").expect("stored").holds;
    assert_eq!(holds.len(), 2);
}

/// An order comes back as stored, lines in order, with its saga.
pub async fn place_and_get(store: &dyn OrderStore) {
    let u = user();
    let o = order(&u, None, T0_MS);
    let saga = place(store, &o).await;
    let got = store.get(o.id).await.expect("get").expect("stored");
    assert_eq!(got.order, o);
    assert_eq!(got.saga, saga);
    assert!(!got.cancel_requested);
    assert_eq!(store.get(OrderId::generate()).await.expect("get"), None);
}

/// The same key is independent per user; a repeat stores nothing and returns
/// the first order.
pub async fn idempotency_keys_are_scoped_per_user(store: &dyn OrderStore) {
    let (a, b) = (user(), user());
    let first = order(&a, Some("k-1"), T0_MS);
    place(store, &first).await;
    let other_user = order(&b, Some("k-1"), T0_MS);
    place(store, &other_user).await;
    let repeat = order(&a, Some("k-1"), T0_MS + 1);
    let saga = SagaState::new(&repeat, T0_MS);
    match store
        .place(&repeat, &saga, &crate::events::created(&repeat, None))
        .await
        .expect("place")
    {
        Placed::Existing(r) => assert_eq!(r.order.id, first.id),
        Placed::Created => panic!("a repeated key must not create an order"),
    }
    assert_eq!(store.get(repeat.id).await.expect("get"), None);
    let key = IdempotencyKey::parse("k-1").expect("key");
    let found = store
        .by_key(&a, &key)
        .await
        .expect("by_key")
        .expect("found");
    assert_eq!(found.order.id, first.id);
    let found = store
        .by_key(&b, &key)
        .await
        .expect("by_key")
        .expect("found");
    assert_eq!(found.order.id, other_user.id);
    let unknown = IdempotencyKey::parse("k-2").expect("key");
    assert_eq!(store.by_key(&a, &unknown).await.expect("by_key"), None);
}

/// Concurrent places with one key: exactly one order is created and every
/// other call gets that order.
pub async fn concurrent_repeats_agree_on_one_order(store: Arc<dyn OrderStore>) {
    let u = user();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, u) = (store.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            let o = order(&u, Some("same"), T0_MS + i);
            let saga = SagaState::new(&o, T0_MS);
            match store
                .place(&o, &saga, &crate::events::created(&o, None))
                .await
                .expect("place")
            {
                Placed::Created => o.id,
                Placed::Existing(r) => r.order.id,
            }
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("task"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every repeat names the one created order");
    let page = store.list(&u, 0, 100).await.expect("list");
    assert_eq!(page.total, 1);
}

/// A user's orders, newest first, paginated, without other users' orders.
pub async fn lists_newest_first_and_paginates(store: &dyn OrderStore) {
    let (u, other) = (user(), user());
    let mut ids = Vec::new();
    for i in 0..5 {
        let o = order(&u, None, T0_MS + i * 1_000);
        place(store, &o).await;
        ids.push(o.id);
    }
    place(store, &order(&other, None, T0_MS + 10_000)).await;
    ids.reverse();
    let first = store.list(&u, 0, 2).await.expect("list");
    assert_eq!(first.total, 5);
    let got: Vec<OrderId> = first.records.iter().map(|r| r.order.id).collect();
    assert_eq!(got, ids[..2]);
    assert_eq!(first.records[0].order.lines.len(), 2);
    let last = store.list(&u, 4, 2).await.expect("list");
    let got: Vec<OrderId> = last.records.iter().map(|r| r.order.id).collect();
    assert_eq!(got, ids[4..]);
    assert!(store
        .list(&u, 10, 2)
        .await
        .expect("list")
        .records
        .is_empty());
    assert_eq!(store.list(&user(), 0, 10).await.expect("list").total, 0);
}

/// Pruning forgets the record of events applied before the cut (so one
/// redelivered after it would apply again) and nothing newer; a limit of 0
/// forgets nothing.
pub async fn prune_forgets_old_event_records(store: &dyn OrderStore) {
    let o = order(&user(), None, T0_MS);
    let saga = place(store, &o).await;
    let event = hold_event(
        saga.inventory_order_id,
        Uuid::new_v4(),
        HoldStatus::Reserved,
    );
    let applied = HoldApplied::Applied {
        order_id: o.id,
        hands_to_saga: false,
    };
    assert_eq!(apply(store, &event).await.expect("apply"), applied);
    assert_eq!(store.prune(0, usize::MAX).await.expect("prune"), 0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let cut = now_ms + 3_600_000;
    assert_eq!(store.prune(cut, 0).await.expect("prune"), 0);
    assert_eq!(
        apply(store, &event).await.expect("apply"),
        HoldApplied::Duplicate
    );
    assert!(store.prune(cut, usize::MAX).await.expect("prune") >= 1);
    assert_eq!(
        apply(store, &event).await.expect("apply"),
        applied,
        "forgotten: applied again"
    );
}

/// Saga progress is saved while pending; finishing is atomic and happens once;
/// finished orders leave the pending list.
pub async fn saga_progress_and_finish(store: &dyn OrderStore) {
    let o = order(&user(), None, T0_MS);
    let mut saga = place(store, &o).await;
    let pending = store.pending(None, 100_000).await.expect("pending");
    assert!(pending.contains(&o.id));
    saga.step = SagaStep::Pay;
    saga.lines[0].reservation_id = Some(Uuid::new_v4());
    saga.lines[1].reservation_id = Some(Uuid::new_v4());
    store
        .save_saga(&saga, OWNER, T0_MS + 1)
        .await
        .expect("save");
    assert_eq!(
        store.get(o.id).await.expect("get").expect("stored").saga,
        saga
    );
    saga.step = SagaStep::Done;
    let status = OrderStatus::Cancelled(CancelReason::PaymentDeclined);
    assert!(store
        .finish(&saga, OWNER, status, T0_MS + 2, &done(&o, status))
        .await
        .expect("finish"));
    assert!(!store
        .finish(
            &saga,
            OWNER,
            OrderStatus::Confirmed,
            T0_MS + 3,
            &done(&o, OrderStatus::Confirmed)
        )
        .await
        .expect("finish"));
    let mut late = saga.clone();
    late.step = SagaStep::Confirm;
    store
        .save_saga(&late, OWNER, T0_MS + 4)
        .await
        .expect("save");
    let got = store.get(o.id).await.expect("get").expect("stored");
    assert_eq!(got.order.status, status);
    assert_eq!(got.order.updated_at_ms, T0_MS + 2);
    assert_eq!(got.saga, saga, "a finished saga does not change");
    let pending = store.pending(None, 100_000).await.expect("pending");
    assert!(!pending.contains(&o.id));
    let after: Vec<OrderId> = store.pending(Some(o.id), 100_000).await.expect("pending");
    assert!(after.iter().all(|id| *id > o.id), "pending pages by id");
}

/// Only pending orders take a cancel request.
pub async fn cancel_requests(store: &dyn OrderStore) {
    let o = order(&user(), None, T0_MS);
    let mut saga = place(store, &o).await;
    assert!(store.request_cancel(o.id, T0_MS + 1).await.expect("cancel"));
    let got = store.get(o.id).await.expect("get").expect("stored");
    assert!(got.cancel_requested);
    saga.step = SagaStep::Done;
    let status = OrderStatus::Cancelled(CancelReason::CancelledByUser);
    assert!(store
        .finish(&saga, OWNER, status, T0_MS + 2, &done(&o, status))
        .await
        .expect("finish"));
    assert!(!store.request_cancel(o.id, T0_MS + 3).await.expect("cancel"));
    assert!(!store
        .request_cancel(OrderId::generate(), T0_MS)
        .await
        .expect("cancel"));
}

/// A payment and a refund are recorded once per order.
pub async fn payments_and_refunds_are_recorded_once(store: &dyn OrderStore) {
    let o = order(&user(), None, T0_MS);
    place(store, &o).await;
    assert_eq!(store.money(o.id).await.expect("money"), (None, None));
    let payment = PaymentRecord {
        order_id: o.id,
        payment_id: "pay-1".into(),
        amount_minor: 1_300,
        currency: "EUR".into(),
        at_ms: T0_MS,
    };
    store.record_payment(&payment).await.expect("pay");
    store
        .record_payment(&PaymentRecord {
            payment_id: "pay-2".into(),
            ..payment.clone()
        })
        .await
        .expect("pay again");
    let refund = RefundRecord {
        order_id: o.id,
        refund_id: "ref-1".into(),
        payment_id: "pay-1".into(),
        amount_minor: 1_300,
        at_ms: T0_MS + 5,
    };
    store.record_refund(&refund).await.expect("refund");
    store.record_refund(&refund).await.expect("refund again");
    assert_eq!(
        store.money(o.id).await.expect("money"),
        (Some(payment), Some(refund))
    );
}

/// Products: create once, update, look up by id; seeding keeps existing ones.
pub async fn catalog(store: &dyn OrderStore) {
    let id = ProductId::from_uuid(Uuid::new_v4());
    let p = Product {
        id,
        name: "Lamp".into(),
        price_minor: 4_999,
        currency: "EUR".into(),
        active: true,
        updated_at_ms: T0_MS,
    };
    store.create_product(&p).await.expect("create");
    assert!(matches!(
        store.create_product(&p).await,
        Err(StoreError::ProductExists(_))
    ));
    let changed = Product {
        price_minor: 3_999,
        active: false,
        updated_at_ms: T0_MS + 1,
        ..p.clone()
    };
    assert!(store.update_product(&changed).await.expect("update"));
    let missing = Product {
        id: ProductId::from_uuid(Uuid::new_v4()),
        ..p.clone()
    };
    assert!(!store.update_product(&missing).await.expect("update"));
    store
        .seed_products(&[p.clone(), missing.clone()])
        .await
        .expect("seed");
    let found = store
        .products_by_id(&[id, missing.id, ProductId::from_uuid(Uuid::new_v4())])
        .await
        .expect("by id");
    assert_eq!(found.len(), 2);
    assert!(found.contains(&changed), "seeding does not overwrite");
    assert!(found.contains(&missing));
    let all = store.products().await.expect("all");
    assert!(all.contains(&changed));
    store.ping().await.expect("ping");
}

/// A saga write needs the claim: once another owner took the saga over (the
/// first one's lease ran out while a step was still running), the first
/// owner's save and finish are refused and change nothing; the new owner's
/// go through.
pub async fn saga_writes_are_fenced_by_the_claim(store: &dyn OrderStore) {
    let o = order(&user(), None, T0_MS);
    let placed = place(store, &o).await;
    let next = Uuid::new_v4();
    let taken = store.claim(o.id, next, T0_MS + LEASE_MS, LEASE_MS).await;
    assert!(taken.expect("claim"), "the lease ran out: taken over");
    let mut stale = placed.clone();
    stale.step = SagaStep::Confirm;
    let saved = store.save_saga(&stale, OWNER, T0_MS + LEASE_MS + 1).await;
    assert!(
        matches!(saved, Err(StoreError::LeaseLost(id)) if id == o.id),
        "{saved:?}"
    );
    let status = OrderStatus::Confirmed;
    let finished = store
        .finish(
            &stale,
            OWNER,
            status,
            T0_MS + LEASE_MS + 2,
            &done(&o, status),
        )
        .await;
    assert!(
        matches!(finished, Err(StoreError::LeaseLost(_))),
        "{finished:?}"
    );
    let got = store.get(o.id).await.expect("get").expect("stored");
    assert_eq!(
        (got.order.status, &got.saga),
        (OrderStatus::Pending, &placed)
    );
    let mut current = placed.clone();
    current.step = SagaStep::Pay;
    store
        .save_saga(&current, next, T0_MS + LEASE_MS + 3)
        .await
        .expect("the holder saves");
    let got = store.get(o.id).await.expect("get").expect("stored");
    assert_eq!(got.saga, current);
    let status = OrderStatus::Cancelled(CancelReason::CancelledByUser);
    let event = done(&o, status);
    let finished = store.finish(&current, next, status, T0_MS + LEASE_MS + 4, &event);
    assert!(finished.await.expect("the holder finishes"));
    let late = store.save_saga(&stale, OWNER, T0_MS + LEASE_MS + 5).await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost(_))),
        "a stale owner learns it lost the saga: {late:?}"
    );
}

/// A saga claim belongs to one owner until its lease runs out; the owner
/// renews it; giving it up frees it at once.
pub async fn claims_are_exclusive_leases(store: &dyn OrderStore) {
    let o = order(&user(), None, T0_MS);
    place(store, &o).await;
    store.unclaim(&[o.id], OWNER).await.expect("unclaim");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    assert!(store.claim(o.id, a, T0_MS, 1_000).await.expect("claim"));
    assert!(!store
        .claim(o.id, b, T0_MS + 999, 1_000)
        .await
        .expect("claim"));
    assert!(store
        .claim(o.id, a, T0_MS + 500, 1_000)
        .await
        .expect("renew"));
    assert!(!store
        .claim(o.id, b, T0_MS + 1_499, 1_000)
        .await
        .expect("claim"));
    assert!(store
        .claim(o.id, b, T0_MS + 1_500, 1_000)
        .await
        .expect("take over"));
    store.unclaim(&[o.id], a).await.expect("unclaim other's");
    assert!(!store
        .claim(o.id, a, T0_MS + 1_600, 1_000)
        .await
        .expect("claim"));
    store.unclaim(&[o.id], b).await.expect("unclaim");
    assert!(store
        .claim(o.id, a, T0_MS + 1_600, 1_000)
        .await
        .expect("claim freed"));
    assert!(!store
        .claim(OrderId::generate(), a, T0_MS, 1_000)
        .await
        .expect("claim unknown"));
}
