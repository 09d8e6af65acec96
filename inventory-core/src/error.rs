//! The one error enum of the inventory use cases and of the storage port: each
//! variant is something a caller can act on.

use crate::ids::{OrderId, ProductId, ReservationId};
use crate::reservation::ReservationStatus;
use crate::value::{Timestamp, Version};

/// Why an inventory operation did not happen.
///
/// Every variant but [`Error::Unavailable`], [`Error::Contention`],
/// [`Error::Overloaded`] and [`Error::Storage`] is a business outcome: the state is unchanged (except that
/// overdue reservations met on the way may have been expired) and retrying the
/// same request gives the same answer. Those four are operating errors.
///
/// ```
/// use inventory_core::*;
///
/// let product = ProductId::from(Uuid::from_u128(1));
/// let order = OrderId::from(Uuid::from_u128(2));
/// let reservation_id = ReservationId::for_line(order, product);
/// let line = ReserveLine { product_id: product, quantity: Quantity::new(1)?, reservation_id };
/// let reserve = Command::Reserve(Reserve::single(order, line, Ttl::default()));
///
/// match decide(&mut Snapshot::new(), &reserve, Timestamp::from_millis(0)) {
///     Err(Error::ProductNotFound { product_id }) => assert_eq!(product_id, product),
///     other => panic!("no item was created: {other:?}"),
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer units are available than were asked for.
    #[error(
        "insufficient stock for product {product_id}: requested {requested}, available {available}"
    )]
    InsufficientStock {
        /// The product that ran short.
        product_id: ProductId,
        /// Units asked for.
        requested: u64,
        /// Units available when asked.
        available: u64,
    },
    /// The quantity on hand may not drop below what is reserved.
    #[error(
        "stock of product {product_id} cannot go to {requested}: {reserved} units are reserved"
    )]
    BelowReserved {
        /// The product.
        product_id: ProductId,
        /// The quantity on hand the change would have left.
        requested: i64,
        /// Units currently reserved.
        reserved: u64,
    },
    /// No inventory item exists for the product.
    #[error("product {product_id} not found")]
    ProductNotFound {
        /// The unknown product.
        product_id: ProductId,
    },
    /// No reservation has that id.
    #[error("reservation {reservation_id} not found")]
    ReservationNotFound {
        /// The unknown reservation.
        reservation_id: ReservationId,
    },
    /// The reservation's hold ran out before it was confirmed.
    #[error("reservation {reservation_id} expired at {} ms", expires_at.as_millis())]
    ReservationExpired {
        /// The expired reservation.
        reservation_id: ReservationId,
        /// When its hold ended.
        expires_at: Timestamp,
    },
    /// The reservation is in a state the requested transition cannot leave.
    #[error("reservation {reservation_id} cannot go from {from} to {to}")]
    InvalidTransition {
        /// The reservation.
        reservation_id: ReservationId,
        /// Its current state.
        from: ReservationStatus,
        /// The state asked for.
        to: ReservationStatus,
    },
    /// The item changed since the caller read it (optimistic locking).
    #[error("version conflict on product {product_id}: expected {expected}, actual {actual}")]
    VersionConflict {
        /// The product.
        product_id: ProductId,
        /// The version the caller expected.
        expected: Version,
        /// The item's current version.
        actual: Version,
    },
    /// An inventory item already exists for the product.
    #[error("product {product_id} already exists")]
    AlreadyExists {
        /// The product.
        product_id: ProductId,
    },
    /// An adjustment would take an item's stock above [`crate::STOCK_MAX`]
    /// (the request is well formed; the item's current stock refuses it).
    #[error(
        "product {product_id}: a stock of {requested} is above the maximum {}",
        crate::STOCK_MAX
    )]
    AboveStockMax {
        /// The product.
        product_id: ProductId,
        /// The stock the change would reach.
        requested: i64,
    },
    /// A multi-line reservation names a product on more than one line.
    #[error("product {product_id} appears on more than one line")]
    DuplicateProduct {
        /// The product.
        product_id: ProductId,
    },
    /// A quantity is outside its bounds.
    #[error("invalid quantity {value}: must be between {min} and {max}")]
    InvalidQuantity {
        /// The value given.
        value: i64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// Some other input is malformed (a TTL out of bounds, too many lines ...).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which input.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The same `(order, product)` was reserved before with a different quantity.
    #[error("order {order_id} already reserved {existing} units of product {product_id}, not {requested}")]
    IdempotencyConflict {
        /// The order.
        order_id: OrderId,
        /// The product.
        product_id: ProductId,
        /// Units in the existing reservation.
        existing: u64,
        /// Units asked for now.
        requested: u64,
    },
    /// The product's ledger holds an adjustment under this idempotency key
    /// with another delta: the key was reused for a different change.
    #[error("adjustment key {key} of product {product_id} was used for a delta of {existing}, not {requested}")]
    AdjustmentKeyConflict {
        /// The product.
        product_id: ProductId,
        /// The key.
        key: String,
        /// Delta recorded under the key.
        existing: i64,
        /// Delta asked for now.
        requested: i64,
    },
    /// Too many changes are already waiting for the store (a bounded queue in
    /// front of it is full); nothing was done, retry after a short while.
    #[error("too many changes are waiting for the store, try again")]
    Overloaded,
    /// The store gave up after a bounded number of optimistic retries.
    #[error("too much contention on the store, try again")]
    Contention,
    /// The store cannot be reached (connection refused or lost, pool timed out).
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// What failed, for logs (never shown to clients).
        reason: String,
    },
    /// Any other store failure; the state is unchanged.
    #[error("storage failure: {reason}")]
    Storage {
        /// What failed, for logs (never shown to clients).
        reason: String,
    },
}

impl Error {
    /// Every code [`Error::code`] can return, for documents and clients that
    /// list them (the HTTP contract's tests check each one is documented).
    pub const CODES: [&'static str; 16] = [
        "insufficient_stock",
        "below_reserved",
        "product_not_found",
        "reservation_not_found",
        "reservation_expired",
        "invalid_transition",
        "version_conflict",
        "already_exists",
        "invalid_quantity",
        "above_stock_max",
        "duplicate_product",
        "invalid_request",
        "idempotency_conflict",
        "contention",
        "overloaded",
        "store_unavailable",
    ];

    /// A stable snake_case code for this error, used in problem+json bodies
    /// (one of [`Error::CODES`], or `internal_error` for a storage failure).
    ///
    /// ```
    /// use inventory_core::{Error, ProductId, Uuid};
    ///
    /// let sold_out = Error::InsufficientStock { product_id: ProductId::from(Uuid::nil()), requested: 2, available: 1 };
    /// assert_eq!(sold_out.code(), "insufficient_stock");
    /// assert!(Error::CODES.contains(&sold_out.code()));
    /// assert_eq!(Error::Storage { reason: "disk full".into() }.code(), "internal_error");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::InsufficientStock { .. } => "insufficient_stock",
            Error::BelowReserved { .. } => "below_reserved",
            Error::ProductNotFound { .. } => "product_not_found",
            Error::ReservationNotFound { .. } => "reservation_not_found",
            Error::ReservationExpired { .. } => "reservation_expired",
            Error::InvalidTransition { .. } => "invalid_transition",
            Error::VersionConflict { .. } => "version_conflict",
            Error::AlreadyExists { .. } => "already_exists",
            Error::InvalidQuantity { .. } => "invalid_quantity",
            Error::AboveStockMax { .. } => "above_stock_max",
            Error::DuplicateProduct { .. } => "duplicate_product",
            Error::InvalidInput { .. } => "invalid_request",
            Error::IdempotencyConflict { .. } | Error::AdjustmentKeyConflict { .. } => {
                "idempotency_conflict"
            }
            Error::Contention => "contention",
            Error::Overloaded => "overloaded",
            Error::Unavailable { .. } => "store_unavailable",
            Error::Storage { .. } => "internal_error",
        }
    }

    /// True for operating errors (the request may succeed if retried later).
    ///
    /// ```
    /// use inventory_core::Error;
    ///
    /// /// Runs `op` again while the store says "try again", at most `tries` times.
    /// fn with_retries<T>(tries: usize, mut op: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    ///     let mut result = op();
    ///     for _ in 1..tries {
    ///         if !matches!(&result, Err(e) if e.is_transient()) { break; }
    ///         result = op();
    ///     }
    ///     result
    /// }
    ///
    /// let mut answers = vec![Ok(7), Err(Error::Contention)];
    /// assert_eq!(with_retries(3, || answers.pop().unwrap()), Ok(7));
    /// assert!(!Error::Storage { reason: "corrupt row".into() }.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Contention | Error::Overloaded | Error::Unavailable { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let e = Error::InsufficientStock {
            product_id: ProductId::from_uuid(uuid::Uuid::nil()),
            requested: 2,
            available: 1,
        };
        let msg = e.to_string();
        assert!(msg.starts_with("insufficient stock"));
        assert!(!msg.ends_with('.'));
        assert_eq!(e.code(), "insufficient_stock");
        assert!(!e.is_transient());
        assert!(Error::Contention.is_transient());
    }

    /// `CODES` is exactly the codes of the variants, apart from the storage
    /// failure's `internal_error` (answered as a plain 500).
    #[test]
    fn codes_lists_every_variant() {
        let p = ProductId::from_uuid(uuid::Uuid::nil());
        let r = ReservationId::from_uuid(uuid::Uuid::nil());
        let o = OrderId::from_uuid(uuid::Uuid::nil());
        let t = Timestamp::from_millis(0);
        let every = [
            Error::InsufficientStock {
                product_id: p,
                requested: 1,
                available: 0,
            },
            Error::BelowReserved {
                product_id: p,
                requested: 0,
                reserved: 1,
            },
            Error::ProductNotFound { product_id: p },
            Error::ReservationNotFound { reservation_id: r },
            Error::ReservationExpired {
                reservation_id: r,
                expires_at: t,
            },
            Error::InvalidTransition {
                reservation_id: r,
                from: ReservationStatus::Released,
                to: ReservationStatus::Confirmed,
            },
            Error::VersionConflict {
                product_id: p,
                expected: Version::INITIAL,
                actual: Version::INITIAL,
            },
            Error::AlreadyExists { product_id: p },
            Error::AboveStockMax {
                product_id: p,
                requested: 0,
            },
            Error::DuplicateProduct { product_id: p },
            Error::InvalidQuantity {
                value: 0,
                min: 1,
                max: 1,
            },
            Error::InvalidInput {
                field: "f",
                reason: String::new(),
            },
            Error::IdempotencyConflict {
                order_id: o,
                product_id: p,
                existing: 1,
                requested: 2,
            },
            Error::AdjustmentKeyConflict {
                product_id: p,
                key: String::new(),
                existing: 1,
                requested: 2,
            },
            Error::Overloaded,
            Error::Contention,
            Error::Unavailable {
                reason: String::new(),
            },
            Error::Storage {
                reason: String::new(),
            },
        ];
        // A new variant fails to compile here until it is listed above.
        for e in &every {
            match e {
                Error::InsufficientStock { .. }
                | Error::BelowReserved { .. }
                | Error::ProductNotFound { .. }
                | Error::ReservationNotFound { .. }
                | Error::ReservationExpired { .. }
                | Error::InvalidTransition { .. }
                | Error::VersionConflict { .. }
                | Error::AlreadyExists { .. }
                | Error::AboveStockMax { .. }
                | Error::DuplicateProduct { .. }
                | Error::InvalidQuantity { .. }
                | Error::InvalidInput { .. }
                | Error::IdempotencyConflict { .. }
                | Error::AdjustmentKeyConflict { .. }
                | Error::Overloaded
                | Error::Contention
                | Error::Unavailable { .. }
                | Error::Storage { .. } => {}
            }
        }
        let mut codes: Vec<&str> = every
            .iter()
            .map(Error::code)
            .filter(|c| *c != "internal_error")
            .collect();
        codes.sort_unstable();
        codes.dedup();
        let mut listed = Error::CODES.to_vec();
        listed.sort_unstable();
        assert_eq!(codes, listed);
    }
}
