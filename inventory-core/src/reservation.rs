//! Reservations and their state machine: `pending -> confirmed | released |
//! expired`, where the three right-hand states are terminal.

use std::fmt;

use crate::error::Error;
use crate::ids::{OrderId, ProductId, ReservationId};
use crate::value::{Quantity, Timestamp};

/// Where a reservation is in its life.
///
/// ```
/// use inventory_core::ReservationStatus;
///
/// assert_eq!(ReservationStatus::parse("confirmed"), Some(ReservationStatus::Confirmed));
/// assert_eq!(ReservationStatus::Expired.to_string(), "expired");
/// assert!(!ReservationStatus::Pending.is_terminal());
/// assert!(ReservationStatus::Released.is_terminal());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ReservationStatus {
    /// Holding stock until confirmed, released or expired.
    Pending,
    /// Sold: the units left the quantity on hand. Terminal.
    Confirmed,
    /// Given back by the caller. Terminal.
    Released,
    /// Given back because its hold ran out. Terminal.
    Expired,
}

impl ReservationStatus {
    /// The snake_case name used in APIs and storage.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "confirmed" => Self::Confirmed,
            "released" => Self::Released,
            "expired" => Self::Expired,
            _ => return None,
        })
    }

    /// True for the states no transition leaves.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Self::Pending)
    }
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Units of one product held for one order until `expires_at`.
///
/// At most one reservation exists per `(order_id, product_id)`. Its fields are
/// read-only outside this crate: only the use cases move it through its states,
/// and each transition asserts its pre- and postconditions.
///
/// ```
/// use inventory_core::*;
///
/// # let product = ProductId::from(Uuid::from_u128(1));
/// # let mut state = Snapshot::new();
/// # let create = Command::CreateItem { product_id: product, quantity: StockLevel::new(5)?, actor: Actor::system() };
/// # decide(&mut state, &create, Timestamp::from_millis(0))?;
/// let order = OrderId::from(Uuid::from_u128(2));
/// let reservation_id = ReservationId::for_line(order, product);
/// let line = ReserveLine { product_id: product, quantity: Quantity::new(2)?, reservation_id };
/// let reserve = Command::Reserve(Reserve::single(order, line, Ttl::from_secs(60)?));
/// let Outcome::Reserved { reservations, .. } = decide(&mut state, &reserve, Timestamp::from_millis(0))? else {
///     unreachable!("a reserve answers Reserved");
/// };
///
/// let hold = &reservations[0];
/// assert_eq!((hold.status(), hold.quantity()), (ReservationStatus::Pending, 2));
/// assert_eq!(hold.expires_at(), Timestamp::from_millis(60_000));
/// assert!(!hold.is_overdue(Timestamp::from_millis(59_999)));
/// assert!(hold.is_overdue(Timestamp::from_millis(60_000))); // a sweep may now expire it
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Reservation {
    id: ReservationId,
    product_id: ProductId,
    order_id: OrderId,
    quantity: Quantity,
    status: ReservationStatus,
    expires_at: Timestamp,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl Reservation {
    pub(crate) fn new(
        id: ReservationId,
        order_id: OrderId,
        product_id: ProductId,
        quantity: Quantity,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Self {
        debug_assert!(expires_at > now);
        Self {
            id,
            product_id,
            order_id,
            quantity,
            status: ReservationStatus::Pending,
            expires_at,
            created_at: now,
            updated_at: now,
        }
    }

    /// Rebuilds a reservation from stored fields.
    ///
    /// # Errors
    /// [`Error::Storage`] when the quantity is out of bounds (the store is corrupt).
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        id: ReservationId,
        order_id: OrderId,
        product_id: ProductId,
        quantity: u64,
        status: ReservationStatus,
        expires_at: Timestamp,
        created_at: Timestamp,
        updated_at: Timestamp,
    ) -> Result<Self, Error> {
        let quantity = Quantity::new(quantity).map_err(|_| Error::Storage {
            reason: format!("corrupt reservation {id}: quantity {quantity}"),
        })?;
        Ok(Self {
            id,
            product_id,
            order_id,
            quantity,
            status,
            expires_at,
            created_at,
            updated_at,
        })
    }

    /// The reservation's id.
    pub fn id(&self) -> ReservationId {
        self.id
    }

    /// The product held.
    pub fn product_id(&self) -> ProductId {
        self.product_id
    }

    /// The order holding it.
    pub fn order_id(&self) -> OrderId {
        self.order_id
    }

    /// Units held (a count, as [`crate::InventoryItem`]'s and the events'
    /// counts are).
    pub fn quantity(&self) -> u64 {
        self.quantity.get()
    }

    /// Current state.
    pub fn status(&self) -> ReservationStatus {
        self.status
    }

    /// When the hold ends.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// When it was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When it last changed state.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }

    /// True when pending and its hold has run out at `now`.
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        self.status == ReservationStatus::Pending && now >= self.expires_at
    }

    /// Moves a pending reservation to a terminal state.
    pub(crate) fn finish(&mut self, to: ReservationStatus, now: Timestamp) {
        assert_eq!(
            self.status,
            ReservationStatus::Pending,
            "only pending reservations move"
        );
        assert!(
            to.is_terminal(),
            "a reservation only moves to a terminal state"
        );
        self.status = to;
        self.updated_at = now.max(self.updated_at);
        debug_assert!(self.status.is_terminal());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn pending() -> Reservation {
        Reservation::new(
            ReservationId::from_uuid(Uuid::from_u128(1)),
            OrderId::from_uuid(Uuid::from_u128(2)),
            ProductId::from_uuid(Uuid::from_u128(3)),
            Quantity::new(2).unwrap(),
            Timestamp::from_millis(0),
            Timestamp::from_millis(1000),
        )
    }

    #[test]
    fn status_names_round_trip() {
        for s in [
            ReservationStatus::Pending,
            ReservationStatus::Confirmed,
            ReservationStatus::Released,
            ReservationStatus::Expired,
        ] {
            assert_eq!(ReservationStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ReservationStatus::parse("nope"), None);
    }

    #[test]
    fn overdue_only_when_pending_and_past_expiry() {
        let mut r = pending();
        assert!(!r.is_overdue(Timestamp::from_millis(999)));
        assert!(r.is_overdue(Timestamp::from_millis(1000)));
        r.finish(ReservationStatus::Released, Timestamp::from_millis(1000));
        assert!(!r.is_overdue(Timestamp::from_millis(5000)));
    }

    #[test]
    #[should_panic(expected = "only pending reservations move")]
    fn terminal_states_do_not_move() {
        let mut r = pending();
        r.finish(ReservationStatus::Confirmed, Timestamp::from_millis(1));
        r.finish(ReservationStatus::Released, Timestamp::from_millis(2));
    }

    #[test]
    #[should_panic(expected = "terminal state")]
    fn cannot_move_back_to_pending() {
        pending().finish(ReservationStatus::Pending, Timestamp::from_millis(1));
    }

    #[test]
    fn restore_rejects_zero_quantity() {
        let r = Reservation::restore(
            ReservationId::from_uuid(Uuid::nil()),
            OrderId::from_uuid(Uuid::nil()),
            ProductId::from_uuid(Uuid::nil()),
            0,
            ReservationStatus::Pending,
            Timestamp::default(),
            Timestamp::default(),
            Timestamp::default(),
        );
        assert!(matches!(r, Err(Error::Storage { .. })));
    }
}
