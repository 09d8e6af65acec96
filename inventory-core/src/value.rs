//! Value objects: quantities, deltas, durations, instants and short texts, each
//! built only through a validating constructor so an invalid value cannot exist.

use std::fmt;

use crate::error::Error;

/// Largest quantity one reservation line may hold. Large enough for any basket,
/// small enough that a typo (an extra few zeros) is caught at the boundary.
pub const QUANTITY_MAX: u64 = 1_000_000;

/// Largest quantity on hand one item may hold. Sums of reservations of one item
/// stay far below `u64::MAX`, so arithmetic on stock never overflows.
pub const STOCK_MAX: u64 = 1_000_000_000;

/// Shortest hold a reservation may ask for: one second.
pub const RESERVATION_TTL_MIN_MS: u64 = 1_000;

/// Longest hold a reservation may ask for: one day. Longer holds hide stock from
/// every other buyer for too long.
pub const RESERVATION_TTL_MAX_MS: u64 = 86_400_000;

/// Hold used when the caller does not ask for one: fifteen minutes, the usual
/// time to pay.
pub const RESERVATION_TTL_DEFAULT_MS: u64 = 900_000;

/// Longest adjustment reason, in characters.
pub const REASON_LEN_MAX: usize = 200;

/// Longest actor name (who made an adjustment), in characters.
pub const ACTOR_LEN_MAX: usize = 100;

/// Longest adjustment idempotency key, in characters: room for a UUID with a
/// prefix, short enough to index.
pub const ADJUSTMENT_KEY_LEN_MAX: usize = 128;

/// An instant, in milliseconds since the Unix epoch (UTC).
///
/// The domain never reads a clock: every use case takes `now` as an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Timestamp(i64);

impl From<std::time::SystemTime> for Timestamp {
    /// The instant of a wall-clock reading, to the millisecond (before the
    /// epoch is the epoch; beyond `i64` milliseconds is the far future). The
    /// caller reads the clock: `Timestamp::from(SystemTime::now())`.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use inventory_core::Timestamp;
    ///
    /// let t = Timestamp::from(UNIX_EPOCH + Duration::from_millis(1_500));
    /// assert_eq!(t.as_millis(), 1_500);
    /// ```
    fn from(at: std::time::SystemTime) -> Self {
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self(ms)
    }
}

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch.
    ///
    /// ```
    /// use inventory_core::Timestamp;
    ///
    /// let t = Timestamp::from_millis(1_700_000_000_000);
    /// assert_eq!(t.as_millis(), 1_700_000_000_000);
    /// assert!(Timestamp::from_millis(0) < t);
    /// ```
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(&self) -> i64 {
        self.0
    }

    /// This instant plus `ms` milliseconds, saturating at the far future.
    ///
    /// ```
    /// use inventory_core::{Timestamp, Ttl};
    ///
    /// let now = Timestamp::from_millis(1_000);
    /// // When a hold made now would end.
    /// assert_eq!(now.plus_ms(Ttl::from_secs(60)?.as_millis()), Timestamp::from_millis(61_000));
    /// assert_eq!(now.plus_ms(u64::MAX).as_millis(), i64::MAX);
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    #[must_use]
    pub const fn plus_ms(self, ms: u64) -> Self {
        let ms = if ms > i64::MAX as u64 {
            i64::MAX
        } else {
            ms as i64
        };
        Self(self.0.saturating_add(ms))
    }

    /// This instant minus `ms` milliseconds, saturating at the far past: the
    /// other end of a window, such as a retention's.
    ///
    /// ```
    /// use inventory_core::Timestamp;
    ///
    /// let now = Timestamp::from_millis(90_000);
    /// assert_eq!(now.minus_ms(60_000), Timestamp::from_millis(30_000));
    /// assert!(now.minus_ms(u64::MAX) < Timestamp::from_millis(0));
    /// ```
    #[must_use]
    pub const fn minus_ms(self, ms: u64) -> Self {
        let ms = if ms > i64::MAX as u64 {
            i64::MAX
        } else {
            ms as i64
        };
        Self(self.0.saturating_sub(ms))
    }
}

/// A positive number of units in one reservation line: `1..=QUANTITY_MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(into = "u64", try_from = "i64"))]
pub struct Quantity(u64);

impl Quantity {
    /// Validates a requested quantity.
    ///
    /// ```
    /// use inventory_core::{Quantity, QUANTITY_MAX};
    ///
    /// assert_eq!(Quantity::new(3)?.get(), 3);
    /// assert!(Quantity::new(0).is_err());
    /// assert!(Quantity::new(QUANTITY_MAX + 1).is_err());
    /// // Signed input (a parsed request) goes through `try_from`:
    /// assert!(Quantity::try_from(-1_i64).is_err());
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidQuantity`] when `value` is zero or above
    /// [`QUANTITY_MAX`].
    pub fn new(value: u64) -> Result<Self, Error> {
        match value {
            1..=QUANTITY_MAX => Ok(Self(value)),
            _ => Err(Error::InvalidQuantity {
                value: saturating_i64(value),
                min: 1,
                max: QUANTITY_MAX,
            }),
        }
    }

    /// The number of units.
    pub const fn get(&self) -> u64 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = Error;
    /// Validates a signed count (as parsed from a request): negative is refused
    /// like zero.
    fn try_from(value: i64) -> Result<Self, Error> {
        let invalid = Error::InvalidQuantity {
            value,
            min: 1,
            max: QUANTITY_MAX,
        };
        u64::try_from(value).map_or(Err(invalid), Self::new)
    }
}

/// A count beyond `i64` as the signed value an error reports.
fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Units on hand for an item: `0..=STOCK_MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(into = "u64", try_from = "i64"))]
pub struct StockLevel(u64);

impl StockLevel {
    /// Validates a stock level.
    ///
    /// ```
    /// use inventory_core::{StockLevel, STOCK_MAX};
    ///
    /// assert_eq!(StockLevel::new(0)?.get(), 0);
    /// assert!(StockLevel::new(STOCK_MAX + 1).is_err());
    /// assert!(StockLevel::try_from(-5_i64).is_err());
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidQuantity`] when `value` is above [`STOCK_MAX`].
    pub fn new(value: u64) -> Result<Self, Error> {
        match value {
            0..=STOCK_MAX => Ok(Self(value)),
            _ => Err(Error::InvalidQuantity {
                value: saturating_i64(value),
                min: 0,
                max: STOCK_MAX,
            }),
        }
    }

    /// The number of units.
    pub const fn get(&self) -> u64 {
        self.0
    }
}

/// A non-zero change to the quantity on hand: `-STOCK_MAX..=STOCK_MAX`, not 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(into = "i64", try_from = "i64"))]
pub struct StockDelta(i64);

impl StockDelta {
    /// Validates a stock delta.
    ///
    /// ```
    /// use inventory_core::{StockDelta, STOCK_MAX};
    ///
    /// assert_eq!(StockDelta::new(-3)?.get(), -3); // three units written off
    /// assert!(StockDelta::new(0).is_err()); // a change that changes nothing
    /// assert!(StockDelta::new(STOCK_MAX as i64 + 1).is_err());
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidQuantity`] when `value` is zero or its magnitude is above
    /// [`STOCK_MAX`].
    pub fn new(value: i64) -> Result<Self, Error> {
        if value != 0 && value.unsigned_abs() <= STOCK_MAX {
            Ok(Self(value))
        } else {
            Err(Error::InvalidQuantity {
                value,
                min: 1,
                max: STOCK_MAX,
            })
        }
    }

    /// The signed number of units.
    pub const fn get(&self) -> i64 {
        self.0
    }
}

/// How long a reservation holds stock: `RESERVATION_TTL_MIN_MS..=RESERVATION_TTL_MAX_MS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ttl(u64);

impl Ttl {
    /// Validates a hold duration given in milliseconds.
    ///
    /// ```
    /// use inventory_core::{Error, Ttl, RESERVATION_TTL_MAX_MS};
    ///
    /// assert_eq!(Ttl::from_millis(90_000)?.as_millis(), 90_000);
    /// assert!(matches!(Ttl::from_millis(500), Err(Error::InvalidInput { field: "ttl", .. })));
    /// assert!(Ttl::from_millis(RESERVATION_TTL_MAX_MS + 1).is_err());
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `ttl` when out of bounds.
    pub fn from_millis(ms: u64) -> Result<Self, Error> {
        if (RESERVATION_TTL_MIN_MS..=RESERVATION_TTL_MAX_MS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(Error::InvalidInput {
                field: "ttl",
                reason: format!(
                    "must be between {} and {} seconds",
                    RESERVATION_TTL_MIN_MS / 1000,
                    RESERVATION_TTL_MAX_MS / 1000
                ),
            })
        }
    }

    /// Validates a hold duration given in seconds.
    ///
    /// ```
    /// use inventory_core::Ttl;
    ///
    /// assert_eq!(Ttl::from_secs(60)?.as_millis(), 60_000);
    /// assert!(Ttl::from_secs(0).is_err());
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `ttl` when out of bounds.
    pub fn from_secs(secs: u64) -> Result<Self, Error> {
        Self::from_millis(secs.saturating_mul(1000))
    }

    /// The duration in milliseconds.
    pub const fn as_millis(&self) -> u64 {
        self.0
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Self(RESERVATION_TTL_DEFAULT_MS)
    }
}

/// The optimistic-locking version of an item: grows by exactly one per change.
///
/// A caller that read an item sends its version with
/// [`crate::Command::SetQuantity`]; if the item changed in between, the set
/// is refused rather than overwriting a change it never saw.
///
/// ```
/// use inventory_core::*;
///
/// # let product = ProductId::from(Uuid::from_u128(1));
/// # let now = Timestamp::from_millis(0);
/// # let mut state = Snapshot::new();
/// # let create = Command::CreateItem { product_id: product, quantity: StockLevel::new(5)?, actor: Actor::system() };
/// # decide(&mut state, &create, now)?;
/// let read = state.item(product).unwrap().version();
/// assert_eq!(read, Version::INITIAL);
/// let count = |expected_version| Command::SetQuantity {
///     product_id: product, quantity: StockLevel::new(4).unwrap(), expected_version,
///     reason: Reason::new("stock count").unwrap(), actor: Actor::system(),
/// };
/// decide(&mut state, &count(read), now)?;
/// assert_eq!(state.item(product).unwrap().version(), read.next());
/// // The same stale read again is refused.
/// assert!(matches!(decide(&mut state, &count(read), now), Err(Error::VersionConflict { .. })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Version(u64);

impl Version {
    /// The version of a newly created item.
    pub const INITIAL: Version = Version(1);

    /// Wraps a raw version number.
    pub const fn new(v: u64) -> Self {
        Self(v)
    }

    /// The raw version number.
    pub const fn get(&self) -> u64 {
        self.0
    }

    /// The version that follows this one.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! conversions {
    ($name:ident, $raw:ty, $out:ty, $ctor:expr) => {
        impl From<$name> for $out {
            fn from(v: $name) -> $out {
                v.0
            }
        }

        impl TryFrom<$raw> for $name {
            type Error = Error;
            fn try_from(v: $raw) -> Result<Self, Error> {
                $ctor(v)
            }
        }
    };
}

conversions!(StockLevel, i64, u64, |v: i64| {
    let invalid = Error::InvalidQuantity {
        value: v,
        min: 0,
        max: STOCK_MAX,
    };
    u64::try_from(v).map_or(Err(invalid), StockLevel::new)
});
conversions!(StockDelta, i64, i64, StockDelta::new);
conversions!(Reason, String, String, |v: String| Reason::new(&v));
conversions!(Actor, String, String, |v: String| Actor::new(&v));
conversions!(AdjustmentKey, String, String, |v: String| {
    AdjustmentKey::new(&v)
});

impl From<Quantity> for u64 {
    fn from(v: Quantity) -> u64 {
        v.0
    }
}

fn bounded_text(field: &'static str, value: &str, max: usize) -> Result<String, Error> {
    let trimmed = value.trim();
    let len = trimmed.chars().count();
    if len == 0 || len > max || trimmed.chars().any(char::is_control) {
        return Err(Error::InvalidInput {
            field,
            reason: format!("must be 1 to {max} printable characters"),
        });
    }
    Ok(trimmed.to_owned())
}

/// Why stock was adjusted (for the audit ledger): 1 to `REASON_LEN_MAX`
/// printable characters, trimmed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(into = "String", try_from = "String"))]
pub struct Reason(String);

impl Reason {
    /// Validates a reason.
    ///
    /// ```
    /// use inventory_core::Reason;
    ///
    /// assert_eq!(Reason::new("  cycle count ")?.as_str(), "cycle count"); // trimmed
    /// assert!(Reason::new("   ").is_err());
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `reason` when empty, too long or holding
    /// control characters.
    pub fn new(value: &str) -> Result<Self, Error> {
        bounded_text("reason", value, REASON_LEN_MAX).map(Self)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who made a change (a user id, a service name): 1 to `ACTOR_LEN_MAX`
/// printable characters, trimmed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(into = "String", try_from = "String"))]
pub struct Actor(String);

impl Actor {
    /// Validates an actor name.
    ///
    /// ```
    /// use inventory_core::Actor;
    ///
    /// assert_eq!(Actor::new("warehouse-7")?.as_str(), "warehouse-7");
    /// assert!(Actor::new("line\nbreak").is_err());
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `actor` when empty, too long or holding
    /// control characters.
    pub fn new(value: &str) -> Result<Self, Error> {
        bounded_text("actor", value, ACTOR_LEN_MAX).map(Self)
    }

    /// The actor used when nobody is named: the system itself.
    ///
    /// ```
    /// use inventory_core::Actor;
    ///
    /// assert_eq!(Actor::system().as_str(), "system");
    /// ```
    pub fn system() -> Self {
        Self("system".to_owned())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The idempotency key of a stock adjustment (an HTTP `Idempotency-Key`): 1
/// to [`ADJUSTMENT_KEY_LEN_MAX`] visible ASCII characters. An adjustment
/// whose product already has a ledger entry under the same key changes
/// nothing, so a client may repeat one whose answer it lost.
///
/// ```
/// use inventory_core::AdjustmentKey;
///
/// assert_eq!(AdjustmentKey::new("restock-42").unwrap().as_str(), "restock-42");
/// assert!(AdjustmentKey::new("two words").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(into = "String", try_from = "String"))]
pub struct AdjustmentKey(String);

impl AdjustmentKey {
    /// Validates a key.
    ///
    /// With a key, an adjustment is made at most once per product:
    ///
    /// ```
    /// use inventory_core::*;
    ///
    /// # let product = ProductId::from(Uuid::from_u128(1));
    /// # let now = Timestamp::from_millis(0);
    /// # let mut state = Snapshot::new();
    /// # let create = Command::CreateItem { product_id: product, quantity: StockLevel::new(5)?, actor: Actor::system() };
    /// # decide(&mut state, &create, now)?;
    /// let delivery = |units: i64| Command::Adjust {
    ///     product_id: product, delta: StockDelta::new(units).unwrap(), reason: Reason::new("delivery").unwrap(),
    ///     actor: Actor::system(), key: Some(AdjustmentKey::new("delivery-0042").unwrap()),
    /// };
    /// decide(&mut state, &delivery(10), now)?;
    /// decide(&mut state, &delivery(10), now)?; // a repeat: counted once
    /// assert_eq!(state.item(product).unwrap().quantity(), 15);
    /// // The key reused for another change is refused.
    /// assert!(matches!(decide(&mut state, &delivery(3), now), Err(Error::AdjustmentKeyConflict { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `idempotency_key` when empty, too long
    /// or holding anything but visible ASCII.
    pub fn new(value: &str) -> Result<Self, Error> {
        let visible = value.bytes().all(|b| b.is_ascii_graphic());
        if value.is_empty() || value.len() > ADJUSTMENT_KEY_LEN_MAX || !visible {
            return Err(Error::InvalidInput {
                field: "idempotency_key",
                reason: format!("must be 1 to {ADJUSTMENT_KEY_LEN_MAX} visible ascii characters"),
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjustment_keys_are_visible_ascii_and_bounded() {
        assert!(AdjustmentKey::new(&"k".repeat(ADJUSTMENT_KEY_LEN_MAX)).is_ok());
        for bad in ["", " ", "a b", "caf\u{e9}", "tab\t"] {
            assert!(AdjustmentKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(AdjustmentKey::new(&"k".repeat(ADJUSTMENT_KEY_LEN_MAX + 1)).is_err());
    }

    #[test]
    fn quantity_accepts_its_bounds_and_nothing_else() {
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(Quantity::new(QUANTITY_MAX).unwrap().get(), QUANTITY_MAX);
        for bad in [0, QUANTITY_MAX + 1, u64::MAX] {
            assert!(
                matches!(Quantity::new(bad), Err(Error::InvalidQuantity { .. })),
                "{bad}"
            );
        }
        for bad in [0, -1, i64::MIN, QUANTITY_MAX as i64 + 1, i64::MAX] {
            assert!(
                matches!(Quantity::try_from(bad), Err(Error::InvalidQuantity { value, .. }) if value == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn stock_level_allows_zero_but_not_negative() {
        assert_eq!(StockLevel::new(0).unwrap().get(), 0);
        assert!(StockLevel::try_from(-1_i64).is_err());
        assert!(StockLevel::new(STOCK_MAX + 1).is_err());
        assert!(StockLevel::try_from(STOCK_MAX as i64 + 1).is_err());
    }

    #[test]
    fn delta_rejects_zero_and_huge() {
        assert!(StockDelta::new(0).is_err());
        assert!(StockDelta::new(STOCK_MAX as i64 + 1).is_err());
        assert!(StockDelta::new(-(STOCK_MAX as i64) - 1).is_err());
        assert_eq!(StockDelta::new(-5).unwrap().get(), -5);
    }

    #[test]
    fn ttl_bounds() {
        assert!(Ttl::from_secs(0).is_err());
        assert!(Ttl::from_secs(u64::MAX).is_err());
        assert_eq!(Ttl::from_secs(1).unwrap().as_millis(), 1000);
        assert_eq!(
            Ttl::from_secs(86_400).unwrap().as_millis(),
            RESERVATION_TTL_MAX_MS
        );
        assert!(Ttl::from_secs(86_401).is_err());
        assert_eq!(Ttl::default().as_millis(), RESERVATION_TTL_DEFAULT_MS);
    }

    #[test]
    fn texts_are_trimmed_and_bounded() {
        assert_eq!(Reason::new("  restock ").unwrap().as_str(), "restock");
        assert!(Reason::new("   ").is_err());
        assert!(Reason::new(&"x".repeat(REASON_LEN_MAX + 1)).is_err());
        assert!(Reason::new("bad\u{0}byte").is_err());
        assert!(Actor::new(&"a".repeat(ACTOR_LEN_MAX)).is_ok());
    }

    #[test]
    fn timestamp_addition_saturates() {
        let t = Timestamp::from_millis(i64::MAX - 1);
        assert_eq!(t.plus_ms(10).as_millis(), i64::MAX);
        assert_eq!(
            Timestamp::from_millis(5).plus_ms(u64::MAX).as_millis(),
            i64::MAX
        );
    }
}
