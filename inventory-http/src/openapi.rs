//! The OpenAPI 3.1 document (`docs/openapi/inventory.json`), embedded at build
//! time and served at `/openapi.json`.
//!
//! The tests below hold it to the code: every route and no other, the statuses
//! each route's facts imply, every request body against the type that parses
//! it, every response body against the type that renders it, and every bound
//! against its constant (ADR 0009).

use bytes::Bytes;
use service_kit::openapi;

/// The document's source.
pub const SPEC_JSON: &str = include_str!("../../docs/openapi/inventory.json");

/// The document as compact JSON bytes, ready to serve.
///
/// # Errors
/// The parser's message when the embedded document is malformed.
pub fn document_json() -> Result<Bytes, String> {
    openapi::served(SPEC_JSON)
}

#[cfg(test)]
mod tests {
    use inventory_core::{
        InventoryItem, OrderId, ProductId, Reservation, ReservationId, ReservationStatus,
        Timestamp, Version, ADJUSTMENTS_PAGE_MAX, AVAILABILITY_BATCH_MAX, LINES_MAX, QUANTITY_MAX,
        REASON_LEN_MAX, RESERVATION_TTL_DEFAULT_MS, RESERVATION_TTL_MAX_MS, STOCK_MAX,
    };
    use serde_json::{json, Value};
    use service_kit::openapi::check::{self, parses, Parse, RouteFacts};

    use super::*;
    use crate::dto;
    use crate::routes::{Access, ROUTES};

    fn doc() -> Value {
        openapi::parse(SPEC_JSON).unwrap()
    }

    /// Every route of the router has an entry in the document, and every
    /// entry of the document is a route of the router.
    #[test]
    fn document_and_route_table_agree() {
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.template.to_owned()))
            .collect();
        routes.sort();
        assert_eq!(openapi::operations(&doc()), routes);
    }

    /// Each route documents the statuses its facts imply (401 and 403 when it
    /// needs a role, 400/413/415 for a body or a path id, 429, 503 or 504) and
    /// its security.
    #[test]
    fn every_route_documents_the_statuses_its_facts_imply() {
        let facts: Vec<RouteFacts<'_>> = ROUTES
            .iter()
            .map(|r| RouteFacts::of(r, |a| *a == Access::Public))
            .collect();
        assert_eq!(
            check::missing_statuses(&doc(), &facts),
            Vec::<String>::new()
        );
    }

    /// Every documented request body matches, field by field, the type the
    /// handler parses it into; and every body the code parses is documented.
    #[test]
    fn request_bodies_match_their_types() {
        let bodies: &[(&str, &str, Parse)] = &[
            (
                "PUT",
                "/api/inventory/{product_id}",
                parses::<dto::SetQuantityRequest>,
            ),
            (
                "POST",
                "/api/inventory/items",
                parses::<dto::CreateItemRequest>,
            ),
            (
                "POST",
                "/api/inventory/reserve",
                parses::<dto::ReserveRequest>,
            ),
            (
                "POST",
                "/api/inventory/reservations",
                parses::<dto::ReserveLinesRequest>,
            ),
            (
                "POST",
                "/api/inventory/confirm",
                parses::<dto::ConfirmRequest>,
            ),
            (
                "POST",
                "/api/inventory/{product_id}/adjustments",
                parses::<dto::AdjustRequest>,
            ),
        ];
        let found = check::request_bodies_mismatches(&openapi::parse(SPEC_JSON).unwrap(), bodies);
        assert_eq!(found, Vec::<String>::new());
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn item() -> InventoryItem {
        let t = at(1_700_000_000_000);
        InventoryItem::restore(
            ProductId::from_uuid(uuid::Uuid::new_v4()),
            10,
            2,
            Version::INITIAL,
            t,
            t,
        )
        .unwrap()
    }

    fn reservation() -> Reservation {
        let t = at(1_700_000_000_000);
        Reservation::restore(
            ReservationId::from_uuid(uuid::Uuid::new_v4()),
            OrderId::from_uuid(uuid::Uuid::new_v4()),
            ProductId::from_uuid(uuid::Uuid::new_v4()),
            2,
            ReservationStatus::Pending,
            t.plus_ms(RESERVATION_TTL_DEFAULT_MS),
            t,
            t,
        )
        .unwrap()
    }

    /// Every documented 2xx body is what the code renders for it, checked
    /// against the document made strict (no field the document lacks) with
    /// every optional field set (no documented field the code lacks); and
    /// every problem the code renders fits the `Problem` schema.
    #[tokio::test]
    async fn response_bodies_match_their_types() {
        let d = doc();
        let availability = json!(dto::Availability::from(&item()));
        let view = json!(dto::ReservationView::from(&reservation()));
        let order = json!(dto::OrderReservations {
            order_id: uuid::Uuid::new_v4(),
            reservations: vec![dto::ReservationView::from(&reservation())],
        });
        let adjustments = json!(dto::AdjustmentList {
            product_id: uuid::Uuid::new_v4(),
            adjustments: vec![dto::AdjustmentView {
                delta: -2,
                quantity_before: 10,
                quantity_after: 8,
                reason: "damaged".into(),
                actor: "admin".into(),
                at: dto::rfc3339(at(1_700_000_000_000)),
                idempotency_key: Some("k-1".into()),
            }],
        });
        let bulk = json!(dto::BulkAvailability {
            items: vec![dto::Availability::from(&item())],
            missing: vec![uuid::Uuid::new_v4()],
        });
        let rendered: &[(&str, &str, u16, &Value)] = &[
            ("GET", "/api/inventory", 200, &bulk),
            ("GET", "/api/inventory/{product_id}", 200, &availability),
            ("PUT", "/api/inventory/{product_id}", 200, &availability),
            ("POST", "/api/inventory/items", 201, &availability),
            ("POST", "/api/inventory/reserve", 201, &view),
            ("POST", "/api/inventory/reserve", 200, &view),
            ("POST", "/api/inventory/reservations", 201, &order),
            ("POST", "/api/inventory/reservations", 200, &order),
            (
                "GET",
                "/api/inventory/reservations/{reservation_id}",
                200,
                &view,
            ),
            ("POST", "/api/inventory/confirm", 200, &view),
            (
                "POST",
                "/api/inventory/confirm/{reservation_id}",
                200,
                &view,
            ),
            (
                "DELETE",
                "/api/inventory/reserve/{reservation_id}",
                200,
                &view,
            ),
            (
                "GET",
                "/api/inventory/{product_id}/adjustments",
                200,
                &adjustments,
            ),
            (
                "POST",
                "/api/inventory/{product_id}/adjustments",
                200,
                &availability,
            ),
        ];
        let found = check::rendered_mismatches(&d, rendered);
        assert_eq!(found, Vec::<String>::new());
        let problem = service_kit::Problem::bad_request("invalid_request", "x")
            .into_response(&service_kit::RequestId::parse("r-1").unwrap());
        let bytes = http_body_util::BodyExt::collect(problem.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let found =
            check::response_mismatches(&d, &json!({"$ref": "#/components/schemas/Problem"}), &body);
        assert!(found.is_empty(), "{found:#?}");
    }

    /// Every code a domain error can carry, and the server's own codes, are
    /// named in the document's `Problem.code`.
    #[test]
    fn every_error_code_is_documented() {
        let d = doc();
        let words = check::documented_codes(&d);
        let own = [
            "internal_error",
            "invalid_id",
            "malformed_json",
            "invalid_if_match",
            "precondition_required",
            "precondition_failed",
            "payload_too_large",
            "unsupported_media_type",
            "rate_limited",
            "request_timeout",
            "outcome_unknown",
            "not_ready",
            "forbidden",
        ];
        for code in inventory_core::Error::CODES.iter().chain(&own) {
            assert!(
                words.contains(*code),
                "{code} is not in Problem.code's list"
            );
        }
    }

    /// The document's bounds are the code's constants.
    #[test]
    fn bounds_are_the_constants() {
        let d = doc();
        let s = |pointer: &str| {
            d.pointer(&format!("/components/schemas{pointer}"))
                .cloned()
                .unwrap_or_else(|| panic!("{pointer} not in the document"))
        };
        assert_eq!(
            s("/ReserveRequest/properties/quantity/maximum"),
            json!(QUANTITY_MAX)
        );
        assert_eq!(
            s("/ReserveLinesRequest/properties/lines/items/properties/quantity/maximum"),
            json!(QUANTITY_MAX)
        );
        assert_eq!(
            s("/ReserveLinesRequest/properties/lines/maxItems"),
            json!(LINES_MAX)
        );
        assert_eq!(
            s("/CreateItemRequest/properties/quantity/maximum"),
            json!(STOCK_MAX)
        );
        assert_eq!(
            s("/SetQuantityRequest/properties/quantity/maximum"),
            json!(STOCK_MAX)
        );
        assert_eq!(
            s("/AdjustRequest/properties/delta/maximum"),
            json!(STOCK_MAX)
        );
        assert_eq!(
            s("/AdjustRequest/properties/reason/maxLength"),
            json!(REASON_LEN_MAX)
        );
        assert_eq!(
            s("/SetQuantityRequest/properties/reason/maxLength"),
            json!(REASON_LEN_MAX)
        );
        assert_eq!(
            s("/TtlSeconds/maximum"),
            json!(RESERVATION_TTL_MAX_MS / 1_000)
        );
        let param = |path: &str, name: &str| {
            d["paths"][path]["get"]["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == name))
                .map(|p| p["schema"].clone())
                .unwrap_or_else(|| panic!("{path} {name}"))
        };
        assert_eq!(
            param("/api/inventory", "product_ids")["maxItems"],
            json!(AVAILABILITY_BATCH_MAX)
        );
        assert_eq!(
            param("/api/inventory/{product_id}/adjustments", "limit")["maximum"],
            json!(ADJUSTMENTS_PAGE_MAX)
        );
    }
}
