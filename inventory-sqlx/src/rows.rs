//! Rows to domain values and back: items, reservations, ledger entries and
//! outbox entries, and the JSON form of event payloads.

use inventory_core::{
    Actor, Adjustment, AdjustmentKey, Error, Event, EventPayload, InventoryItem, OrderId,
    OutboxEntry, ProductId, Reason, Reservation, ReservationId, ReservationStatus, Timestamp,
    Version,
};
use serde::Deserialize;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;

/// Columns of `inventory_items`, in the order [`item`] reads them.
pub(crate) const ITEM_COLUMNS: &str =
    "product_id, quantity, reserved, version, created_at_ms, updated_at_ms";

/// Columns of `reservations`, in the order [`reservation`] reads them.
pub(crate) const RESERVATION_COLUMNS: &str =
    "id, order_id, product_id, quantity, status, expires_at_ms, created_at_ms, updated_at_ms";

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Storage {
        reason: format!("corrupt {what}: {detail}"),
    }
}

fn get<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T, Error>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .map_err(|e| corrupt("row", format!("column {column}: {e}")))
}

fn get_u64(row: &PgRow, column: &'static str) -> Result<u64, Error> {
    let v: i64 = get(row, column)?;
    u64::try_from(v).map_err(|_| corrupt("row", format!("column {column} is negative: {v}")))
}

/// A stored count as the BIGINT it is written as.
pub(crate) fn to_i64(v: u64) -> i64 {
    // Every count of the domain is at most STOCK_MAX, far below i64::MAX.
    i64::try_from(v).expect("domain counts fit in BIGINT")
}

/// Reads an `inventory_items` row.
pub(crate) fn item(row: &PgRow) -> Result<InventoryItem, Error> {
    InventoryItem::restore(
        ProductId::from_uuid(get(row, "product_id")?),
        get_u64(row, "quantity")?,
        get_u64(row, "reserved")?,
        Version::new(get_u64(row, "version")?),
        Timestamp::from_millis(get(row, "created_at_ms")?),
        Timestamp::from_millis(get(row, "updated_at_ms")?),
    )
}

/// Column names of a reservation read as `RESERVATION_COLUMNS`.
const RESERVATION_NAMES: [&str; 8] = [
    "id",
    "order_id",
    "product_id",
    "quantity",
    "status",
    "expires_at_ms",
    "created_at_ms",
    "updated_at_ms",
];

/// Reads a `reservations` row.
pub(crate) fn reservation(row: &PgRow) -> Result<Reservation, Error> {
    reservation_named(row, &RESERVATION_NAMES)
}

fn reservation_named(row: &PgRow, names: &[&'static str; 8]) -> Result<Reservation, Error> {
    let status: String = get(row, names[4])?;
    let status = ReservationStatus::parse(&status)
        .ok_or_else(|| corrupt("reservation", format!("unknown status {status:?}")))?;
    Reservation::restore(
        ReservationId::from_uuid(get(row, names[0])?),
        OrderId::from_uuid(get(row, names[1])?),
        ProductId::from_uuid(get(row, names[2])?),
        get_u64(row, names[3])?,
        status,
        Timestamp::from_millis(get(row, names[5])?),
        Timestamp::from_millis(get(row, names[6])?),
        Timestamp::from_millis(get(row, names[7])?),
    )
}

/// Reads a `stock_adjustments` row.
pub(crate) fn adjustment(row: &PgRow) -> Result<Adjustment, Error> {
    let reason: String = get(row, "reason")?;
    let actor: String = get(row, "actor")?;
    let key: Option<String> = get(row, "idempotency_key")?;
    let key = key.map(|k| AdjustmentKey::new(&k).map_err(|e| corrupt("adjustment", e)));
    Ok(Adjustment {
        product_id: ProductId::from_uuid(get(row, "product_id")?),
        delta: get(row, "delta")?,
        quantity_before: get_u64(row, "quantity_before")?,
        quantity_after: get_u64(row, "quantity_after")?,
        reason: Reason::new(&reason).map_err(|e| corrupt("adjustment", e))?,
        actor: Actor::new(&actor).map_err(|e| corrupt("adjustment", e))?,
        at: Timestamp::from_millis(get(row, "at_ms")?),
        key: key.transpose()?,
    })
}

/// Reads an `outbox` row.
pub(crate) fn outbox_entry(row: &PgRow) -> Result<OutboxEntry, Error> {
    let event_type: String = get(row, "event_type")?;
    let payload: Value = get(row, "payload")?;
    Ok(OutboxEntry {
        sequence: get_u64(row, "sequence")?,
        event_id: get(row, "event_id")?,
        correlation_id: get(row, "correlation_id")?,
        event: Event {
            occurred_at: Timestamp::from_millis(get(row, "occurred_at_ms")?),
            payload: payload_from_json(&event_type, &payload)?,
        },
    })
}

/// The JSON stored in `outbox.payload`: the payload's fields and a `kind` tag,
/// the shape inventory-core's serde feature gives it.
pub(crate) fn payload_to_json(payload: &EventPayload) -> Value {
    serde_json::to_value(payload).expect("an event payload is plain data and always serializes")
}

/// Reads back what [`payload_to_json`] wrote, checking it is of the type the
/// row's `event_type` column names.
pub(crate) fn payload_from_json(event_type: &str, v: &Value) -> Result<EventPayload, Error> {
    let payload = EventPayload::deserialize(v)
        .map_err(|e| corrupt("event payload", format!("{event_type}: {e}")))?;
    if payload.event_type() != event_type {
        return Err(corrupt(
            "outbox entry",
            format!(
                "event type {event_type:?} holds a {:?} payload",
                payload.event_type()
            ),
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn every_payload_round_trips_through_json() {
        let payloads = [
            EventPayload::Reserved {
                reservation_id: ReservationId::from_uuid(id(1)),
                order_id: OrderId::from_uuid(id(2)),
                product_id: ProductId::from_uuid(id(3)),
                quantity: 4,
                expires_at: Timestamp::from_millis(5),
            },
            EventPayload::Confirmed {
                reservation_id: ReservationId::from_uuid(id(1)),
                order_id: OrderId::from_uuid(id(2)),
                product_id: ProductId::from_uuid(id(3)),
                quantity: 4,
            },
            EventPayload::Released {
                reservation_id: ReservationId::from_uuid(id(1)),
                order_id: OrderId::from_uuid(id(2)),
                product_id: ProductId::from_uuid(id(3)),
                quantity: 4,
            },
            EventPayload::Expired {
                reservation_id: ReservationId::from_uuid(id(1)),
                order_id: OrderId::from_uuid(id(2)),
                product_id: ProductId::from_uuid(id(3)),
                quantity: 4,
            },
            EventPayload::Adjusted {
                product_id: ProductId::from_uuid(id(3)),
                delta: -7,
                quantity_after: 8,
                reason: Reason::new("recount").unwrap(),
            },
            EventPayload::Depleted {
                product_id: ProductId::from_uuid(id(3)),
            },
        ];
        for p in payloads {
            let json = payload_to_json(&p);
            assert_eq!(payload_from_json(p.event_type(), &json).unwrap(), p);
        }
    }

    #[test]
    fn malformed_payload_is_a_storage_error() {
        let bad = json!({"kind": "reserved", "product_id": "nope"});
        assert!(matches!(
            payload_from_json("inventory.stock.reserved", &bad),
            Err(Error::Storage { .. })
        ));
        let good = json!({"product_id": id(1).to_string()});
        assert!(payload_from_json("inventory.stock.unknown", &good).is_err());
    }
}
