//! The inventory item of one product and the audit record of a stock adjustment.

use crate::error::Error;
use crate::ids::ProductId;
use crate::value::{Actor, AdjustmentKey, Reason, Timestamp, Version, STOCK_MAX};

/// Stock of one product: units on hand and units held by pending reservations.
///
/// Invariants, true of every value of this type: `reserved <= quantity <=
/// STOCK_MAX`, so `available() = quantity - reserved` never underflows. Only the
/// use cases of this crate change an item; stores rebuild one with
/// [`InventoryItem::restore`], which checks the invariants.
///
/// ```
/// use inventory_core::*;
///
/// let product = ProductId::from(Uuid::from_u128(1));
/// let t0 = Timestamp::from_millis(0);
/// let item = InventoryItem::restore(product, 10, 3, Version::INITIAL, t0, t0)?;
/// // Ten on the shelf, three of them held for orders: seven left to sell.
/// assert_eq!((item.quantity(), item.reserved(), item.available()), (10, 3, 7));
///
/// // More held than on hand cannot exist: a store that reads it is corrupt.
/// assert!(matches!(InventoryItem::restore(product, 2, 3, Version::INITIAL, t0, t0), Err(Error::Storage { .. })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct InventoryItem {
    product_id: ProductId,
    quantity: u64,
    reserved: u64,
    version: Version,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl InventoryItem {
    pub(crate) fn new(product_id: ProductId, quantity: u64, now: Timestamp) -> Self {
        debug_assert!(quantity <= STOCK_MAX);
        Self {
            product_id,
            quantity,
            reserved: 0,
            version: Version::INITIAL,
            created_at: now,
            updated_at: now,
        }
    }

    /// Rebuilds an item from stored fields.
    ///
    /// # Errors
    /// [`Error::Storage`] when the fields break an invariant (the store is corrupt).
    pub fn restore(
        product_id: ProductId,
        quantity: u64,
        reserved: u64,
        version: Version,
        created_at: Timestamp,
        updated_at: Timestamp,
    ) -> Result<Self, Error> {
        if reserved > quantity || quantity > STOCK_MAX {
            return Err(Error::Storage {
                reason: format!(
                    "corrupt item {product_id}: quantity {quantity}, reserved {reserved}"
                ),
            });
        }
        Ok(Self {
            product_id,
            quantity,
            reserved,
            version,
            created_at,
            updated_at,
        })
    }

    /// The product this item counts.
    pub fn product_id(&self) -> ProductId {
        self.product_id
    }

    /// Units on hand (including reserved ones).
    pub fn quantity(&self) -> u64 {
        self.quantity
    }

    /// Units held by pending reservations.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Units that can still be reserved.
    pub fn available(&self) -> u64 {
        self.quantity - self.reserved
    }

    /// The optimistic-locking version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// When the item was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When the item last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }

    pub(crate) fn hold(&mut self, units: u64) {
        assert!(units <= self.available(), "hold beyond available");
        self.reserved += units;
    }

    pub(crate) fn unhold(&mut self, units: u64) {
        assert!(units <= self.reserved, "unhold beyond reserved");
        self.reserved -= units;
    }

    pub(crate) fn ship(&mut self, units: u64) {
        assert!(units <= self.reserved, "ship beyond reserved");
        self.reserved -= units;
        self.quantity -= units;
    }

    pub(crate) fn set_quantity(&mut self, quantity: u64) {
        assert!(quantity >= self.reserved && quantity <= STOCK_MAX);
        self.quantity = quantity;
    }

    pub(crate) fn bump(&mut self, now: Timestamp) {
        self.version = self.version.next();
        self.updated_at = now.max(self.updated_at);
    }
}

/// One entry of the stock ledger: every change of the quantity on hand other
/// than a confirmed sale is recorded here, with who and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Adjustment {
    /// The product.
    pub product_id: ProductId,
    /// Signed change in units.
    pub delta: i64,
    /// Quantity on hand before.
    pub quantity_before: u64,
    /// Quantity on hand after.
    pub quantity_after: u64,
    /// Why.
    pub reason: Reason,
    /// Who.
    pub actor: Actor,
    /// When.
    pub at: Timestamp,
    /// The idempotency key it was made under, if any.
    pub key: Option<AdjustmentKey>,
}
