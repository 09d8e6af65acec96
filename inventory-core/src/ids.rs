//! Identifiers: newtypes over UUIDs so a product id can never be passed where an
//! order id is expected.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[cfg_attr(feature = "serde", serde(transparent))]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            /// Parses the hyphenated (or simple) UUID text form.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
    };
}

id_type!(
    /// Identifies a product (a stock-keeping unit) and its inventory item.
    ProductId
);
id_type!(
    /// Identifies one reservation (one line of an order holding stock).
    ReservationId
);
id_type!(
    /// Identifies the order a reservation belongs to; chosen by the caller.
    OrderId
);

/// The namespace of [`ReservationId::for_line`]'s name-based ids.
const LINE_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_4f0e_8a3b_4d52_9e07_2b5c_a1d3_f640);

impl ReservationId {
    /// The id of an order's reservation of one product, derived from the two
    /// (a name-based UUID, version 5): the same order and product always give
    /// the same id, so a caller that lost an answer can ask again without
    /// having kept the id it chose. [`crate::InventoryStoreExt::reserve`]
    /// uses it.
    ///
    /// ```
    /// use inventory_core::{OrderId, ProductId, ReservationId, Uuid};
    ///
    /// let (order, product) = (OrderId::from(Uuid::from_u128(1)), ProductId::from(Uuid::from_u128(2)));
    /// assert_eq!(ReservationId::for_line(order, product), ReservationId::for_line(order, product));
    /// assert_ne!(ReservationId::for_line(order, product), ReservationId::for_line(order, ProductId::from(Uuid::from_u128(3))));
    /// ```
    pub fn for_line(order_id: OrderId, product_id: ProductId) -> Self {
        let mut name = [0_u8; 32];
        name[..16].copy_from_slice(order_id.as_uuid().as_bytes());
        name[16..].copy_from_slice(product_id.as_uuid().as_bytes());
        Self(Uuid::new_v5(&LINE_NAMESPACE, &name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = ProductId::from_uuid(Uuid::from_u128(42));
        let parsed: ProductId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
    }

    #[test]
    fn malformed_id_is_rejected() {
        assert!("not-a-uuid".parse::<OrderId>().is_err());
    }
}
