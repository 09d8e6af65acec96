//! Rows of the PostgreSQL store to domain values, and database errors to
//! [`StoreError`].

use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;

use super::{Hold, HoldStatus, OrderRecord, StoreError};
use crate::catalog::Product;
use crate::domain::{IdempotencyKey, Order, OrderId, OrderLine, OrderStatus, ProductId, UserId};
use crate::saga::SagaState;

pub(super) fn fail(e: sqlx::Error) -> StoreError {
    if inventory_sqlx::is_unavailable(&e) {
        return StoreError::Unavailable(e.to_string());
    }
    StoreError::Internal(e.to_string())
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("corrupt row: {what}"))
}

pub(super) fn status_parts(status: OrderStatus) -> (&'static str, Option<&'static str>) {
    (status.as_str(), status.reason().map(|r| r.as_str()))
}

pub(super) fn record_from_row(row: &PgRow) -> Result<OrderRecord, StoreError> {
    let status: String = row.try_get("status").map_err(fail)?;
    let reason: Option<String> = row.try_get("cancel_reason").map_err(fail)?;
    let status =
        OrderStatus::from_parts(&status, reason.as_deref()).ok_or_else(|| corrupt("status"))?;
    let user: String = row.try_get("user_id").map_err(fail)?;
    let key: Option<String> = row.try_get("idempotency_key").map_err(fail)?;
    let Json(saga): Json<SagaState> = row.try_get("state").map_err(fail)?;
    Ok(OrderRecord {
        order: Order {
            id: OrderId::from_uuid(row.try_get("id").map_err(fail)?),
            user_id: UserId::parse(&user).map_err(|_| corrupt("user_id"))?,
            status,
            lines: Vec::new(),
            total_minor: row.try_get("total_minor").map_err(fail)?,
            currency: row.try_get("currency").map_err(fail)?,
            idempotency_key: key
                .map(|k| IdempotencyKey::parse(&k).map_err(|_| corrupt("idempotency_key")))
                .transpose()?,
            fingerprint: row.try_get("fingerprint").map_err(fail)?,
            created_at_ms: row.try_get("created_at_ms").map_err(fail)?,
            updated_at_ms: row.try_get("updated_at_ms").map_err(fail)?,
        },
        saga,
        cancel_requested: row.try_get("cancel_requested").map_err(fail)?,
        holds: Vec::new(),
    })
}

pub(super) fn hold_from_row(row: &PgRow) -> Result<Hold, StoreError> {
    let quantity: i32 = row.try_get("quantity").map_err(fail)?;
    let status: String = row.try_get("status").map_err(fail)?;
    Ok(Hold {
        reservation_id: row.try_get("reservation_id").map_err(fail)?,
        product_id: ProductId::from_uuid(row.try_get("product_id").map_err(fail)?),
        quantity: u32::try_from(quantity).map_err(|_| corrupt("hold quantity"))?,
        status: HoldStatus::parse(&status).ok_or_else(|| corrupt("hold status"))?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(fail)?,
    })
}

pub(super) fn line_from_row(row: &PgRow) -> Result<OrderLine, StoreError> {
    let quantity: i32 = row.try_get("quantity").map_err(fail)?;
    Ok(OrderLine {
        product_id: ProductId::from_uuid(row.try_get("product_id").map_err(fail)?),
        name: row.try_get("name").map_err(fail)?,
        quantity: u32::try_from(quantity).map_err(|_| corrupt("quantity"))?,
        unit_price_minor: row.try_get("unit_price_minor").map_err(fail)?,
        line_total_minor: row.try_get("line_total_minor").map_err(fail)?,
    })
}

pub(super) fn product_from_row(row: &PgRow) -> Result<Product, StoreError> {
    Ok(Product {
        id: ProductId::from_uuid(row.try_get("id").map_err(fail)?),
        name: row.try_get("name").map_err(fail)?,
        price_minor: row.try_get("price_minor").map_err(fail)?,
        currency: row.try_get("currency").map_err(fail)?,
        active: row.try_get("active").map_err(fail)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(fail)?,
    })
}
