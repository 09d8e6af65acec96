//! Commands: every change a store can make, each validated when built, and what
//! each one returns.

use std::collections::BTreeSet;

use crate::error::Error;
use crate::ids::{OrderId, ProductId, ReservationId};
use crate::item::InventoryItem;
use crate::reservation::Reservation;
use crate::value::{Actor, AdjustmentKey, Quantity, Reason, StockDelta, StockLevel, Ttl, Version};

/// Most lines one multi-line reservation may hold. Each line locks one item, so
/// this bounds how long one change holds locks.
pub const LINES_MAX: usize = 100;

/// Most overdue reservations of one item that a reserve expires on the way
/// (lazy expiry). Bounds the work one reserve can do; the sweep does the rest.
pub const LAZY_EXPIRY_MAX: usize = 64;

/// Largest batch of reservations one expiry sweep step handles.
pub const EXPIRE_BATCH_MAX: usize = 1_000;

/// One line of a reservation: a product, a quantity and the id the reservation
/// gets if it is created now.
///
/// [`ReservationId::for_line`] gives the id [`crate::InventoryStoreExt`] uses,
/// so a repeat of the same order line finds the same reservation.
///
/// ```
/// use inventory_core::{OrderId, ProductId, Quantity, ReservationId, ReserveLine, Uuid};
///
/// let (order, product) = (OrderId::from(Uuid::from_u128(1)), ProductId::from(Uuid::from_u128(2)));
/// let line = ReserveLine {
///     product_id: product,
///     quantity: Quantity::new(3)?,
///     reservation_id: ReservationId::for_line(order, product),
/// };
/// assert_eq!(line.quantity.get(), 3);
/// # Ok::<(), inventory_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReserveLine {
    /// The product to hold.
    pub product_id: ProductId,
    /// Units to hold.
    pub quantity: Quantity,
    /// Id of the new reservation (ignored when the line already exists).
    pub reservation_id: ReservationId,
}

/// Hold stock for an order: one or more lines, all or nothing.
///
/// Built only by [`Reserve::new`], which rejects an empty list, more than
/// [`LINES_MAX`] lines, and the same product twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserve {
    order_id: OrderId,
    lines: Vec<ReserveLine>,
    ttl: Ttl,
}

impl Reserve {
    /// Validates a reservation request.
    ///
    /// ```
    /// use inventory_core::*;
    ///
    /// let order = OrderId::from(Uuid::from_u128(1));
    /// let line = |n: u128| {
    ///     let product = ProductId::from(Uuid::from_u128(n));
    ///     let reservation_id = ReservationId::for_line(order, product);
    ///     ReserveLine { product_id: product, quantity: Quantity::new(1).unwrap(), reservation_id }
    /// };
    /// // A basket of two products, held for ten minutes, all or nothing.
    /// let basket = Reserve::new(order, vec![line(10), line(11)], Ttl::from_secs(600)?)?;
    /// assert_eq!(basket.lines().len(), 2);
    ///
    /// let twice = Reserve::new(order, vec![line(10), line(10)], Ttl::default());
    /// assert!(matches!(twice, Err(Error::DuplicateProduct { .. })));
    /// assert!(matches!(Reserve::new(order, vec![], Ttl::default()), Err(Error::InvalidInput { field: "lines", .. })));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `lines` when empty or too long; on
    /// field `reservation_id` when two lines share a reservation id;
    /// [`Error::DuplicateProduct`] when a product appears twice.
    pub fn new(order_id: OrderId, lines: Vec<ReserveLine>, ttl: Ttl) -> Result<Self, Error> {
        if lines.is_empty() || lines.len() > LINES_MAX {
            return Err(Error::InvalidInput {
                field: "lines",
                reason: format!("must hold 1 to {LINES_MAX} lines"),
            });
        }
        let mut products = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for line in &lines {
            if !products.insert(line.product_id) {
                return Err(Error::DuplicateProduct {
                    product_id: line.product_id,
                });
            }
            if !ids.insert(line.reservation_id) {
                return Err(Error::InvalidInput {
                    field: "reservation_id",
                    reason: format!("{} names more than one line", line.reservation_id),
                });
            }
        }
        Ok(Self {
            order_id,
            lines,
            ttl,
        })
    }

    /// A single-line reservation (always valid).
    ///
    /// ```
    /// use inventory_core::*;
    ///
    /// let (order, product) = (OrderId::from(Uuid::from_u128(1)), ProductId::from(Uuid::from_u128(2)));
    /// let reservation_id = ReservationId::for_line(order, product);
    /// let line = ReserveLine { product_id: product, quantity: Quantity::new(2)?, reservation_id };
    /// let reserve = Reserve::single(order, line.clone(), Ttl::default());
    /// assert_eq!(reserve.lines(), [line]);
    /// assert_eq!(reserve.ttl().as_millis(), RESERVATION_TTL_DEFAULT_MS);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn single(order_id: OrderId, line: ReserveLine, ttl: Ttl) -> Self {
        Self {
            order_id,
            lines: vec![line],
            ttl,
        }
    }

    /// The order.
    pub fn order_id(&self) -> OrderId {
        self.order_id
    }

    /// The lines, in the order given.
    pub fn lines(&self) -> &[ReserveLine] {
        &self.lines
    }

    /// How long the hold lasts.
    pub fn ttl(&self) -> Ttl {
        self.ttl
    }
}

/// A change to the inventory. Each runs atomically: it happens entirely or not at
/// all (except that overdue reservations met on the way may be expired).
///
/// Run one with [`crate::decide()`] or [`crate::InventoryStore::execute`]; the
/// common ones also have a method of [`crate::InventoryStoreExt`]. A store
/// reads what a command touches with [`Command::products`] and
/// [`Command::reservation_id`].
///
/// ```
/// use inventory_core::*;
///
/// let product = ProductId::from(Uuid::from_u128(1));
/// // Two units broken in the warehouse, recorded once however often it is sent.
/// let write_off = Command::Adjust {
///     product_id: product,
///     delta: StockDelta::new(-2)?,
///     reason: Reason::new("damaged in the warehouse")?,
///     actor: Actor::new("picker-7")?,
///     key: Some(AdjustmentKey::new("damage-2024-118")?),
/// };
/// assert_eq!(write_off.products(), [product]);
///
/// let reservation_id = ReservationId::from(Uuid::from_u128(9));
/// let confirm = Command::Confirm { reservation_id };
/// assert_eq!((confirm.reservation_id(), confirm.products()), (Some(reservation_id), vec![]));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Create the item of a product with an initial quantity on hand.
    CreateItem {
        /// The product.
        product_id: ProductId,
        /// Initial units on hand.
        quantity: StockLevel,
        /// Who created it.
        actor: Actor,
    },
    /// Hold stock for an order.
    Reserve(Reserve),
    /// Sell the units of a pending reservation.
    Confirm {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// Give back the units of a pending reservation.
    Release {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// Give back the units of a reservation whose hold ran out; does nothing if
    /// it is not pending or not yet due.
    Expire {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// Change the quantity on hand by a signed delta.
    ///
    /// With a `key`, the adjustment happens at most once per product: when the
    /// product's ledger already holds an entry under that key, the command
    /// changes nothing and answers the item as it is, or refuses with
    /// [`crate::Error::AdjustmentKeyConflict`] when that entry's delta differs.
    Adjust {
        /// The product.
        product_id: ProductId,
        /// Units to add (positive) or remove (negative).
        delta: StockDelta,
        /// Why.
        reason: Reason,
        /// Who.
        actor: Actor,
        /// Idempotency key, recorded in the ledger entry.
        key: Option<AdjustmentKey>,
    },
    /// Set the quantity on hand, if the item is still at `expected_version`.
    SetQuantity {
        /// The product.
        product_id: ProductId,
        /// New units on hand.
        quantity: StockLevel,
        /// The version the caller read.
        expected_version: Version,
        /// Why.
        reason: Reason,
        /// Who.
        actor: Actor,
    },
}

impl Command {
    /// Products this command touches directly, sorted and without repeats.
    /// Commands naming a reservation also touch that reservation's product,
    /// which a store learns by loading the reservation.
    pub fn products(&self) -> Vec<ProductId> {
        let mut ids: Vec<ProductId> = match self {
            Command::CreateItem { product_id, .. }
            | Command::Adjust { product_id, .. }
            | Command::SetQuantity { product_id, .. } => vec![*product_id],
            Command::Reserve(r) => r.lines.iter().map(|l| l.product_id).collect(),
            Command::Confirm { .. } | Command::Release { .. } | Command::Expire { .. } => vec![],
        };
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The reservation this command names, if any.
    pub fn reservation_id(&self) -> Option<ReservationId> {
        match self {
            Command::Confirm { reservation_id }
            | Command::Release { reservation_id }
            | Command::Expire { reservation_id } => Some(*reservation_id),
            _ => None,
        }
    }

    /// True when the command may expire overdue reservations of its products on
    /// the way (so a store must make them visible).
    pub fn expires_lazily(&self) -> bool {
        matches!(self, Command::Reserve(_))
    }
}

/// What a successful command returns, read after the change.
///
/// Each command has one variant (a create answers [`Outcome::Created`], a
/// reserve [`Outcome::Reserved`] ...); the `created` and `changed` flags tell
/// a first run from an idempotent repeat.
///
/// ```
/// use inventory_core::*;
///
/// # let product = ProductId::from(Uuid::from_u128(1));
/// # let now = Timestamp::from_millis(0);
/// # let mut state = Snapshot::new();
/// # let create = Command::CreateItem { product_id: product, quantity: StockLevel::new(5)?, actor: Actor::system() };
/// # decide(&mut state, &create, now)?;
/// let order = OrderId::from(Uuid::from_u128(2));
/// let reservation_id = ReservationId::for_line(order, product);
/// let line = ReserveLine { product_id: product, quantity: Quantity::new(1)?, reservation_id };
/// let reserve = Command::Reserve(Reserve::single(order, line, Ttl::default()));
///
/// let Outcome::Reserved { reservations, created } = decide(&mut state, &reserve, now)? else {
///     unreachable!("a reserve answers Reserved");
/// };
/// assert!(created);
/// // Sent again (a retry after a lost answer): the same hold, nothing new.
/// let again = decide(&mut state, &reserve, now)?;
/// assert_eq!(again, Outcome::Reserved { reservations, created: false });
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The item was created.
    Created(InventoryItem),
    /// The order holds these reservations, one per line in the order given.
    Reserved {
        /// One per line.
        reservations: Vec<Reservation>,
        /// False when every line already existed (an idempotent repeat).
        created: bool,
    },
    /// The reservation as it is now, after confirm, release or expire.
    Reservation {
        /// The reservation.
        reservation: Reservation,
        /// False when it was already in the requested state (or, for expire,
        /// not due), so nothing changed.
        changed: bool,
    },
    /// The item after an adjustment or a set.
    Item {
        /// The item.
        item: InventoryItem,
        /// False when the set asked for the quantity already on hand.
        changed: bool,
    },
}
