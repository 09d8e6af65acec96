//! The envelope every event travels in, whatever the service and the transport:
//! `{event_id, event_type, occurred_at, version, correlation_id, source, payload}`.

use inventory_core::OutboxEntry;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Schema version of the inventory payloads (`inventory.stock.*`). Raised only
/// for a change a consumer must know about (a field removed, renamed or
/// retyped); new optional fields keep the version.
pub const INVENTORY_SCHEMA_VERSION: u32 = 1;

/// Schema version of the orders payloads (`order.*`).
pub const ORDERS_SCHEMA_VERSION: u32 = 1;

/// The `source` of events published by the inventory service.
pub const INVENTORY_SOURCE: &str = "inventory";

/// The `source` of events published by the orders service.
pub const ORDERS_SOURCE: &str = "orders";

/// Longest correlation id carried, in bytes; longer ones are cut (they are
/// request ids, normally 36 bytes, and travel in an AMQP header).
pub const CORRELATION_ID_LEN_MAX: usize = 128;

/// One event as it travels between services.
///
/// The JSON form is the contract documented in `docs/events/`: `occurred_at`
/// is RFC 3339 in UTC, `version` the schema version of `payload` for this
/// `event_type`, and `event_id` stays the same on every redelivery, so
/// consumers deduplicate on it.
/// Unknown fields are ignored when reading (a reader tolerates additions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Stable id of the event; the same on every redelivery.
    pub event_id: Uuid,
    /// What happened, also the routing key: `inventory.stock.reserved`, ...
    pub event_type: String,
    /// When the change was decided, RFC 3339 (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// Schema version of `payload`.
    pub version: u32,
    /// Request id of the request that caused the change, when known.
    pub correlation_id: Option<String>,
    /// The service that published it: `inventory` or `orders`.
    pub source: String,
    /// The event's own fields.
    pub payload: serde_json::Value,
}

impl Envelope {
    /// An envelope for any service's event. `occurred_at_ms` is milliseconds
    /// since the Unix epoch; values outside what RFC 3339 can show are clamped.
    pub fn new(
        source: &str,
        event_type: &str,
        version: u32,
        event_id: Uuid,
        occurred_at_ms: i64,
        correlation_id: Option<&str>,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            event_id,
            event_type: event_type.to_owned(),
            occurred_at: datetime_from_millis(occurred_at_ms),
            version,
            correlation_id: correlation_id.map(cut_correlation_id),
            source: source.to_owned(),
            payload,
        }
    }

    /// The envelope of an inventory outbox entry (source `inventory`).
    pub fn from_inventory(entry: &OutboxEntry) -> Self {
        let payload = &entry.event.payload;
        Self::new(
            INVENTORY_SOURCE,
            payload.event_type(),
            INVENTORY_SCHEMA_VERSION,
            entry.event_id,
            entry.event.occurred_at.as_millis(),
            entry.correlation_id.as_deref(),
            // Serializing a payload of plain ids and numbers cannot fail.
            serde_json::to_value(payload).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The key events are ordered by: the product for inventory events, the
    /// order for orders events (read from the payload), else the event type.
    pub fn ordering_key(&self) -> &str {
        ["product_id", "order_id"]
            .iter()
            .find_map(|field| self.payload.get(field).and_then(|v| v.as_str()))
            .unwrap_or(&self.event_type)
    }

    /// The JSON bytes sent on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        // An envelope holds only strings, numbers and JSON values: never fails.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks an envelope received from the wire.
    ///
    /// # Errors
    /// [`MalformedEnvelope`] when the bytes are not an envelope, or when a
    /// required text field is empty.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MalformedEnvelope> {
        let envelope: Self =
            serde_json::from_slice(bytes).map_err(|e| MalformedEnvelope(e.to_string()))?;
        if envelope.event_type.is_empty() || envelope.source.is_empty() {
            return Err(MalformedEnvelope(
                "event_type and source must not be empty".to_owned(),
            ));
        }
        Ok(envelope)
    }
}

/// Bytes that are not a valid [`Envelope`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed envelope: {0}")]
pub struct MalformedEnvelope(pub String);

fn datetime_from_millis(ms: i64) -> OffsetDateTime {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(if ms < 0 {
        OffsetDateTime::UNIX_EPOCH
    } else {
        // The last instant RFC 3339 can write with a four-digit year.
        OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    })
}

fn cut_correlation_id(id: &str) -> String {
    if id.len() <= CORRELATION_ID_LEN_MAX {
        return id.to_owned();
    }
    let mut end = CORRELATION_ID_LEN_MAX;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory_core::{Event, EventPayload, OrderId, ProductId, ReservationId, Timestamp};

    fn entry() -> OutboxEntry {
        OutboxEntry {
            sequence: 7,
            event_id: Uuid::from_u128(1),
            correlation_id: Some("req-1".to_owned()),
            event: Event {
                occurred_at: Timestamp::from_millis(1_700_000_000_123),
                payload: EventPayload::Reserved {
                    reservation_id: ReservationId::from_uuid(Uuid::from_u128(2)),
                    order_id: OrderId::from_uuid(Uuid::from_u128(3)),
                    product_id: ProductId::from_uuid(Uuid::from_u128(4)),
                    quantity: 5,
                    expires_at: Timestamp::from_millis(1_700_000_900_123),
                },
            },
        }
    }

    /// The inventory envelope has exactly the fields of the contract.
    #[test]
    fn inventory_envelope_has_the_documented_shape() {
        let json = serde_json::to_value(Envelope::from_inventory(&entry())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "event_id": "00000000-0000-0000-0000-000000000001",
                "event_type": "inventory.stock.reserved",
                "occurred_at": "2023-11-14T22:13:20.123Z",
                "version": 1,
                "correlation_id": "req-1",
                "source": "inventory",
                "payload": {
                    "kind": "reserved",
                    "reservation_id": "00000000-0000-0000-0000-000000000002",
                    "order_id": "00000000-0000-0000-0000-000000000003",
                    "product_id": "00000000-0000-0000-0000-000000000004",
                    "quantity": 5,
                    "expires_at": 1_700_000_900_123_i64,
                },
            })
        );
    }

    /// Bytes written are bytes read back.
    #[test]
    fn envelope_round_trips_through_bytes() {
        let envelope = Envelope::from_inventory(&entry());
        assert_eq!(
            Envelope::from_bytes(&envelope.to_bytes()).unwrap(),
            envelope
        );
        assert_eq!(
            envelope.ordering_key(),
            "00000000-0000-0000-0000-000000000004"
        );
    }

    /// Garbage, missing fields and empty names are malformed; an added field
    /// is not.
    #[test]
    fn malformed_bytes_are_rejected() {
        assert!(Envelope::from_bytes(b"not json").is_err());
        assert!(Envelope::from_bytes(b"{\"event_id\":\"x\"}").is_err());
        let mut json = serde_json::to_value(Envelope::from_inventory(&entry())).unwrap();
        json["added_later"] = serde_json::json!(1);
        assert!(Envelope::from_bytes(json.to_string().as_bytes()).is_ok());
        json["event_type"] = serde_json::json!("");
        assert!(Envelope::from_bytes(json.to_string().as_bytes()).is_err());
    }

    /// The documented schema names exactly the fields each payload has.
    #[test]
    fn documented_payload_fields_match_the_code() {
        let schema: serde_json::Value = serde_json::from_str(include_str!(
            "../../docs/events/inventory-events.schema.json"
        ))
        .unwrap();
        let product_id = ProductId::from_uuid(Uuid::from_u128(4));
        let settled = |kind: &str| {
            let (reservation_id, order_id) = (
                ReservationId::from_uuid(Uuid::from_u128(2)),
                OrderId::from_uuid(Uuid::from_u128(3)),
            );
            let quantity = 1;
            match kind {
                "confirmed" => EventPayload::Confirmed {
                    reservation_id,
                    order_id,
                    product_id,
                    quantity,
                },
                "released" => EventPayload::Released {
                    reservation_id,
                    order_id,
                    product_id,
                    quantity,
                },
                _ => EventPayload::Expired {
                    reservation_id,
                    order_id,
                    product_id,
                    quantity,
                },
            }
        };
        let payloads = [
            ("reserved", entry().event.payload),
            ("settled", settled("confirmed")),
            ("settled", settled("released")),
            ("settled", settled("expired")),
            (
                "adjusted",
                EventPayload::Adjusted {
                    product_id,
                    delta: -1,
                    quantity_after: 1,
                    reason: inventory_core::Reason::new("count").unwrap(),
                },
            ),
            ("depleted", EventPayload::Depleted { product_id }),
        ];
        for (def, payload) in payloads {
            let json = serde_json::to_value(&payload).unwrap();
            let mut fields: Vec<&str> = json
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut documented: Vec<&str> = schema["$defs"][def]["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            fields.sort_unstable();
            documented.sort_unstable();
            assert_eq!(fields, documented, "{}", payload.event_type());
        }
    }

    /// Long correlation ids are cut on a character boundary.
    #[test]
    fn long_correlation_ids_are_cut() {
        let long = "é".repeat(CORRELATION_ID_LEN_MAX);
        let envelope = Envelope::new(
            "orders",
            "order.created",
            1,
            Uuid::nil(),
            0,
            Some(&long),
            serde_json::json!({}),
        );
        let cut = envelope.correlation_id.unwrap();
        assert!(cut.len() <= CORRELATION_ID_LEN_MAX && long.starts_with(&cut));
    }
}
