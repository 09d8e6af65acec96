//! The product catalog this service owns: what is for sale and at what price.
//! Order prices come only from here, never from the client.

use serde::Deserialize;
use uuid::Uuid;

use crate::domain::ProductId;

/// Longest product name, in characters.
pub const PRODUCT_NAME_LEN_MAX: usize = 200;

/// Highest unit price, in minor units (one million major units): keeps every
/// order total far from overflow.
pub const PRICE_MINOR_MAX: i64 = 100_000_000;

/// A product for sale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// Its id (the same id inventory uses for its stock item).
    pub id: ProductId,
    /// Display name.
    pub name: String,
    /// Price of one unit, in minor units of `currency`.
    pub price_minor: i64,
    /// ISO 4217 code, three upper-case letters.
    pub currency: String,
    /// Whether it can be ordered.
    pub active: bool,
    /// When it last changed, in Unix milliseconds.
    pub updated_at_ms: i64,
}

/// The body of an admin write (`POST /api/products`, `PUT /api/products/{id}`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    /// The id; generated when absent on create, ignored on update.
    pub id: Option<Uuid>,
    /// Display name.
    pub name: String,
    /// Price of one unit, in minor units.
    pub price_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Whether it can be ordered (default true).
    pub active: Option<bool>,
}

/// A product write is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Empty or longer than [`PRODUCT_NAME_LEN_MAX`].
    #[error("name must be 1 to {PRODUCT_NAME_LEN_MAX} characters")]
    InvalidName,
    /// Negative or above [`PRICE_MINOR_MAX`].
    #[error("price_minor must be between 0 and {PRICE_MINOR_MAX}")]
    InvalidPrice,
    /// Not three upper-case ASCII letters.
    #[error("currency must be three upper-case letters (ISO 4217)")]
    InvalidCurrency,
}

impl ProductInput {
    /// Validates the input into a product with id `id`.
    ///
    /// # Errors
    /// The first [`CatalogError`] found.
    pub fn into_product(self, id: ProductId, now_ms: i64) -> Result<Product, CatalogError> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > PRODUCT_NAME_LEN_MAX {
            return Err(CatalogError::InvalidName);
        }
        if !(0..=PRICE_MINOR_MAX).contains(&self.price_minor) {
            return Err(CatalogError::InvalidPrice);
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(CatalogError::InvalidCurrency);
        }
        Ok(Product {
            id,
            name,
            price_minor: self.price_minor,
            currency: self.currency,
            active: self.active.unwrap_or(true),
            updated_at_ms: now_ms,
        })
    }
}

/// The demo products a fresh store starts with. Their ids are fixed so that a
/// demo inventory can stock the same products.
pub fn demo_products(now_ms: i64) -> Vec<Product> {
    let demo = [
        (0x0001, "Mechanical keyboard", 8_999),
        (0x0002, "Wireless mouse", 2_499),
        (0x0003, "27-inch monitor", 27_900),
        (0x0004, "USB-C dock", 12_950),
        (0x0005, "Noise-cancelling headphones", 19_900),
    ];
    demo.iter()
        .map(|(n, name, price)| Product {
            id: ProductId::from_uuid(demo_product_id(*n)),
            name: (*name).to_owned(),
            price_minor: *price,
            currency: "EUR".to_owned(),
            active: true,
            updated_at_ms: now_ms,
        })
        .collect()
}

/// The id of demo product number `n`: `00000000-0000-4000-8000-00000000000n`.
pub fn demo_product_id(n: u128) -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, price: i64, currency: &str) -> ProductInput {
        ProductInput {
            id: None,
            name: name.into(),
            price_minor: price,
            currency: currency.into(),
            active: None,
        }
    }

    /// Bad names, prices and currencies are refused; good input is active by default.
    #[test]
    fn product_input_validation() {
        let id = ProductId::from_uuid(Uuid::nil());
        assert_eq!(
            input("", 1, "EUR").into_product(id, 0),
            Err(CatalogError::InvalidName)
        );
        assert_eq!(
            input("a", -1, "EUR").into_product(id, 0),
            Err(CatalogError::InvalidPrice)
        );
        assert_eq!(
            input("a", 1, "eur").into_product(id, 0),
            Err(CatalogError::InvalidCurrency)
        );
        let p = input(" Lamp ", 1_000, "EUR").into_product(id, 5).unwrap();
        assert_eq!(
            (p.name.as_str(), p.active, p.updated_at_ms),
            ("Lamp", true, 5)
        );
        assert_eq!(demo_products(0).len(), 5);
        assert_eq!(demo_product_id(1).get_version_num(), 4);
    }
}
