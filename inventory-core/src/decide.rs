//! The business rules: how each [`Command`] changes a [`Workspace`]. Pure: no
//! I/O, no clock (time comes in as `now`), no locks.
//!
//! Each rule checks everything before it changes anything, so a command that
//! fails leaves the workspace as it was, with one exception: overdue
//! reservations met on the way are expired, which is always correct to keep.
//! Every item a command changes gets exactly one version bump.

use crate::command::{Command, Outcome, Reserve, LAZY_EXPIRY_MAX};
use crate::error::Error;
use crate::event::{Event, EventPayload};
use crate::ids::{ProductId, ReservationId};
use crate::item::{Adjustment, InventoryItem};
use crate::reservation::{Reservation, ReservationStatus};
use crate::value::{Actor, AdjustmentKey, Reason, StockLevel, Timestamp, STOCK_MAX};
use crate::workspace::Workspace;

/// Applies `command` to `ws` at instant `now`.
///
/// A refused command changes nothing, so a store can run `decide` inside its
/// atomic step and commit whatever it left behind.
///
/// ```
/// use inventory_core::*;
///
/// let product = ProductId::from(Uuid::from_u128(1));
/// let now = Timestamp::from_millis(0);
/// let mut state = Snapshot::new();
/// let create = Command::CreateItem { product_id: product, quantity: StockLevel::new(2)?, actor: Actor::system() };
/// assert!(matches!(decide(&mut state, &create, now)?, Outcome::Created(_)));
///
/// // The same create again is refused, and the item is as it was.
/// assert_eq!(decide(&mut state, &create, now), Err(Error::AlreadyExists { product_id: product }));
/// assert_eq!(state.item(product).map(InventoryItem::quantity), Some(2));
/// # Ok::<(), Error>(())
/// ```
///
/// # Errors
/// The business errors of [`Error`]: the command did not happen (overdue
/// reservations met on the way may still have been expired).
pub fn decide<W: Workspace + ?Sized>(
    ws: &mut W,
    command: &Command,
    now: Timestamp,
) -> Result<Outcome, Error> {
    let mut tx = Tx {
        ws,
        now,
        touched: Touched::default(),
    };
    let result = tx.apply(command);
    tx.bump_touched();
    result.map(|done| tx.read_outcome(done, command))
}

/// The error for a new reservation whose id another reservation has.
fn reservation_id_taken(id: ReservationId) -> Error {
    Error::InvalidInput {
        field: "reservation_id",
        reason: format!("{id} belongs to another reservation"),
    }
}

// A reserve tracks its lines in a `u128` bit set.
const _: () = assert!(crate::command::LINES_MAX <= 128);

/// Items a command changed, in first-touch order. Most commands touch one or
/// two items, so the first few live inline and the hot path does not allocate.
#[derive(Default)]
struct Touched {
    inline: [Option<ProductId>; TOUCHED_INLINE],
    spill: Vec<ProductId>,
}

/// Items tracked without allocating.
const TOUCHED_INLINE: usize = 4;

impl Touched {
    fn insert(&mut self, product_id: ProductId) {
        let inline = self.inline.iter().flatten();
        if inline.chain(&self.spill).any(|p| *p == product_id) {
            return;
        }
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(product_id),
            None => self.spill.push(product_id),
        }
    }

    fn drain(&mut self) -> impl Iterator<Item = ProductId> + '_ {
        self.inline
            .iter_mut()
            .filter_map(Option::take)
            .chain(self.spill.drain(..))
    }
}

/// What a rule did, resolved into an [`Outcome`] once versions are bumped.
enum Done {
    Created(ProductId),
    /// The order's reservations, one per line of this reserve.
    Reserved(bool),
    Reservation(ReservationId, bool),
    Item(ProductId, bool),
}

struct Tx<'a, W: Workspace + ?Sized> {
    ws: &'a mut W,
    now: Timestamp,
    touched: Touched,
}

impl<W: Workspace + ?Sized> Tx<'_, W> {
    fn apply(&mut self, command: &Command) -> Result<Done, Error> {
        match command {
            Command::CreateItem {
                product_id,
                quantity,
                actor,
            } => self.create(*product_id, *quantity, actor),
            Command::Reserve(reserve) => self.reserve(reserve),
            Command::Confirm { reservation_id } => self.confirm(*reservation_id),
            Command::Release { reservation_id } => self.release(*reservation_id),
            Command::Expire { reservation_id } => self.expire(*reservation_id),
            Command::Adjust {
                product_id,
                delta,
                reason,
                actor,
                key,
            } => {
                let item = self.item(*product_id)?;
                let target = item.quantity() as i64 + delta.get();
                if let Some(key) = key {
                    if let Some(existing) = self.ws.adjusted_under(*product_id, key) {
                        return self.replay_adjustment(*product_id, key, existing, delta.get());
                    }
                }
                self.set_stock(*product_id, target, reason, actor, key.as_ref())
            }
            Command::SetQuantity {
                product_id,
                quantity,
                expected_version,
                reason,
                actor,
            } => {
                let item = self.item(*product_id)?;
                if item.version() != *expected_version {
                    return Err(Error::VersionConflict {
                        product_id: *product_id,
                        expected: *expected_version,
                        actual: item.version(),
                    });
                }
                self.set_stock(*product_id, quantity.get() as i64, reason, actor, None)
            }
        }
    }

    fn item(&self, product_id: ProductId) -> Result<&InventoryItem, Error> {
        self.ws
            .item(product_id)
            .ok_or(Error::ProductNotFound { product_id })
    }

    fn item_mut(&mut self, product_id: ProductId) -> &mut InventoryItem {
        self.touched.insert(product_id);
        self.ws
            .item_mut(product_id)
            .expect("a rule only changes an item it has read")
    }

    fn reservation(&self, id: ReservationId) -> Result<&Reservation, Error> {
        self.ws
            .reservation(id)
            .ok_or(Error::ReservationNotFound { reservation_id: id })
    }

    fn emit(&mut self, payload: EventPayload) {
        self.ws.record_event(Event {
            occurred_at: self.now,
            payload,
        });
    }

    fn create(
        &mut self,
        product_id: ProductId,
        quantity: StockLevel,
        actor: &Actor,
    ) -> Result<Done, Error> {
        if self.ws.item(product_id).is_some() {
            return Err(Error::AlreadyExists { product_id });
        }
        self.ws
            .insert_item(InventoryItem::new(product_id, quantity.get(), self.now));
        if quantity.get() > 0 {
            let reason = Reason::new("initial stock").expect("constant reason is valid");
            self.ledger(product_id, 0, quantity.get(), (reason, actor.clone(), None));
        }
        Ok(Done::Created(product_id))
    }

    fn reserve(&mut self, reserve: &Reserve) -> Result<Done, Error> {
        let order_id = reserve.order_id();
        let lines = reserve.lines();
        // Lines without a reservation yet, as a bit set (no allocation).
        let mut missing: u128 = 0;
        // Check every line before changing anything (all or nothing).
        for (i, line) in lines.iter().enumerate() {
            match self.ws.find_reservation(order_id, line.product_id) {
                Some(existing) => {
                    let existing = self.reservation(existing)?.quantity();
                    if existing != line.quantity.get() {
                        return Err(Error::IdempotencyConflict {
                            order_id,
                            product_id: line.product_id,
                            existing,
                            requested: line.quantity.get(),
                        });
                    }
                }
                None if self.ws.reservation(line.reservation_id).is_some() => {
                    return Err(reservation_id_taken(line.reservation_id));
                }
                None => missing |= 1 << i,
            }
        }
        let is_missing = |i: usize| missing & (1 << i) != 0;
        for (_, line) in lines.iter().enumerate().filter(|(i, _)| is_missing(*i)) {
            let wanted = line.quantity.get();
            if self.item(line.product_id)?.available() < wanted {
                self.expire_overdue_of(line.product_id);
            }
            let available = self.item(line.product_id)?.available();
            if available < wanted {
                return Err(Error::InsufficientStock {
                    product_id: line.product_id,
                    requested: wanted,
                    available,
                });
            }
        }
        let expires_at = self.now.plus_ms(reserve.ttl().as_millis());
        for (_, line) in lines.iter().enumerate().filter(|(i, _)| is_missing(*i)) {
            let reservation = Reservation::new(
                line.reservation_id,
                order_id,
                line.product_id,
                line.quantity,
                self.now,
                expires_at,
            );
            self.item_mut(line.product_id).hold(line.quantity.get());
            self.ws.insert_reservation(reservation);
            self.emit(EventPayload::Reserved {
                reservation_id: line.reservation_id,
                order_id,
                product_id: line.product_id,
                quantity: line.quantity.get(),
                expires_at,
            });
            if self.item(line.product_id)?.available() == 0 {
                self.emit(EventPayload::Depleted {
                    product_id: line.product_id,
                });
            }
        }
        Ok(Done::Reserved(missing != 0))
    }

    /// Expires up to [`LAZY_EXPIRY_MAX`] overdue reservations of one product.
    fn expire_overdue_of(&mut self, product_id: ProductId) {
        for id in self.ws.overdue(product_id, self.now, LAZY_EXPIRY_MAX) {
            self.finish(id, ReservationStatus::Expired);
        }
    }

    /// Moves a pending reservation to a terminal state and settles its item.
    fn finish(&mut self, id: ReservationId, to: ReservationStatus) {
        let now = self.now;
        let reservation = self
            .ws
            .reservation_mut(id)
            .expect("finish is called on a reservation that was read");
        let (product_id, order_id) = (reservation.product_id(), reservation.order_id());
        let quantity = reservation.quantity();
        reservation.finish(to, now);
        let item = self.item_mut(product_id);
        let (quantity_before, reserved_before) = (item.quantity(), item.reserved());
        let payload = match to {
            ReservationStatus::Confirmed => {
                item.ship(quantity);
                EventPayload::Confirmed {
                    reservation_id: id,
                    order_id,
                    product_id,
                    quantity,
                }
            }
            ReservationStatus::Released => {
                item.unhold(quantity);
                EventPayload::Released {
                    reservation_id: id,
                    order_id,
                    product_id,
                    quantity,
                }
            }
            ReservationStatus::Expired => {
                item.unhold(quantity);
                EventPayload::Expired {
                    reservation_id: id,
                    order_id,
                    product_id,
                    quantity,
                }
            }
            ReservationStatus::Pending => unreachable!("finish moves to a terminal state"),
        };
        debug_assert_eq!(item.reserved(), reserved_before - quantity);
        debug_assert!(
            item.quantity() == quantity_before
                || (to == ReservationStatus::Confirmed
                    && item.quantity() == quantity_before - quantity)
        );
        self.emit(payload);
    }

    fn confirm(&mut self, id: ReservationId) -> Result<Done, Error> {
        let reservation = self.reservation(id)?;
        match reservation.status() {
            ReservationStatus::Confirmed => Ok(Done::Reservation(id, false)),
            ReservationStatus::Released => Err(Error::InvalidTransition {
                reservation_id: id,
                from: ReservationStatus::Released,
                to: ReservationStatus::Confirmed,
            }),
            ReservationStatus::Expired => Err(Error::ReservationExpired {
                reservation_id: id,
                expires_at: reservation.expires_at(),
            }),
            ReservationStatus::Pending if reservation.is_overdue(self.now) => {
                let expires_at = reservation.expires_at();
                self.finish(id, ReservationStatus::Expired);
                Err(Error::ReservationExpired {
                    reservation_id: id,
                    expires_at,
                })
            }
            ReservationStatus::Pending => {
                self.finish(id, ReservationStatus::Confirmed);
                Ok(Done::Reservation(id, true))
            }
        }
    }

    fn release(&mut self, id: ReservationId) -> Result<Done, Error> {
        let reservation = self.reservation(id)?;
        match reservation.status() {
            ReservationStatus::Released => Ok(Done::Reservation(id, false)),
            ReservationStatus::Confirmed => Err(Error::InvalidTransition {
                reservation_id: id,
                from: ReservationStatus::Confirmed,
                to: ReservationStatus::Released,
            }),
            ReservationStatus::Expired => Err(Error::ReservationExpired {
                reservation_id: id,
                expires_at: reservation.expires_at(),
            }),
            ReservationStatus::Pending => {
                self.finish(id, ReservationStatus::Released);
                Ok(Done::Reservation(id, true))
            }
        }
    }

    fn expire(&mut self, id: ReservationId) -> Result<Done, Error> {
        if self.reservation(id)?.is_overdue(self.now) {
            self.finish(id, ReservationStatus::Expired);
            Ok(Done::Reservation(id, true))
        } else {
            Ok(Done::Reservation(id, false))
        }
    }

    /// Sets the quantity on hand to `target`, recording the change in the ledger.
    /// A repeated keyed adjustment: nothing changes when it asks for the
    /// delta recorded under its key; a different delta is a reused key.
    fn replay_adjustment(
        &self,
        product_id: ProductId,
        key: &AdjustmentKey,
        existing: i64,
        requested: i64,
    ) -> Result<Done, Error> {
        if existing != requested {
            return Err(Error::AdjustmentKeyConflict {
                product_id,
                key: key.as_str().to_owned(),
                existing,
                requested,
            });
        }
        Ok(Done::Item(product_id, false))
    }

    fn set_stock(
        &mut self,
        product_id: ProductId,
        target: i64,
        reason: &Reason,
        actor: &Actor,
        key: Option<&AdjustmentKey>,
    ) -> Result<Done, Error> {
        let item = self.item(product_id)?;
        let (before, reserved, available) = (item.quantity(), item.reserved(), item.available());
        if target < reserved as i64 {
            return Err(Error::BelowReserved {
                product_id,
                requested: target,
                reserved,
            });
        }
        if target > STOCK_MAX as i64 {
            return Err(Error::AboveStockMax {
                product_id,
                requested: target,
            });
        }
        let target = target as u64;
        if target == before {
            return Ok(Done::Item(product_id, false));
        }
        self.item_mut(product_id).set_quantity(target);
        let entry = (reason.clone(), actor.clone(), key.cloned());
        self.ledger(product_id, before, target, entry);
        if available > 0 && self.item(product_id)?.available() == 0 {
            self.emit(EventPayload::Depleted { product_id });
        }
        Ok(Done::Item(product_id, true))
    }

    fn ledger(
        &mut self,
        product_id: ProductId,
        before: u64,
        after: u64,
        (reason, actor, key): (Reason, Actor, Option<AdjustmentKey>),
    ) {
        let delta = after as i64 - before as i64;
        self.emit(EventPayload::Adjusted {
            product_id,
            delta,
            quantity_after: after,
            reason: reason.clone(),
        });
        self.ws.record_adjustment(Adjustment {
            product_id,
            delta,
            quantity_before: before,
            quantity_after: after,
            reason,
            actor,
            at: self.now,
            key,
        });
    }

    fn bump_touched(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        for product_id in touched.drain() {
            let item = self.ws.item_mut(product_id).expect("a touched item exists");
            let before = item.version();
            item.bump(self.now);
            debug_assert_eq!(item.version(), before.next());
        }
    }

    fn read_outcome(&self, done: Done, command: &Command) -> Outcome {
        let item = |id| {
            self.ws
                .item(id)
                .cloned()
                .expect("the outcome's item exists")
        };
        let reservation = |id| {
            self.ws
                .reservation(id)
                .cloned()
                .expect("the outcome's reservation exists")
        };
        match done {
            Done::Created(id) => Outcome::Created(item(id)),
            Done::Reserved(created) => {
                let Command::Reserve(reserve) = command else {
                    unreachable!("only a reserve reserves")
                };
                let order_id = reserve.order_id();
                let reservations = reserve
                    .lines()
                    .iter()
                    .map(|line| {
                        let id = self
                            .ws
                            .find_reservation(order_id, line.product_id)
                            .expect("every line is reserved now");
                        reservation(id)
                    })
                    .collect();
                Outcome::Reserved {
                    reservations,
                    created,
                }
            }
            Done::Reservation(id, changed) => Outcome::Reservation {
                reservation: reservation(id),
                changed,
            },
            Done::Item(id, changed) => Outcome::Item {
                item: item(id),
                changed,
            },
        }
    }
}
