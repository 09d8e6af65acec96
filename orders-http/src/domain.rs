//! The orders domain: ids, money, statuses, order lines, the order itself, and
//! turning a client's item list into priced lines (prices come only from the
//! catalog).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::Product;

/// Most distinct products in one order. Bounds the reservation call, the
/// stored rows and the work one request can cause.
pub const LINES_MAX: usize = 50;

/// Fewest units of a product in one order.
pub const LINE_QUANTITY_MIN: u32 = 1;

/// Most units of one product in one order (after merging duplicate lines):
/// more looks like a mistake or abuse, not a shopper.
pub const LINE_QUANTITY_MAX: u32 = 100;

/// Longest `Idempotency-Key` accepted, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 128;

/// Longest user id (a token's `sub`) kept, in bytes.
pub const USER_ID_LEN_MAX: usize = 200;

/// An order's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps a UUID.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A catalog product's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductId(Uuid);

impl ProductId {
    /// Wraps a UUID.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who placed an order: the subject of the caller's token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Validates a subject: 1 to [`USER_ID_LEN_MAX`] bytes.
    ///
    /// # Errors
    /// [`OrderError::InvalidUser`] otherwise.
    pub fn parse(subject: &str) -> Result<Self, OrderError> {
        if subject.is_empty() || subject.len() > USER_ID_LEN_MAX {
            return Err(OrderError::InvalidUser);
        }
        Ok(Self(subject.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client's `Idempotency-Key`: 1 to [`IDEMPOTENCY_KEY_LEN_MAX`] visible ASCII
/// characters. Scoped to the user who sent it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates a key.
    ///
    /// # Errors
    /// [`OrderError::InvalidIdempotencyKey`] when empty, too long or not
    /// visible ASCII.
    pub fn parse(value: &str) -> Result<Self, OrderError> {
        let ok = !value.is_empty()
            && value.len() <= IDEMPOTENCY_KEY_LEN_MAX
            && value.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(OrderError::InvalidIdempotencyKey)
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why an order was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Inventory could not hold every line.
    OutOfStock,
    /// The payment provider declined the charge.
    PaymentDeclined,
    /// The payment provider refused the charge as likely fraud.
    FraudSuspected,
    /// Inventory stayed unreachable past the pending deadline.
    InventoryUnavailable,
    /// The hold ran out before confirm and the stock could not be held again;
    /// the payment was refunded.
    ReservationExpired,
    /// The customer cancelled while the order was pending.
    CancelledByUser,
}

impl CancelReason {
    /// Every reason, in a fixed order.
    pub const ALL: [CancelReason; 6] = [
        Self::OutOfStock,
        Self::PaymentDeclined,
        Self::FraudSuspected,
        Self::InventoryUnavailable,
        Self::ReservationExpired,
        Self::CancelledByUser,
    ];

    /// The snake_case spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::PaymentDeclined => "payment_declined",
            Self::FraudSuspected => "fraud_suspected",
            Self::InventoryUnavailable => "inventory_unavailable",
            Self::ReservationExpired => "reservation_expired",
            Self::CancelledByUser => "cancelled_by_user",
        }
    }

    /// Parses the snake_case spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Where an order stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Accepted; the saga is still running.
    Pending,
    /// Stock confirmed and paid.
    Confirmed,
    /// Undone, for the given reason; nothing is held and nothing is charged.
    Cancelled(CancelReason),
}

impl OrderStatus {
    /// `pending`, `confirmed` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Cancelled(_) => "cancelled",
        }
    }

    /// The cancel reason, for a cancelled order.
    pub fn reason(self) -> Option<CancelReason> {
        match self {
            Self::Cancelled(r) => Some(r),
            _ => None,
        }
    }

    /// Whether the order will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending)
    }

    /// Rebuilds a status from its stored parts.
    pub fn from_parts(status: &str, reason: Option<&str>) -> Option<Self> {
        match (status, reason) {
            ("pending", None) => Some(Self::Pending),
            ("confirmed", None) => Some(Self::Confirmed),
            ("cancelled", Some(r)) => CancelReason::parse(r).map(Self::Cancelled),
            _ => None,
        }
    }
}

/// One priced line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product.
    pub product_id: ProductId,
    /// The product's name when the order was placed.
    pub name: String,
    /// Units ordered.
    pub quantity: u32,
    /// Catalog price of one unit, in minor units.
    pub unit_price_minor: i64,
    /// `quantity * unit_price_minor`.
    pub line_total_minor: i64,
}

/// An order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// Its id.
    pub id: OrderId,
    /// Who placed it.
    pub user_id: UserId,
    /// Where it stands.
    pub status: OrderStatus,
    /// The lines, one per product, sorted by product id.
    pub lines: Vec<OrderLine>,
    /// Sum of the line totals, in minor units.
    pub total_minor: i64,
    /// ISO 4217 currency of every line.
    pub currency: String,
    /// The client's idempotency key, if one was sent.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Canonical text of the requested items (for idempotent repeats).
    pub fingerprint: String,
    /// When it was placed, in Unix milliseconds.
    pub created_at_ms: i64,
    /// When it last changed, in Unix milliseconds.
    pub updated_at_ms: i64,
}

/// One requested line, as the client sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedItem {
    /// The product.
    pub product_id: Uuid,
    /// Units wanted.
    pub quantity: i64,
}

/// The items of an order after validation: one entry per product (duplicates
/// merged), sorted by product id, every quantity within bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderItems(Vec<(ProductId, u32)>);

impl OrderItems {
    /// Validates and merges the client's items.
    ///
    /// # Errors
    /// [`OrderError::NoItems`], [`OrderError::TooManyLines`] or
    /// [`OrderError::InvalidQuantity`].
    pub fn parse(items: &[RequestedItem]) -> Result<Self, OrderError> {
        if items.is_empty() {
            return Err(OrderError::NoItems);
        }
        let mut merged: BTreeMap<ProductId, i64> = BTreeMap::new();
        for item in items {
            check_quantity(item.product_id, item.quantity)?;
            *merged.entry(ProductId(item.product_id)).or_default() += item.quantity;
            if merged.len() > LINES_MAX {
                return Err(OrderError::TooManyLines);
            }
        }
        let mut lines = Vec::with_capacity(merged.len());
        for (product, quantity) in merged {
            if check_quantity(product.as_uuid(), quantity).is_err() {
                return Err(OrderError::MergedQuantity {
                    product_id: product,
                    quantity,
                });
            }
            lines.push((product, u32::try_from(quantity).unwrap_or(u32::MAX)));
        }
        Ok(Self(lines))
    }

    /// The merged lines.
    pub fn lines(&self) -> &[(ProductId, u32)] {
        &self.0
    }

    /// A canonical text of the items: equal for requests that mean the same
    /// order, whatever their line order or splitting.
    pub fn fingerprint(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(p, q)| format!("{p}x{q}")).collect();
        parts.join(",")
    }

    /// Prices every line from the catalog.
    ///
    /// # Errors
    /// [`OrderError::UnknownProduct`] for a product missing from `catalog` or
    /// inactive, [`OrderError::MixedCurrency`] when products differ in
    /// currency, [`OrderError::TotalTooLarge`] on overflow.
    pub fn price(&self, catalog: &[Product]) -> Result<(Vec<OrderLine>, i64, String), OrderError> {
        let mut lines = Vec::with_capacity(self.0.len());
        let mut total: i64 = 0;
        let mut currency: Option<&str> = None;
        for (product_id, quantity) in &self.0 {
            let product = catalog
                .iter()
                .find(|p| p.id == *product_id && p.active)
                .ok_or(OrderError::UnknownProduct(*product_id))?;
            match currency {
                Some(c) if c != product.currency => return Err(OrderError::MixedCurrency),
                _ => currency = Some(&product.currency),
            }
            let line_total = product
                .price_minor
                .checked_mul(i64::from(*quantity))
                .ok_or(OrderError::TotalTooLarge)?;
            total = total
                .checked_add(line_total)
                .ok_or(OrderError::TotalTooLarge)?;
            lines.push(OrderLine {
                product_id: *product_id,
                name: product.name.clone(),
                quantity: *quantity,
                unit_price_minor: product.price_minor,
                line_total_minor: line_total,
            });
        }
        Ok((lines, total, currency.unwrap_or_default().to_owned()))
    }
}

fn check_quantity(product: Uuid, quantity: i64) -> Result<(), OrderError> {
    if (i64::from(LINE_QUANTITY_MIN)..=i64::from(LINE_QUANTITY_MAX)).contains(&quantity) {
        Ok(())
    } else {
        Err(OrderError::InvalidQuantity {
            product_id: ProductId(product),
            quantity,
        })
    }
}

/// Why an order request is refused (all are the client's fault: 400 when the
/// request breaks the document's schema, 422 when it fits the schema but a
/// rule the schema cannot state refuses it; see [`OrderError::fits_the_schema`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The item list is empty.
    #[error("an order needs at least one item")]
    NoItems,
    /// More distinct products than [`LINES_MAX`].
    #[error("an order may have at most {LINES_MAX} distinct products")]
    TooManyLines,
    /// A quantity outside [`LINE_QUANTITY_MIN`]..=[`LINE_QUANTITY_MAX`].
    #[error("quantity {quantity} of product {product_id} is outside {LINE_QUANTITY_MIN}..={LINE_QUANTITY_MAX}")]
    InvalidQuantity {
        /// The product.
        product_id: ProductId,
        /// The quantity asked (after merging duplicate lines).
        quantity: i64,
    },
    /// Lines of one product whose merged quantity is outside
    /// [`LINE_QUANTITY_MIN`]..=[`LINE_QUANTITY_MAX`] (each line is within).
    #[error("the lines of product {product_id} add up to {quantity}, outside {LINE_QUANTITY_MIN}..={LINE_QUANTITY_MAX}")]
    MergedQuantity {
        /// The product.
        product_id: ProductId,
        /// The merged quantity.
        quantity: i64,
    },
    /// A product the catalog does not sell.
    #[error("product {0} is unknown or not for sale")]
    UnknownProduct(ProductId),
    /// Products priced in different currencies.
    #[error("all products of an order must have the same currency")]
    MixedCurrency,
    /// The total does not fit in 64 bits.
    #[error("the order total is too large")]
    TotalTooLarge,
    /// The idempotency key is not acceptable.
    #[error("the idempotency key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} visible ascii characters")]
    InvalidIdempotencyKey,
    /// The token's subject is not a usable user id.
    #[error("the caller has no usable user id")]
    InvalidUser,
}

impl OrderError {
    /// True when a request the OpenAPI document's schema accepts can still be
    /// refused this way (by the catalog's state or a rule across lines): such
    /// a refusal is 422, the others are 400 (ADR 0009).
    pub fn fits_the_schema(&self) -> bool {
        matches!(
            self,
            Self::MergedQuantity { .. }
                | Self::UnknownProduct(_)
                | Self::MixedCurrency
                | Self::TotalTooLarge
        )
    }

    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoItems => "no_items",
            Self::TooManyLines => "too_many_lines",
            Self::InvalidQuantity { .. } => "invalid_quantity",
            Self::MergedQuantity { .. } => "merged_quantity_out_of_range",
            Self::UnknownProduct(_) => "unknown_product",
            Self::MixedCurrency => "mixed_currency",
            Self::TotalTooLarge => "total_too_large",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::InvalidUser => "invalid_user",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(p: u128, q: i64) -> RequestedItem {
        RequestedItem {
            product_id: Uuid::from_u128(p),
            quantity: q,
        }
    }

    fn product(p: u128, price: i64, currency: &str, active: bool) -> Product {
        Product {
            id: ProductId(Uuid::from_u128(p)),
            name: format!("p{p}"),
            price_minor: price,
            currency: currency.into(),
            active,
            updated_at_ms: 0,
        }
    }

    /// Duplicate lines merge and sort; the fingerprint ignores line order.
    #[test]
    fn items_merge_and_fingerprint_is_canonical() {
        let a = OrderItems::parse(&[item(2, 1), item(1, 2), item(2, 3)]).unwrap();
        assert_eq!(
            a.lines(),
            &[
                (ProductId(Uuid::from_u128(1)), 2),
                (ProductId(Uuid::from_u128(2)), 4)
            ]
        );
        let b = OrderItems::parse(&[item(1, 2), item(2, 4)]).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    /// Empty lists, bad quantities and merged overflows are refused.
    #[test]
    fn bounds_are_enforced() {
        assert_eq!(OrderItems::parse(&[]), Err(OrderError::NoItems));
        assert!(matches!(
            OrderItems::parse(&[item(1, 0)]),
            Err(OrderError::InvalidQuantity { .. })
        ));
        assert!(matches!(
            OrderItems::parse(&[item(1, -3)]),
            Err(OrderError::InvalidQuantity { .. })
        ));
        let max = i64::from(LINE_QUANTITY_MAX);
        assert!(OrderItems::parse(&[item(1, max)]).is_ok());
        assert!(matches!(
            OrderItems::parse(&[item(1, max), item(1, 1)]),
            Err(OrderError::MergedQuantity { .. })
        ));
        let many: Vec<_> = (0..=LINES_MAX as u128).map(|p| item(p, 1)).collect();
        assert_eq!(OrderItems::parse(&many), Err(OrderError::TooManyLines));
    }

    /// Prices come from the catalog; unknown, inactive and mixed-currency
    /// products are refused.
    #[test]
    fn pricing_uses_the_catalog() {
        let catalog = [
            product(1, 250, "EUR", true),
            product(2, 1000, "EUR", true),
            product(3, 5, "EUR", false),
            product(4, 5, "USD", true),
        ];
        let items = OrderItems::parse(&[item(1, 2), item(2, 1)]).unwrap();
        let (lines, total, currency) = items.price(&catalog).unwrap();
        assert_eq!((total, currency.as_str()), (1500, "EUR"));
        assert_eq!(lines[0].line_total_minor, 500);
        let inactive = OrderItems::parse(&[item(3, 1)]).unwrap();
        assert!(matches!(
            inactive.price(&catalog),
            Err(OrderError::UnknownProduct(_))
        ));
        let unknown = OrderItems::parse(&[item(9, 1)]).unwrap();
        assert!(matches!(
            unknown.price(&catalog),
            Err(OrderError::UnknownProduct(_))
        ));
        let mixed = OrderItems::parse(&[item(1, 1), item(4, 1)]).unwrap();
        assert_eq!(mixed.price(&catalog), Err(OrderError::MixedCurrency));
    }

    /// Statuses round-trip through their stored parts.
    #[test]
    fn status_parts_round_trip() {
        for s in [
            OrderStatus::Pending,
            OrderStatus::Confirmed,
            OrderStatus::Cancelled(CancelReason::OutOfStock),
        ] {
            let reason = s.reason().map(CancelReason::as_str);
            assert_eq!(OrderStatus::from_parts(s.as_str(), reason), Some(s));
        }
        assert_eq!(OrderStatus::from_parts("cancelled", None), None);
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse("k-1").is_ok());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn items() -> impl Strategy<Value = Vec<RequestedItem>> {
            proptest::collection::vec((0u128..8, 1i64..=20), 1..12).prop_map(|v| {
                v.into_iter()
                    .map(|(p, q)| RequestedItem {
                        product_id: Uuid::from_u128(p),
                        quantity: q,
                    })
                    .collect()
            })
        }

        proptest! {
            /// Merging keeps every unit, one line per product, sorted; the
            /// fingerprint does not depend on the order of the lines.
            #[test]
            fn merging_keeps_units_and_ignores_line_order(lines in items(), seed in any::<u64>()) {
                let parsed = OrderItems::parse(&lines);
                let mut sums: BTreeMap<Uuid, i64> = BTreeMap::new();
                for l in &lines {
                    *sums.entry(l.product_id).or_default() += l.quantity;
                }
                if sums.values().any(|q| *q > i64::from(LINE_QUANTITY_MAX)) {
                    let refused = matches!(parsed, Err(OrderError::MergedQuantity { .. }));
                    prop_assert!(refused, "a merged quantity above the bound is refused");
                    return Ok(());
                }
                let parsed = parsed.unwrap();
                let got: Vec<(Uuid, i64)> = parsed.lines().iter().map(|(p, q)| (p.as_uuid(), i64::from(*q))).collect();
                let want: Vec<(Uuid, i64)> = sums.into_iter().collect();
                prop_assert_eq!(got, want);
                let mut shuffled = lines.clone();
                let len = shuffled.len();
                shuffled.rotate_left((seed as usize) % len);
                shuffled.reverse();
                prop_assert_eq!(OrderItems::parse(&shuffled).unwrap().fingerprint(), parsed.fingerprint());
            }
        }
    }
}
