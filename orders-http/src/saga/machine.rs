//! The saga's decisions as pure functions, with no I/O and no clock:
//! [`decide`] says what a saga in a given state does next (one call to
//! another service, a transition to save, the final status, or wait), and
//! [`apply`] folds the call's outcome back into the state. The engine
//! ([`super::SagaEngine`]) performs what is decided, with retries, and saves
//! the state after every change, so a crash between any two steps resumes
//! from what was saved.

use uuid::Uuid;

use crate::domain::{CancelReason, OrderStatus};
use crate::inventory::{InventoryError, ReservedLine};
use crate::payment::PaymentError;
use crate::saga::state::{SagaState, SagaStep};
use crate::store::HoldStatus;

/// What the saga sees besides its own state when it decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// Now (ms).
    pub now_ms: i64,
    /// The customer asked to cancel.
    pub cancel_requested: bool,
    /// Reservations inventory's events reported given back (released or
    /// expired).
    pub lost: Vec<Uuid>,
    /// Reservation attempts allowed in all.
    pub reserve_attempts_max: u32,
    /// After this instant (ms) a compensation stops waiting for releases of
    /// holds no confirm was sent for (they end at their TTL).
    pub give_up_ms: i64,
    /// How long after the last charge call "nothing charged" is believed (ms).
    pub payment_settle_ms: i64,
}

/// A call to another service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Reserve these lines under the state's inventory order id.
    Reserve(Vec<(Uuid, u32)>),
    /// The same reserve again during an undo, to learn what it held.
    LearnHolds(Vec<(Uuid, u32)>),
    /// Charge the order.
    Charge,
    /// Confirm one reservation.
    Confirm(Uuid),
    /// Release one reservation.
    Release(Uuid),
    /// Read where one reservation stands (after a refused release).
    ReadHold(Uuid),
    /// Ask the provider what was charged for the order.
    LookupCharge,
    /// Refund this payment.
    Refund(String),
    /// Return `units` of `product` (sold under `reservation`) to stock, once
    /// per `key`.
    Restock {
        /// The sold reservation.
        reservation: Uuid,
        /// The product.
        product: Uuid,
        /// Units.
        units: u32,
        /// Idempotency key.
        key: String,
    },
}

/// What the saga does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Make this call, then [`apply`] its outcome.
    Call(Call),
    /// Save this state (a transition without a call).
    Become(SagaState),
    /// Finish the order with this status.
    Finish(OrderStatus),
    /// Wait (a park interval, or until woken) and decide again.
    Wait,
    /// Nothing left to do.
    Done,
}

/// The outcome of a [`Call`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Of [`Call::Reserve`] or [`Call::LearnHolds`].
    Reserved(Result<Vec<ReservedLine>, InventoryError>),
    /// Of [`Call::Charge`].
    Charged(Result<String, PaymentError>),
    /// Of [`Call::Confirm`], [`Call::Release`] or [`Call::Restock`].
    Done(Result<(), InventoryError>),
    /// Of [`Call::ReadHold`].
    Hold(Result<HoldStatus, InventoryError>),
    /// Of [`Call::LookupCharge`].
    Lookup(Result<Option<String>, PaymentError>),
    /// Of [`Call::Refund`].
    Refunded(Result<String, PaymentError>),
}

/// What [`apply`] leaves the engine to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Save the state.
    pub save: bool,
    /// Wait before deciding again.
    pub wait: bool,
    /// Record this payment id (before saving).
    pub record_payment: Option<String>,
    /// Record this refund id (before saving).
    pub record_refund: Option<String>,
}

impl Applied {
    fn saved() -> Self {
        Self {
            save: true,
            ..Self::default()
        }
    }

    fn waiting(save: bool) -> Self {
        Self {
            save,
            wait: true,
            ..Self::default()
        }
    }
}

/// What a saga in `state` does next.
pub fn decide(state: &SagaState, view: &View) -> Decision {
    let cancellable = match state.step {
        SagaStep::Reserve | SagaStep::Pay => true,
        SagaStep::Confirm => state.lines.iter().all(|l| !l.confirmed),
        _ => false,
    };
    if view.cancel_requested && cancellable {
        return become_with(state, |s| {
            s.settling = false;
            s.step = SagaStep::Compensate {
                reason: CancelReason::CancelledByUser,
            };
        });
    }
    let relies_on_lost = state
        .held_unconfirmed()
        .iter()
        .any(|rid| view.lost.contains(rid));
    if matches!(state.step, SagaStep::Pay | SagaStep::Confirm) && !state.settling && relies_on_lost
    {
        return become_with(state, |s| s.settling = true);
    }
    if state.settling {
        return settle_then_retry(state, view);
    }
    match state.step {
        SagaStep::Reserve => Decision::Call(Call::Reserve(state.unconfirmed_lines())),
        SagaStep::Pay => Decision::Call(Call::Charge),
        SagaStep::Confirm => match state.lines.iter().find(|l| !l.confirmed) {
            None => Decision::Finish(OrderStatus::Confirmed),
            Some(line) => match line.reservation_id {
                Some(rid) => Decision::Call(Call::Confirm(rid)),
                // A line to confirm without a hold: as if the hold were lost.
                None => become_with(state, |s| s.settling = true),
            },
        },
        SagaStep::Compensate { reason } => compensate(state, view, reason),
        SagaStep::Done => Decision::Done,
    }
}

fn become_with(state: &SagaState, change: impl FnOnce(&mut SagaState)) -> Decision {
    let mut next = state.clone();
    change(&mut next);
    Decision::Become(next)
}

/// The next hold to settle (release, or read after a refused release).
fn next_to_settle(state: &SagaState) -> Option<(usize, Call)> {
    state.lines.iter().enumerate().find_map(|(i, l)| {
        let rid = l.reservation_id.filter(|_| !l.confirmed && !l.settled)?;
        Some((
            i,
            if l.refused {
                Call::ReadHold(rid)
            } else {
                Call::Release(rid)
            },
        ))
    })
}

/// A hold the saga relied on is gone: settle the attempt's other holds, then
/// reserve again under a fresh inventory order id while attempts remain,
/// else undo as `reservation_expired`.
fn settle_then_retry(state: &SagaState, view: &View) -> Decision {
    if let Some((_, call)) = next_to_settle(state) {
        return Decision::Call(call);
    }
    become_with(state, |s| {
        s.settling = false;
        if s.lines.iter().all(|l| l.confirmed) {
            // Every line turned out sold: nothing is left to hold.
            s.step = SagaStep::Confirm;
        } else if s.reserve_attempts < view.reserve_attempts_max {
            s.next_reserve_attempt();
        } else {
            s.step = SagaStep::Compensate {
                reason: CancelReason::ReservationExpired,
            };
        }
    })
}

/// Money first (a refund needs only the payment provider), then inventory:
/// learn what a lost reserve held, settle every hold, return sold units,
/// then cancel.
fn compensate(state: &SagaState, _view: &View, reason: CancelReason) -> Decision {
    if state.payment_id.is_none() && state.charge_attempted && !state.charge_checked {
        return Decision::Call(Call::LookupCharge);
    }
    if let (Some(payment_id), None) = (&state.payment_id, &state.refund_id) {
        return Decision::Call(Call::Refund(payment_id.clone()));
    }
    let unknown = state.unknown_lines();
    if !state.reserve_settled && !unknown.is_empty() {
        return Decision::Call(Call::LearnHolds(unknown));
    }
    if let Some((_, call)) = next_to_settle(state) {
        return Decision::Call(call);
    }
    let to_return = state
        .lines
        .iter()
        .find(|l| l.confirmed && !l.returned && l.reservation_id.is_some());
    if let Some(line) = to_return {
        let rid = line.reservation_id.expect("filtered");
        return Decision::Call(Call::Restock {
            reservation: rid,
            product: line.product_id.as_uuid(),
            units: line.quantity,
            key: format!("order-{}-{rid}", state.order_id),
        });
    }
    Decision::Finish(OrderStatus::Cancelled(reason))
}

/// Prepares `state` for `call` before it is made; true when that must be
/// saved first (the time a charge is sent, so an undo waits for it).
pub fn prepare(state: &mut SagaState, call: &Call, now_ms: i64) -> bool {
    if *call == Call::Charge {
        state.charge_sent_ms = Some(now_ms);
        return true;
    }
    false
}

/// Folds the outcome of `call` into `state`.
pub fn apply(state: &mut SagaState, view: &View, call: &Call, outcome: Outcome) -> Applied {
    let past_deadline = view.now_ms >= state.deadline_ms;
    match (call, outcome) {
        (Call::Reserve(_), Outcome::Reserved(result)) => reserved(state, result, past_deadline),
        (Call::LearnHolds(_), Outcome::Reserved(result)) => {
            if let Ok(held) = result {
                state.hold(&held);
            }
            // Unreachable or refused: any holds end at their TTL (no confirm
            // was sent for them), rather than keep the customer waiting.
            state.reserve_settled = true;
            Applied::saved()
        }
        (Call::Charge, Outcome::Charged(result)) => charged(state, result, view, past_deadline),
        (Call::Confirm(rid), Outcome::Done(result)) => match result {
            Ok(()) => {
                mark(state, *rid, |l| l.confirmed = true);
                Applied::saved()
            }
            // Only inventory's answer settles a confirm: ask again, however
            // long that takes; the deadline does not cancel at Confirm.
            Err(e) if e.is_transient() => Applied::waiting(false),
            Err(_) => {
                state.settling = true;
                Applied::saved()
            }
        },
        (Call::Release(rid), Outcome::Done(result)) => match result {
            Ok(()) => {
                mark(state, *rid, |l| l.settled = true);
                Applied::saved()
            }
            Err(e) if e.is_transient() => unreachable_hold(state, *rid, view),
            // Never taken as given back: read where the hold stands.
            Err(_) => {
                mark(state, *rid, |l| l.refused = true);
                Applied::saved()
            }
        },
        (Call::ReadHold(rid), Outcome::Hold(result)) => match result {
            Ok(HoldStatus::Confirmed) => {
                mark(state, *rid, |l| {
                    l.confirmed = true;
                    l.settled = true;
                });
                Applied::saved()
            }
            Ok(HoldStatus::Released | HoldStatus::Expired) | Err(InventoryError::NotFound(_)) => {
                mark(state, *rid, |l| l.settled = true);
                Applied::saved()
            }
            Ok(HoldStatus::Reserved) | Err(_) => unreachable_hold(state, *rid, view),
        },
        (Call::LookupCharge, Outcome::Lookup(result)) => match result {
            Ok(Some(payment_id)) => {
                state.payment_id = Some(payment_id.clone());
                Applied {
                    save: true,
                    record_payment: Some(payment_id),
                    ..Applied::default()
                }
            }
            Ok(None) => {
                let settled_ms = state
                    .charge_sent_ms
                    .map_or(i64::MIN, |sent| sent.saturating_add(view.payment_settle_ms));
                if view.now_ms < settled_ms {
                    // A charge sent lately may still land.
                    return Applied::waiting(false);
                }
                state.charge_checked = true;
                Applied::saved()
            }
            Err(_) => Applied::waiting(false),
        },
        (Call::Refund(_), Outcome::Refunded(result)) => match result {
            Ok(refund_id) => {
                state.refund_id = Some(refund_id.clone());
                Applied {
                    save: true,
                    record_refund: Some(refund_id),
                    ..Applied::default()
                }
            }
            Err(_) => Applied::waiting(false),
        },
        (Call::Restock { .. }, Outcome::Done(Err(e))) if e.is_transient() => {
            Applied::waiting(false)
        }
        (Call::Restock { reservation, .. }, Outcome::Done(_)) => {
            // Done, or refused for good (logged by the engine): not retried.
            mark(state, *reservation, |l| l.returned = true);
            Applied::saved()
        }
        (call, outcome) => unreachable!("{outcome:?} is not an outcome of {call:?}"),
    }
}

fn mark(state: &mut SagaState, rid: Uuid, change: impl FnOnce(&mut crate::saga::HeldLine)) {
    if let Some(line) = state
        .lines
        .iter_mut()
        .find(|l| l.reservation_id == Some(rid))
    {
        change(line);
    }
}

/// A release or read that inventory did not answer: a hold no confirm was
/// sent for is left to its TTL once the undo gives up waiting; any other
/// waits for inventory.
fn unreachable_hold(state: &mut SagaState, rid: Uuid, view: &View) -> Applied {
    let compensating = matches!(state.step, SagaStep::Compensate { .. }) && !state.settling;
    if compensating && !state.confirm_attempted && view.now_ms >= view.give_up_ms {
        mark(state, rid, |l| l.settled = true);
        return Applied::saved();
    }
    Applied::waiting(false)
}

fn reserved(
    state: &mut SagaState,
    result: Result<Vec<ReservedLine>, InventoryError>,
    past_deadline: bool,
) -> Applied {
    let paid = state.payment_id.is_some();
    match result {
        Ok(held) => {
            state.reserve_settled = true;
            state.hold(&held);
            if state
                .lines
                .iter()
                .any(|l| !l.confirmed && l.reservation_id.is_none())
            {
                state.step = SagaStep::Compensate {
                    reason: CancelReason::OutOfStock,
                };
            } else {
                state.enter(if paid {
                    SagaStep::Confirm
                } else {
                    SagaStep::Pay
                });
            }
            Applied::saved()
        }
        Err(e) if e.is_transient() && !past_deadline => Applied::waiting(false),
        Err(e) if e.is_transient() => {
            state.step = SagaStep::Compensate {
                reason: CancelReason::InventoryUnavailable,
            };
            Applied::saved()
        }
        Err(_) => {
            // All or nothing: a refused reserve holds nothing.
            state.reserve_settled = true;
            let reason = if paid {
                CancelReason::ReservationExpired
            } else {
                CancelReason::OutOfStock
            };
            state.step = SagaStep::Compensate { reason };
            Applied::saved()
        }
    }
}

fn charged(
    state: &mut SagaState,
    result: Result<String, PaymentError>,
    view: &View,
    past_deadline: bool,
) -> Applied {
    match result {
        Ok(payment_id) => {
            state.payment_id = Some(payment_id.clone());
            state.enter(SagaStep::Confirm);
            Applied {
                save: true,
                record_payment: Some(payment_id),
                ..Applied::default()
            }
        }
        Err(refused @ (PaymentError::Declined | PaymentError::FraudSuspected)) => {
            // A definite refusal: no money is held, nothing to look up.
            state.charge_attempted = false;
            state.charge_sent_ms = None;
            let reason = if refused == PaymentError::Declined {
                CancelReason::PaymentDeclined
            } else {
                CancelReason::FraudSuspected
            };
            state.step = SagaStep::Compensate { reason };
            Applied::saved()
        }
        Err(PaymentError::Transient(_)) => {
            // A charge sent in the burst may still be completing: the
            // settle window runs from the burst's end.
            state.charge_sent_ms = Some(view.now_ms);
            if !past_deadline {
                return Applied::waiting(false);
            }
            state.step = SagaStep::Compensate {
                reason: CancelReason::PaymentDeclined,
            };
            Applied::saved()
        }
    }
}

#[cfg(test)]
mod tests {
    //! The machine driven by a pure simulation: a model inventory and
    //! payment provider that fail, or act and lose the answer, by a seeded
    //! draw; a customer who may cancel; holds that run out; and crashes at
    //! step boundaries (the state falls back to what was last saved).

    use std::collections::HashMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::domain::{Order, OrderId, OrderLine, ProductId, UserId};

    const T0_MS: i64 = 1_700_000_000_000;
    const TTL_MS: i64 = 30_000;
    const DEADLINE_MS: i64 = 60_000;
    const STEP_MS: i64 = 1_000;
    /// Steps with failures and crashes; then everything answers.
    const CHAOS_STEPS: usize = 120;
    const STEPS_MAX: usize = 2_000;
    /// A customer who cancels does so within this many steps (while the
    /// saga is still at work).
    const CANCEL_STEPS_MAX: usize = 12;

    #[derive(Default)]
    struct Hold {
        product: Uuid,
        units: u32,
        status: Option<HoldStatus>,
        end_ms: i64,
    }

    /// Inventory, payments and the order store, as plain data.
    struct World {
        rng: StdRng,
        chaos: bool,
        now_ms: i64,
        stock: HashMap<Uuid, u32>,
        holds: HashMap<Uuid, Hold>,
        by_line: HashMap<(Uuid, Uuid), Uuid>,
        restocked: HashMap<String, u32>,
        decline: bool,
        charged: Option<String>,
        refunded: bool,
        recorded_payment: bool,
    }

    enum Fault {
        None,
        Before,
        After,
    }

    impl World {
        fn fault(&mut self) -> Fault {
            if !self.chaos {
                return Fault::None;
            }
            match self.rng.random_range(0..10) {
                0 => Fault::Before,
                1 => Fault::After,
                _ => Fault::None,
            }
        }

        fn sweep(&mut self) {
            for hold in self.holds.values_mut() {
                if hold.status == Some(HoldStatus::Reserved) && hold.end_ms <= self.now_ms {
                    hold.status = Some(HoldStatus::Expired);
                    *self.stock.entry(hold.product).or_default() += hold.units;
                }
            }
        }

        fn lost() -> InventoryError {
            InventoryError::Unavailable("timed out".into())
        }

        /// Performs `call`; the outcome the saga sees.
        fn perform(&mut self, state: &SagaState, call: &Call) -> Outcome {
            let fault = self.fault();
            if matches!(fault, Fault::Before) {
                return match call {
                    Call::Charge => Outcome::Charged(Err(PaymentError::Transient("down".into()))),
                    Call::LookupCharge => {
                        Outcome::Lookup(Err(PaymentError::Transient("down".into())))
                    }
                    Call::Refund(_) => {
                        Outcome::Refunded(Err(PaymentError::Transient("down".into())))
                    }
                    Call::Reserve(_) | Call::LearnHolds(_) => Outcome::Reserved(Err(Self::lost())),
                    Call::ReadHold(_) => Outcome::Hold(Err(Self::lost())),
                    _ => Outcome::Done(Err(Self::lost())),
                };
            }
            let outcome = self.act(state, call);
            if !matches!(fault, Fault::After) {
                return outcome;
            }
            match outcome {
                Outcome::Charged(_) => {
                    Outcome::Charged(Err(PaymentError::Transient("lost".into())))
                }
                Outcome::Refunded(_) => {
                    Outcome::Refunded(Err(PaymentError::Transient("lost".into())))
                }
                Outcome::Lookup(_) => Outcome::Lookup(Err(PaymentError::Transient("lost".into()))),
                Outcome::Reserved(_) => Outcome::Reserved(Err(Self::lost())),
                Outcome::Hold(_) => Outcome::Hold(Err(Self::lost())),
                Outcome::Done(_) => Outcome::Done(Err(Self::lost())),
            }
        }

        fn act(&mut self, state: &SagaState, call: &Call) -> Outcome {
            match call {
                Call::Reserve(lines) | Call::LearnHolds(lines) => {
                    let order = state.inventory_order_id;
                    let fresh: Vec<&(Uuid, u32)> = lines
                        .iter()
                        .filter(|(p, _)| !self.by_line.contains_key(&(order, *p)))
                        .collect();
                    if fresh
                        .iter()
                        .any(|(p, u)| self.stock.get(p).copied().unwrap_or(0) < *u)
                    {
                        return Outcome::Reserved(Err(InventoryError::InsufficientStock));
                    }
                    let mut out = Vec::new();
                    for (product, units) in lines {
                        let rid = match self.by_line.get(&(order, *product)) {
                            Some(rid) => *rid,
                            None => {
                                let rid = Uuid::from_u128(self.rng.random());
                                *self.stock.get_mut(product).expect("stocked") -= units;
                                self.holds.insert(
                                    rid,
                                    Hold {
                                        product: *product,
                                        units: *units,
                                        status: Some(HoldStatus::Reserved),
                                        end_ms: self.now_ms + TTL_MS,
                                    },
                                );
                                self.by_line.insert((order, *product), rid);
                                rid
                            }
                        };
                        out.push(ReservedLine {
                            product_id: *product,
                            reservation_id: rid,
                        });
                    }
                    Outcome::Reserved(Ok(out))
                }
                Call::Confirm(rid) => {
                    let now = self.now_ms;
                    let hold = self
                        .holds
                        .get_mut(rid)
                        .expect("a saga confirms its own holds");
                    Outcome::Done(match hold.status {
                        Some(HoldStatus::Reserved) if hold.end_ms <= now => {
                            hold.status = Some(HoldStatus::Expired);
                            *self.stock.entry(hold.product).or_default() += hold.units;
                            Err(InventoryError::Expired)
                        }
                        Some(HoldStatus::Reserved | HoldStatus::Confirmed) => {
                            hold.status = Some(HoldStatus::Confirmed);
                            Ok(())
                        }
                        Some(HoldStatus::Expired) => Err(InventoryError::Expired),
                        _ => Err(InventoryError::Conflict("invalid_transition".into())),
                    })
                }
                Call::Release(rid) => {
                    let hold = self
                        .holds
                        .get_mut(rid)
                        .expect("a saga releases its own holds");
                    Outcome::Done(match hold.status {
                        Some(HoldStatus::Reserved) => {
                            hold.status = Some(HoldStatus::Released);
                            *self.stock.entry(hold.product).or_default() += hold.units;
                            Ok(())
                        }
                        Some(HoldStatus::Released) => Ok(()),
                        Some(HoldStatus::Expired) => Err(InventoryError::Expired),
                        _ => Err(InventoryError::Conflict("invalid_transition".into())),
                    })
                }
                Call::ReadHold(rid) => Outcome::Hold(
                    self.holds[rid]
                        .status
                        .ok_or_else(|| InventoryError::NotFound("reservation_not_found".into())),
                ),
                Call::Restock {
                    product,
                    units,
                    key,
                    ..
                } => {
                    if !self.restocked.contains_key(key) {
                        self.restocked.insert(key.clone(), *units);
                        *self.stock.entry(*product).or_default() += units;
                    }
                    Outcome::Done(Ok(()))
                }
                Call::Charge => Outcome::Charged(if self.decline {
                    Err(PaymentError::Declined)
                } else {
                    let id = format!("pay_{}", state.order_id);
                    self.charged = Some(id.clone());
                    Ok(id)
                }),
                Call::LookupCharge => Outcome::Lookup(Ok(self.charged.clone())),
                Call::Refund(_) => {
                    self.refunded = true;
                    Outcome::Refunded(Ok(format!("ref_{}", state.order_id)))
                }
            }
        }
    }

    fn order(rng: &mut StdRng) -> Order {
        let lines: Vec<OrderLine> = (0..rng.random_range(1..=2_u128))
            .map(|n| OrderLine {
                product_id: ProductId::from_uuid(Uuid::from_u128(n + 1)),
                name: "p".into(),
                quantity: rng.random_range(1..=2),
                unit_price_minor: 100,
                line_total_minor: 100,
            })
            .collect();
        Order {
            id: OrderId::from_uuid(Uuid::from_u128(rng.random())),
            user_id: UserId::parse("sim").expect("user"),
            status: OrderStatus::Pending,
            total_minor: lines.iter().map(|l| l.line_total_minor).sum(),
            lines,
            currency: "EUR".into(),
            idempotency_key: None,
            fingerprint: "fp".into(),
            created_at_ms: T0_MS,
            updated_at_ms: T0_MS,
        }
    }

    /// Runs one order of `seed` to its end, crashing (back to the last
    /// saved state) at the step boundaries `crash_at` names, and at random
    /// ones with probability `crash_rate` while the chaos lasts. Returns the
    /// number of step boundaries it went through.
    fn run(seed: u64, crash_at: Option<usize>, crash_rate: f64) -> usize {
        let mut rng = StdRng::seed_from_u64(seed);
        let o = order(&mut rng);
        let mut world = World {
            rng: StdRng::seed_from_u64(seed ^ 7),
            chaos: true,
            now_ms: T0_MS,
            stock: (1..=2)
                .map(|n| (Uuid::from_u128(n), rng.random_range(0..=4)))
                .collect(),
            holds: HashMap::new(),
            by_line: HashMap::new(),
            restocked: HashMap::new(),
            decline: rng.random_bool(0.2),
            charged: None,
            refunded: false,
            recorded_payment: false,
        };
        let cancel_at = rng
            .random_bool(0.4)
            .then(|| rng.random_range(0..CANCEL_STEPS_MAX));
        let mut saved = SagaState::new(&o, T0_MS + DEADLINE_MS);
        let mut state = saved.clone();
        let mut boundary = 0;
        let mut finished = None;
        for step in 0..STEPS_MAX {
            world.chaos = step < CHAOS_STEPS;
            world.now_ms += STEP_MS;
            world.sweep();
            let view = View {
                now_ms: world.now_ms,
                cancel_requested: cancel_at.is_some_and(|c| step >= c),
                lost: Vec::new(),
                reserve_attempts_max: 2,
                give_up_ms: saved.deadline_ms + DEADLINE_MS,
                payment_settle_ms: 10_000,
            };
            match decide(&state, &view) {
                Decision::Done => break,
                Decision::Wait => {}
                Decision::Finish(status) => {
                    finished = Some(status);
                    break;
                }
                Decision::Become(next) => {
                    state = next;
                    saved = state.clone();
                }
                Decision::Call(call) => {
                    if prepare(&mut state, &call, world.now_ms) {
                        saved = state.clone();
                    }
                    let outcome = world.perform(&state, &call);
                    let applied = apply(&mut state, &view, &call, outcome);
                    world.recorded_payment |= applied.record_payment.is_some();
                    if applied.save {
                        saved = state.clone();
                    }
                }
            }
            boundary += 1;
            let crash =
                crash_at == Some(boundary) || (world.chaos && world.rng.random_bool(crash_rate));
            if crash {
                state = saved.clone();
            }
        }
        let status = finished.unwrap_or_else(|| panic!("seed {seed}: never finished: {state:?}"));
        let here = format!("seed {seed}, crash at {crash_at:?}: {status:?}, {state:?}");
        let sold: Vec<(&Uuid, &Hold)> = world
            .holds
            .iter()
            .filter(|(_, h)| h.status == Some(HoldStatus::Confirmed))
            .collect();
        if status == OrderStatus::Confirmed {
            assert!(
                world.charged.is_some() && !world.refunded,
                "paid once and kept: {here}"
            );
            for line in &o.lines {
                let of_line = sold
                    .iter()
                    .filter(|(_, h)| h.product == line.product_id.as_uuid());
                assert_eq!(of_line.count(), 1, "each line sold once: {here}");
            }
        } else {
            assert!(
                world.charged.is_none() || world.refunded,
                "no money held: {here}"
            );
            for (rid, _) in sold {
                let key = format!("order-{}-{rid}", o.id);
                assert!(
                    world.restocked.contains_key(&key),
                    "sold units returned: {here}"
                );
            }
        }
        boundary
    }

    /// Random chaos and crashes, many seeds: every order ends consistent.
    #[test]
    fn random_crashes_end_consistent() {
        for seed in 0..3_000 {
            run(seed, None, 0.1);
        }
    }

    /// A crash at every step boundary of a run, one at a time, for many
    /// seeds: every order still ends consistent.
    #[test]
    fn a_crash_at_every_step_boundary_ends_consistent() {
        for seed in 0..200 {
            let boundaries = run(seed, None, 0.0);
            for at in 1..=boundaries {
                run(seed, Some(at), 0.0);
            }
        }
    }
}
