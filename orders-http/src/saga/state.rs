//! The persisted progress of one order's saga: which step comes next, the
//! inventory order id of the current reservation attempt, the reservation of
//! every line, and the payment and refund taken so far.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{CancelReason, Order, OrderId, ProductId};
use crate::inventory::ReservedLine;

/// One order line as inventory holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLine {
    /// The product.
    pub product_id: ProductId,
    /// Units.
    pub quantity: u32,
    /// The inventory reservation holding it, once reserved.
    pub reservation_id: Option<Uuid>,
    /// Whether inventory confirmed that reservation (stock taken for good).
    pub confirmed: bool,
    /// The hold no longer holds stock for the order (released, found gone,
    /// or left to its TTL) in the current undo or retry.
    #[serde(default)]
    pub settled: bool,
    /// Inventory refused to release the hold: where it stands is read next.
    #[serde(default)]
    pub refused: bool,
    /// The units of this sold line went back to stock (a cancelled order).
    #[serde(default)]
    pub returned: bool,
}

/// The step a saga runs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SagaStep {
    /// Reserve every line not yet confirmed, in one all-or-nothing call, under
    /// the state's `inventory_order_id`.
    Reserve,
    /// Take the payment.
    Pay,
    /// Confirm every held reservation.
    Confirm,
    /// Undo: release what is held, refund what was paid, cancel for `reason`.
    Compensate {
        /// Why the order is cancelled.
        reason: CancelReason,
    },
    /// Finished; the order is confirmed or cancelled.
    Done,
}

impl SagaStep {
    /// A short name for logs, metrics and the stored `step` column.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Reserve => "reserve",
            Self::Pay => "pay",
            Self::Confirm => "confirm",
            Self::Compensate { .. } => "compensate",
            Self::Done => "done",
        }
    }
}

/// The progress of one order's saga, saved before every step's effects are
/// relied on, so that a restarted service continues where it stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaState {
    /// The order.
    pub order_id: OrderId,
    /// What runs next.
    pub step: SagaStep,
    /// How many inventory order ids this saga has used (1 for the first
    /// reservation, 2 after one re-reserve, ...).
    pub reserve_attempts: u32,
    /// The order id inventory sees for the current reservation attempt.
    /// Inventory deduplicates reserves on `(order_id, product_id)`, so a
    /// repeated call with this id is idempotent, and a re-reserve after an
    /// expired hold needs a fresh one.
    pub inventory_order_id: Uuid,
    /// Every line and its reservation.
    pub lines: Vec<HeldLine>,
    /// The payment, once taken.
    pub payment_id: Option<String>,
    /// The refund, once made.
    pub refund_id: Option<String>,
    /// After this instant (Unix ms) an order still waiting for inventory is
    /// cancelled `inventory_unavailable`.
    pub deadline_ms: i64,
    /// Request id of the request that placed the order: the correlation id
    /// of the saga's calls to inventory and of the order's events.
    #[serde(default)]
    pub request_id: Option<String>,
    /// A charge may have been made: set when the saga enters
    /// [`SagaStep::Pay`], saved before any charge is sent. An undo then asks
    /// the provider what was charged unless `payment_id` is known. (A saga
    /// saved before this field existed is assumed to have tried.)
    #[serde(default = "assume_attempted")]
    pub charge_attempted: bool,
    /// When the last charge was sent (ms), saved before it was sent: the
    /// provider's "nothing charged" is trusted only some time after it.
    #[serde(default)]
    pub charge_sent_ms: Option<i64>,
    /// A confirm may have been made: set when the saga enters
    /// [`SagaStep::Confirm`], saved before any confirm is sent. A hold whose
    /// release is refused is then asked about, and may turn out sold. (A
    /// saga saved before this field existed is assumed to have tried.)
    #[serde(default = "assume_attempted")]
    pub confirm_attempted: bool,
    /// The outcome of the current reserve attempt is known: the held lines'
    /// reservation ids are in `lines`, or inventory refused it and holds
    /// nothing. Until then an undo repeats the (idempotent) reserve to learn
    /// what was held, since a reserve whose answer was lost may have held
    /// stock.
    #[serde(default)]
    pub reserve_settled: bool,
    /// The provider said nothing was charged, after the settle window.
    #[serde(default)]
    pub charge_checked: bool,
    /// A hold the saga relied on is gone: the other holds of the attempt are
    /// being settled before it reserves again (or gives up).
    #[serde(default)]
    pub settling: bool,
}

/// What a saga stored without the `*_attempted` fields may have done: any.
fn assume_attempted() -> bool {
    true
}

impl SagaState {
    /// The starting state of a new order.
    pub fn new(order: &Order, deadline_ms: i64) -> Self {
        Self {
            order_id: order.id,
            step: SagaStep::Reserve,
            reserve_attempts: 1,
            inventory_order_id: Uuid::new_v4(),
            lines: order
                .lines
                .iter()
                .map(|l| HeldLine {
                    product_id: l.product_id,
                    quantity: l.quantity,
                    reservation_id: None,
                    confirmed: false,
                    settled: false,
                    refused: false,
                    returned: false,
                })
                .collect(),
            payment_id: None,
            refund_id: None,
            deadline_ms,
            request_id: None,
            charge_attempted: false,
            charge_sent_ms: None,
            confirm_attempted: false,
            reserve_settled: false,
            charge_checked: false,
            settling: false,
        }
    }

    /// Moves to `step`, recording what the step may do before it does it.
    pub fn enter(&mut self, step: SagaStep) {
        match step {
            SagaStep::Pay => self.charge_attempted = true,
            SagaStep::Confirm => self.confirm_attempted = true,
            _ => {}
        }
        self.step = step;
    }

    /// Starts a new reservation attempt under a fresh inventory order id
    /// (after a hold was lost): unconfirmed lines hold nothing yet.
    pub fn next_reserve_attempt(&mut self) {
        self.reserve_attempts += 1;
        self.inventory_order_id = Uuid::new_v4();
        self.reserve_settled = false;
        for line in self.lines.iter_mut().filter(|l| !l.confirmed) {
            line.reservation_id = None;
            line.settled = false;
            line.refused = false;
        }
        self.step = SagaStep::Reserve;
    }

    /// Records the reservation inventory holds for each unconfirmed line it
    /// answered for (the others keep what they had).
    pub fn hold(&mut self, reserved: &[ReservedLine]) {
        for line in self.lines.iter_mut().filter(|l| !l.confirmed) {
            let held = reserved
                .iter()
                .find(|r| r.product_id == line.product_id.as_uuid());
            line.reservation_id = held.map(|r| r.reservation_id).or(line.reservation_id);
        }
    }

    /// Every line not confirmed yet, as `(product, units)`.
    pub fn unconfirmed_lines(&self) -> Vec<(Uuid, u32)> {
        self.lines
            .iter()
            .filter(|l| !l.confirmed)
            .map(|l| (l.product_id.as_uuid(), l.quantity))
            .collect()
    }

    /// Lines not confirmed and without a known reservation (what a lost
    /// reserve answer may have held), as `(product, units)`.
    pub fn unknown_lines(&self) -> Vec<(Uuid, u32)> {
        self.lines
            .iter()
            .filter(|l| !l.confirmed && l.reservation_id.is_none())
            .map(|l| (l.product_id.as_uuid(), l.quantity))
            .collect()
    }

    /// The same state, correlated with the request that placed the order.
    #[must_use]
    pub fn with_request_id(mut self, request_id: &str) -> Self {
        self.request_id = Some(request_id.to_owned());
        self
    }

    /// Reservation ids of lines held but not confirmed (what a compensation
    /// must release).
    pub fn held_unconfirmed(&self) -> Vec<Uuid> {
        self.lines
            .iter()
            .filter(|l| !l.confirmed)
            .filter_map(|l| l.reservation_id)
            .collect()
    }

    /// Every reservation id, confirmed or not.
    pub fn reservation_ids(&self) -> Vec<Uuid> {
        self.lines.iter().filter_map(|l| l.reservation_id).collect()
    }
}
