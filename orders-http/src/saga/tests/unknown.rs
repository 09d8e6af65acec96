//! Calls whose outcome is unknown (the change was made, the answer lost), and
//! the undo that follows them: against a small model of inventory that keeps
//! reservations, and a payment provider that charges but loses the answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::Rng;
use uuid::Uuid;

use super::{final_status, place, rig, rig_paying, take_one, SagaConfig};
use crate::clock::{Clock, ManualClock};
use crate::domain::{CancelReason, OrderId, OrderStatus};
use crate::inventory::{InventoryApi, InventoryError, ReservedLine};
use crate::payment::{ChargeRequest, PaymentError, PaymentProvider, PaymentSimulator};
use crate::store::{BoxFuture, HoldStatus, OrderStore};

#[derive(Default)]
pub(super) struct Held {
    /// `(inventory order, product)` -> reservation.
    by_line: HashMap<(Uuid, Uuid), Uuid>,
    /// Reservation -> (product, units, status).
    pub(super) reservations: HashMap<Uuid, (Uuid, u32, HoldStatus)>,
    released: Vec<Uuid>,
    /// Keyed restocks, each key once: (product, units).
    pub(super) restocked: HashMap<String, (Uuid, u32)>,
    /// Units not held, per product; a product not listed has no limit.
    pub(super) stock: HashMap<Uuid, u64>,
    /// When each hold ends (ms), when holds have an end.
    ends: HashMap<Uuid, i64>,
    /// The correlation id of the reserve that made each hold.
    pub(super) made_by: HashMap<Uuid, String>,
}

/// Faults of a chaotic service: per call, fail before acting, or act and
/// lose the answer.
pub(super) struct Chaos {
    pub(super) rng: StdRng,
    pub(super) fail: f64,
    pub(super) lose: f64,
}

impl Chaos {
    /// Whether the next call fails before acting, and whether it loses its
    /// answer; never either without chaos.
    pub(super) fn draw(chaos: &Mutex<Option<Chaos>>) -> (bool, bool) {
        let mut chaos = chaos.lock();
        let Some(c) = chaos.as_mut() else {
            return (false, false);
        };
        let roll: f64 = c.rng.random();
        (roll < c.fail, roll >= c.fail && roll < c.fail + c.lose)
    }
}

/// Inventory as a map of reservations; it can make a reserve or a confirm
/// and then lose the answer (the caller sees a timeout). With stock, holds
/// need units; with a clock, holds end after their TTL; with chaos, any
/// call may fail or lose its answer.
#[derive(Default)]
pub(super) struct ModelInventory {
    pub(super) held: Mutex<Held>,
    lose_reserve_answers: AtomicU32,
    lose_confirm_answers: AtomicU32,
    reserve_calls: AtomicU32,
    confirm_calls: AtomicU32,
    pub(super) chaos: Mutex<Option<Chaos>>,
    pub(super) clock: Option<Arc<ManualClock>>,
    /// Time each call takes (tokio time), so other calls interleave.
    pub(super) latency: Duration,
}

fn lost() -> InventoryError {
    InventoryError::Unavailable("timed out".into())
}

/// Moves a held reservation to `to`, giving its units back to stock.
fn give_back(held: &mut Held, rid: Uuid, to: HoldStatus) {
    let r = held.reservations.get_mut(&rid).expect("known hold");
    r.2 = to;
    let (product, units) = (r.0, u64::from(r.1));
    if let Some(stock) = held.stock.get_mut(&product) {
        *stock += units;
    }
}

impl ModelInventory {
    /// Whether this call fails before acting, and whether it loses its
    /// answer (after the call's latency).
    async fn draw(&self) -> (bool, bool) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Chaos::draw(&self.chaos)
    }

    fn now_ms(&self) -> Option<i64> {
        self.clock.as_ref().map(|c| c.now_ms())
    }

    /// Ends every hold whose time is up, giving its units back.
    pub(super) fn sweep(&self) {
        let Some(now) = self.now_ms() else { return };
        let mut held = self.held.lock();
        let due: Vec<Uuid> = held
            .ends
            .iter()
            .filter(|(rid, end)| **end <= now && held.reservations[*rid].2 == HoldStatus::Reserved)
            .map(|(rid, _)| *rid)
            .collect();
        for rid in due {
            give_back(&mut held, rid, HoldStatus::Expired);
        }
    }

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
        ttl_seconds: Option<u64>,
        correlation: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ReservedLine>, InventoryError>> {
        Box::pin(async move {
            self.reserve_calls.fetch_add(1, Ordering::SeqCst);
            let (fail, lose) = self.draw().await;
            if fail {
                return Err(lost());
            }
            let now = self.now_ms();
            let mut held = self.held.lock();
            let new: Vec<(Uuid, u32)> = lines
                .iter()
                .filter(|(p, _)| !held.by_line.contains_key(&(inventory_order_id, *p)))
                .copied()
                .collect();
            let short = new.iter().any(|(p, units)| {
                held.stock
                    .get(p)
                    .is_some_and(|stock| *stock < u64::from(*units))
            });
            if short {
                return Err(InventoryError::InsufficientStock);
            }
            let mut out = Vec::new();
            for &(product_id, units) in lines {
                let fresh = !held.by_line.contains_key(&(inventory_order_id, product_id));
                let rid = *held
                    .by_line
                    .entry((inventory_order_id, product_id))
                    .or_insert_with(Uuid::new_v4);
                if fresh {
                    held.reservations
                        .insert(rid, (product_id, units, HoldStatus::Reserved));
                    if let Some(stock) = held.stock.get_mut(&product_id) {
                        *stock -= u64::from(units);
                    }
                    if let (Some(now), Some(ttl)) = (now, ttl_seconds) {
                        held.ends.insert(rid, now + ttl as i64 * 1_000);
                    }
                    held.made_by.insert(rid, correlation.to_owned());
                }
                out.push(ReservedLine {
                    product_id,
                    reservation_id: rid,
                });
            }
            if lose || take_one(&self.lose_reserve_answers) {
                return Err(lost());
            }
            Ok(out)
        })
    }

    fn confirm<'a>(&'a self, id: Uuid, _c: &'a str) -> BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(async move {
            self.confirm_calls.fetch_add(1, Ordering::SeqCst);
            let (fail, lose) = self.draw().await;
            if fail {
                return Err(lost());
            }
            let now = self.now_ms();
            let mut held = self.held.lock();
            let ended = now.is_some_and(|now| held.ends.get(&id).is_some_and(|end| *end <= now));
            let Some(r) = held.reservations.get_mut(&id) else {
                return Err(InventoryError::NotFound("reservation_not_found".into()));
            };
            match r.2 {
                HoldStatus::Reserved if ended => {
                    give_back(&mut held, id, HoldStatus::Expired);
                    return Err(InventoryError::Expired);
                }
                HoldStatus::Reserved | HoldStatus::Confirmed => r.2 = HoldStatus::Confirmed,
                HoldStatus::Expired => return Err(InventoryError::Expired),
                HoldStatus::Released => {
                    return Err(InventoryError::Conflict("invalid_transition".into()))
                }
            }
            if lose || take_one(&self.lose_confirm_answers) {
                return Err(lost());
            }
            Ok(())
        })
    }

    fn release<'a>(&'a self, id: Uuid, _c: &'a str) -> BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(async move {
            let (fail, lose) = self.draw().await;
            if fail {
                return Err(lost());
            }
            let mut held = self.held.lock();
            let Some(r) = held.reservations.get_mut(&id) else {
                return Err(InventoryError::NotFound("reservation_not_found".into()));
            };
            match r.2 {
                HoldStatus::Reserved => give_back(&mut held, id, HoldStatus::Released),
                HoldStatus::Released => return Ok(()),
                HoldStatus::Expired => return Err(InventoryError::Expired),
                HoldStatus::Confirmed => {
                    return Err(InventoryError::Conflict("invalid_transition".into()))
                }
            }
            held.released.push(id);
            if lose {
                return Err(lost());
            }
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
            let (fail, lose) = self.draw().await;
            if fail {
                return Err(lost());
            }
            let mut held = self.held.lock();
            if !held.restocked.contains_key(key) {
                held.restocked
                    .insert(key.to_owned(), (product_id, quantity));
                if let Some(stock) = held.stock.get_mut(&product_id) {
                    *stock += u64::from(quantity);
                }
            }
            if lose {
                return Err(lost());
            }
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
