//! Calls whose outcome is unknown (the change was made, the answer lost), and
//! the undo that follows them: against a small model of inventory that keeps
//! reservations, and a payment provider that charges but loses the answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use uuid::Uuid;

use super::{final_status, place, rig, rig_paying, take_one, SagaConfig};
use crate::domain::{CancelReason, OrderId, OrderStatus};
use crate::inventory::{InventoryApi, InventoryError, ReservedLine};
use crate::payment::{ChargeRequest, PaymentError, PaymentProvider, PaymentSimulator};
use crate::store::{BoxFuture, HoldStatus, OrderStore};

#[derive(Default)]
struct Held {
    /// `(inventory order, product)` -> reservation.
    by_line: HashMap<(Uuid, Uuid), Uuid>,
    /// Reservation -> (product, units, status).
    reservations: HashMap<Uuid, (Uuid, u32, HoldStatus)>,
    released: Vec<Uuid>,
    /// Keyed restocks, each key once: (product, units).
    restocked: HashMap<String, (Uuid, u32)>,
}

/// Inventory as a map of reservations; it can make a reserve or a confirm
/// and then lose the answer (the caller sees a timeout).
#[derive(Default)]
struct ModelInventory {
    held: Mutex<Held>,
    lose_reserve_answers: AtomicU32,
    lose_confirm_answers: AtomicU32,
    reserve_calls: AtomicU32,
    confirm_calls: AtomicU32,
}

fn lost() -> InventoryError {
    InventoryError::Unavailable("timed out".into())
}

impl ModelInventory {
    fn status(&self, rid: Uuid) -> Option<HoldStatus> {
        self.held.lock().reservations.get(&rid).map(|r| r.2)
    }

    fn restocked(&self) -> Vec<(Uuid, u32)> {
        self.held.lock().restocked.values().copied().collect()
    }
}

impl InventoryApi for ModelInventory {
    fn reserve<'a>(
        &'a self,
        inventory_order_id: Uuid,
        lines: &'a [(Uuid, u32)],
        _ttl_seconds: Option<u64>,
        _correlation: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ReservedLine>, InventoryError>> {
        Box::pin(async move {
            self.reserve_calls.fetch_add(1, Ordering::SeqCst);
            let mut held = self.held.lock();
            let mut out = Vec::new();
            for &(product_id, units) in lines {
                let rid = *held
                    .by_line
                    .entry((inventory_order_id, product_id))
                    .or_insert_with(Uuid::new_v4);
                held.reservations
                    .entry(rid)
                    .or_insert((product_id, units, HoldStatus::Reserved));
                out.push(ReservedLine {
                    product_id,
                    reservation_id: rid,
                });
            }
            if take_one(&self.lose_reserve_answers) {
                return Err(lost());
            }
            Ok(out)
        })
    }

    fn confirm<'a>(&'a self, id: Uuid, _c: &'a str) -> BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(async move {
            self.confirm_calls.fetch_add(1, Ordering::SeqCst);
            let mut held = self.held.lock();
            let Some(r) = held.reservations.get_mut(&id) else {
                return Err(InventoryError::NotFound("reservation_not_found".into()));
            };
            match r.2 {
                HoldStatus::Reserved | HoldStatus::Confirmed => r.2 = HoldStatus::Confirmed,
                HoldStatus::Expired => return Err(InventoryError::Expired),
                HoldStatus::Released => {
                    return Err(InventoryError::Conflict("invalid_transition".into()))
                }
            }
            if take_one(&self.lose_confirm_answers) {
                return Err(lost());
            }
            Ok(())
        })
    }

    fn release<'a>(&'a self, id: Uuid, _c: &'a str) -> BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(async move {
            let mut held = self.held.lock();
            let Some(r) = held.reservations.get_mut(&id) else {
                return Err(InventoryError::NotFound("reservation_not_found".into()));
            };
            match r.2 {
                HoldStatus::Reserved => r.2 = HoldStatus::Released,
                HoldStatus::Released => return Ok(()),
                HoldStatus::Expired => return Err(InventoryError::Expired),
                HoldStatus::Confirmed => {
                    return Err(InventoryError::Conflict("invalid_transition".into()))
                }
            }
            held.released.push(id);
            Ok(())
        })
    }

    fn reservation_status<'a>(
        &'a self,
        id: Uuid,
        _c: &'a str,
    ) -> BoxFuture<'a, Result<HoldStatus, InventoryError>> {
        Box::pin(async move {
            self.status(id)
                .ok_or_else(|| InventoryError::NotFound("reservation_not_found".into()))
        })
    }

    fn restock<'a>(
        &'a self,
        product_id: Uuid,
        quantity: u32,
        key: &'a str,
        _c: &'a str,
    ) -> BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(async move {
            let mut held = self.held.lock();
            held.restocked
                .entry(key.to_owned())
                .or_insert((product_id, quantity));
            Ok(())
        })
    }
}

/// Charges (through the simulator) and then loses every answer.
struct ChargesThenTimesOut(PaymentSimulator);

impl PaymentProvider for ChargesThenTimesOut {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<String, PaymentError>> {
        Box::pin(async move {
            let _ = self.0.charge(request).await;
            Err(PaymentError::Transient("timed out".into()))
        })
    }

    fn charge_of(&self, order_id: OrderId) -> BoxFuture<'_, Result<Option<String>, PaymentError>> {
        self.0.charge_of(order_id)
    }

    fn refund(
        &self,
        order_id: OrderId,
        payment_id: String,
        amount_minor: i64,
    ) -> BoxFuture<'_, Result<String, PaymentError>> {
        self.0.refund(order_id, payment_id, amount_minor)
    }
}

/// Waits (in paused time) until `done` holds.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never met");
}

/// The provider charged but the answer was lost, and the deadline cancels
/// the order: the saga asks the provider what it charged and refunds it
/// (an order is never cancelled while money for it may be held).
#[tokio::test(start_paused = true)]
async fn a_charge_whose_answer_was_lost_is_refunded() {
    let inventory = Arc::new(ModelInventory::default());
    let payments = Arc::new(ChargesThenTimesOut(PaymentSimulator::new(
        Default::default(),
    )));
    let r = rig_paying(inventory.clone(), payments.clone(), SagaConfig::default());
    let id = place(&r, 60_000).await;
    until(|| payments.0.charged() == 1).await;
    r.clock.advance(Duration::from_secs(61));
    let status = final_status(&r, id).await;
    assert_eq!(
        status,
        OrderStatus::Cancelled(CancelReason::PaymentDeclined)
    );
    assert_eq!(payments.0.refunded(), 1, "the lost charge is refunded");
    let money = r.store.money(id).await.expect("money");
    assert!(money.0.is_some() && money.1.is_some(), "{money:?}");
    assert_eq!(
        inventory.held.lock().released.len(),
        2,
        "both holds given back"
    );
}

/// A confirm made in inventory whose answer was lost: the pending deadline
/// does not cancel the paid order; once inventory answers again, the
/// repeated confirm settles it and the order is confirmed.
#[tokio::test(start_paused = true)]
async fn a_lost_confirm_answer_is_not_cancelled_by_the_deadline() {
    let inventory = Arc::new(ModelInventory::default());
    inventory
        .lose_confirm_answers
        .store(u32::MAX, Ordering::SeqCst);
    let r = rig(inventory.clone(), SagaConfig::default());
    let id = place(&r, 60_000).await;
    until(|| inventory.confirm_calls.load(Ordering::SeqCst) > 0).await;
    r.clock.advance(Duration::from_secs(61));
    let calls = inventory.confirm_calls.load(Ordering::SeqCst);
    until(|| inventory.confirm_calls.load(Ordering::SeqCst) > calls + 10).await;
    let record = r.store.get(id).await.expect("get").expect("stored");
    assert_eq!(record.order.status, OrderStatus::Pending, "still waiting");
    inventory.lose_confirm_answers.store(0, Ordering::SeqCst);
    assert_eq!(final_status(&r, id).await, OrderStatus::Confirmed);
    assert!(inventory.restocked().is_empty());
}

/// The customer cancels after a confirm was made but its answer lost: the
/// release of that hold is refused, inventory is asked, the hold is found
/// sold, and its units are returned to stock (once) besides the refund; the
/// other hold is released.
#[tokio::test(start_paused = true)]
async fn a_cancel_after_a_lost_confirm_returns_the_sold_units() {
    let inventory = Arc::new(ModelInventory::default());
    inventory
        .lose_confirm_answers
        .store(u32::MAX, Ordering::SeqCst);
    let payments = Arc::new(PaymentSimulator::new(Default::default()));
    let r = rig_paying(inventory.clone(), payments.clone(), SagaConfig::default());
    let id = place(&r, 60_000).await;
    until(|| inventory.confirm_calls.load(Ordering::SeqCst) > 0).await;
    r.engine.cancel(id).await.expect("cancel");
    let status = final_status(&r, id).await;
    assert_eq!(
        status,
        OrderStatus::Cancelled(CancelReason::CancelledByUser)
    );
    assert_eq!(payments.refunded(), 1);
    let saga = r.store.get(id).await.expect("get").expect("stored").saga;
    let sold = &saga.lines[0];
    assert!(sold.confirmed, "the lost confirm is known now");
    assert_eq!(
        inventory.restocked(),
        vec![(sold.product_id.as_uuid(), sold.quantity)],
        "the sold units go back, once"
    );
    let other = saga.lines[1].reservation_id.expect("held");
    assert_eq!(inventory.status(other), Some(HoldStatus::Released));
}

/// The customer cancels while a reserve's answer was lost (the stock is
/// held under ids the saga never saw): the undo repeats the idempotent
/// reserve to learn the ids and releases both holds at once, rather than
/// leaving them to their TTL.
#[tokio::test(start_paused = true)]
async fn a_cancel_after_a_lost_reserve_releases_its_holds() {
    let inventory = Arc::new(ModelInventory::default());
    inventory.lose_reserve_answers.store(1, Ordering::SeqCst);
    let config = SagaConfig {
        retries_max: 0,
        ..SagaConfig::default()
    };
    let r = rig(inventory.clone(), config);
    let id = place(&r, 60_000).await;
    until(|| inventory.reserve_calls.load(Ordering::SeqCst) > 0).await;
    r.engine.cancel(id).await.expect("cancel");
    let status = final_status(&r, id).await;
    assert_eq!(
        status,
        OrderStatus::Cancelled(CancelReason::CancelledByUser)
    );
    let held = inventory.held.lock();
    assert_eq!(held.reservations.len(), 2);
    assert!(
        held.reservations
            .values()
            .all(|r| r.2 == HoldStatus::Released),
        "every hold released"
    );
}

/// A provider whose charges time out at first and land later (a slow
/// provider still working on a call the saga gave up waiting for).
struct LandsLate {
    sim: PaymentSimulator,
    sent: AtomicU32,
}

impl PaymentProvider for LandsLate {
    fn charge(&self, _request: ChargeRequest) -> BoxFuture<'_, Result<String, PaymentError>> {
        Box::pin(async move {
            self.sent.fetch_add(1, Ordering::SeqCst);
            Err(PaymentError::Transient("timed out".into()))
        })
    }

    fn charge_of(&self, order_id: OrderId) -> BoxFuture<'_, Result<Option<String>, PaymentError>> {
        self.sim.charge_of(order_id)
    }

    fn refund(
        &self,
        order_id: OrderId,
        payment_id: String,
        amount_minor: i64,
    ) -> BoxFuture<'_, Result<String, PaymentError>> {
        self.sim.refund(order_id, payment_id, amount_minor)
    }
}

/// The deadline cancels an order whose charges timed out; the provider says
/// nothing was charged, but a charge sent lately may still land, so the undo
/// waits; when the charge lands it is found and refunded.
#[tokio::test(start_paused = true)]
async fn a_charge_landing_after_the_deadline_is_refunded() {
    let inventory = Arc::new(ModelInventory::default());
    let payments = Arc::new(LandsLate {
        sim: PaymentSimulator::new(Default::default()),
        sent: AtomicU32::new(0),
    });
    let r = rig_paying(inventory.clone(), payments.clone(), SagaConfig::default());
    let id = place(&r, 60_000).await;
    until(|| payments.sent.load(Ordering::SeqCst) > 0).await;
    r.clock.advance(Duration::from_secs(61));
    let sent = payments.sent.load(Ordering::SeqCst);
    until(|| payments.sent.load(Ordering::SeqCst) > sent).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let record = r.store.get(id).await.expect("get").expect("stored");
    assert_eq!(
        record.order.status,
        OrderStatus::Pending,
        "waits for a late charge"
    );
    let late = ChargeRequest {
        order_id: id,
        amount_minor: 200,
        currency: "EUR".into(),
    };
    payments
        .sim
        .charge(late)
        .await
        .expect("the late charge lands");
    let status = final_status(&r, id).await;
    assert_eq!(
        status,
        OrderStatus::Cancelled(CancelReason::PaymentDeclined)
    );
    assert_eq!(payments.sim.refunded(), 1, "the late charge is refunded");
}
