//! The OpenAPI 3.1 document (`docs/openapi/orders.json`), embedded at build
//! time and served at `/openapi.json`.
//!
//! The tests below hold it to the code: every route and no other, the statuses
//! each route's facts imply, every request body against the type that parses
//! it, every response body against the type that renders it, and every bound
//! against its constant (ADR 0009).

use bytes::Bytes;
use service_kit::openapi;

/// The document's source.
pub const SPEC_JSON: &str = include_str!("../../../docs/openapi/orders.json");

/// The document as compact JSON bytes, ready to serve.
///
/// # Errors
/// The parser's message when the embedded document is malformed.
pub fn document_json() -> Result<Bytes, String> {
    openapi::served(SPEC_JSON)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use service_kit::openapi::check::{self, parses, Parse, RouteFacts};

    use super::*;
    use crate::domain::CancelReason;
    use crate::http::dto;
    use crate::http::routes::{Access, ROUTES};

    /// Every route is documented and every documented operation is a route.
    #[test]
    fn routes_match_the_document() {
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.template.to_owned()))
            .collect();
        routes.sort();
        assert_eq!(
            openapi::operations(&openapi::parse(SPEC_JSON).unwrap()),
            routes
        );
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
        let found = check::missing_statuses(&openapi::parse(SPEC_JSON).unwrap(), &facts);
        assert_eq!(found, Vec::<String>::new());
    }

    /// Every documented request body matches, field by field, the type the
    /// handler parses it into; and every body the code parses is documented.
    #[test]
    fn request_bodies_match_their_types() {
        let bodies: &[(&str, &str, Parse)] = &[
            ("POST", "/api/orders", parses::<dto::PlaceOrderRequest>),
            (
                "POST",
                "/api/products",
                parses::<crate::catalog::ProductInput>,
            ),
            (
                "PUT",
                "/api/products/{id}",
                parses::<crate::catalog::ProductInput>,
            ),
        ];
        let found = check::request_bodies_mismatches(&openapi::parse(SPEC_JSON).unwrap(), bodies);
        assert_eq!(found, Vec::<String>::new());
    }

    /// Every documented 2xx body is what the code renders for it, checked
    /// against the document made strict (no field the document lacks) with
    /// every optional field set (no documented field the code lacks).
    #[test]
    fn response_bodies_match_their_types() {
        let d = openapi::parse(SPEC_JSON).unwrap();
        let uuid = uuid::Uuid::new_v4;
        let at = dto::rfc3339(1_700_000_000_000);
        let order_view = dto::OrderView {
            id: uuid(),
            user_id: "alice".into(),
            status: "cancelled".into(),
            cancel_reason: Some(CancelReason::ALL[0].as_str().into()),
            items: vec![dto::LineView {
                product_id: uuid(),
                name: "Keyboard".into(),
                quantity: 2,
                unit_price_minor: 8_999,
                line_total_minor: 17_998,
            }],
            total_minor: 17_998,
            currency: "EUR".into(),
            idempotency_key: Some("k-1".into()),
            reservation_ids: vec![uuid()],
            payment_id: Some("pay-1".into()),
            refund_id: Some("ref-1".into()),
            holds: vec![dto::HoldView {
                reservation_id: uuid(),
                product_id: uuid(),
                quantity: 2,
                status: "released".into(),
                updated_at: at.clone(),
            }],
            created_at: at.clone(),
            updated_at: at.clone(),
        };
        let order = json!(order_view);
        let list = json!(dto::OrderList {
            items: vec![order_view.clone()],
            page: 1,
            limit: 20,
            total: 1,
            has_next: false,
        });
        let status = json!(dto::StatusView {
            id: uuid(),
            status: "pending".into()
        });
        let product_view = dto::ProductView {
            id: uuid(),
            name: "Keyboard".into(),
            price_minor: 8_999,
            currency: "EUR".into(),
            active: true,
            updated_at: at,
        };
        let product = json!(product_view);
        let products = json!(dto::ProductList {
            items: vec![product_view.clone()]
        });
        let rendered: &[(&str, &str, u16, &Value)] = &[
            ("POST", "/api/orders", 202, &order),
            ("GET", "/api/orders", 200, &list),
            ("GET", "/api/orders/{id}", 200, &order),
            ("GET", "/api/orders/{id}/status", 200, &status),
            ("POST", "/api/orders/{id}/cancel", 200, &order),
            ("POST", "/api/orders/{id}/cancel", 202, &order),
            ("GET", "/api/products", 200, &products),
            ("POST", "/api/products", 201, &product),
            ("GET", "/api/products/{id}", 200, &product),
            ("PUT", "/api/products/{id}", 200, &product),
        ];
        let found = check::rendered_mismatches(&d, rendered);
        assert_eq!(found, Vec::<String>::new());
    }

    /// Every code an order refusal can carry is named in the document's
    /// `Problem.code`.
    #[test]
    fn every_order_error_code_is_documented() {
        use crate::domain::{OrderError, ProductId};
        let d = openapi::parse(SPEC_JSON).unwrap();
        let words = check::documented_codes(&d);
        let p = ProductId::from_uuid(uuid::Uuid::nil());
        let every = [
            OrderError::NoItems,
            OrderError::TooManyLines,
            OrderError::InvalidQuantity {
                product_id: p,
                quantity: 0,
            },
            OrderError::MergedQuantity {
                product_id: p,
                quantity: 200,
            },
            OrderError::UnknownProduct(p),
            OrderError::MixedCurrency,
            OrderError::TotalTooLarge,
            OrderError::InvalidIdempotencyKey,
            OrderError::InvalidUser,
        ];
        for e in &every {
            // A new variant fails to compile here until it is listed above.
            match e {
                OrderError::NoItems
                | OrderError::TooManyLines
                | OrderError::InvalidQuantity { .. }
                | OrderError::MergedQuantity { .. }
                | OrderError::UnknownProduct(_)
                | OrderError::MixedCurrency
                | OrderError::TotalTooLarge
                | OrderError::InvalidIdempotencyKey
                | OrderError::InvalidUser => {}
            }
            assert!(
                words.contains(e.code()),
                "{} is not in Problem.code's list",
                e.code()
            );
        }
    }

    /// The order and catalog bounds in the document are the code's constants.
    #[test]
    fn body_bounds_match_the_document() {
        use crate::catalog::{PRICE_MINOR_MAX, PRODUCT_NAME_LEN_MAX};
        use crate::domain::{LINES_MAX, LINE_QUANTITY_MAX, LINE_QUANTITY_MIN};
        let d = openapi::parse(SPEC_JSON).unwrap();
        let s = |pointer: &str| {
            d.pointer(&format!("/components/schemas{pointer}"))
                .cloned()
                .unwrap_or_else(|| panic!("{pointer} not in the document"))
        };
        let quantity = s("/PlaceOrder/properties/items/items/properties/quantity");
        assert_eq!(quantity["minimum"], json!(LINE_QUANTITY_MIN));
        assert_eq!(quantity["maximum"], json!(LINE_QUANTITY_MAX));
        assert_eq!(s("/PlaceOrder/properties/items/maxItems"), json!(LINES_MAX));
        assert_eq!(
            s("/ProductInput/properties/name/maxLength"),
            json!(PRODUCT_NAME_LEN_MAX)
        );
        assert_eq!(
            s("/ProductInput/properties/price_minor/maximum"),
            json!(PRICE_MINOR_MAX)
        );
        let mut reasons: Vec<Value> = CancelReason::ALL
            .iter()
            .map(|r| json!(r.as_str()))
            .collect();
        reasons.push(Value::Null);
        assert_eq!(s("/Order/properties/cancel_reason/enum"), json!(reasons));
    }

    /// The list's paging bounds in the document are the server's.
    #[test]
    fn paging_bounds_match_the_document() {
        use crate::http::handlers::{PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, PAGE_MAX};
        let doc = openapi::parse(SPEC_JSON).unwrap();
        let params = doc["paths"]["/api/orders"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .clone();
        let schema = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["schema"].clone())
                .unwrap()
        };
        assert_eq!(schema("page")["minimum"], 1);
        assert_eq!(schema("page")["maximum"], u64::from(PAGE_MAX));
        assert_eq!(schema("limit")["maximum"], u64::from(PAGE_LIMIT_MAX));
        assert_eq!(schema("limit")["default"], u64::from(PAGE_LIMIT_DEFAULT));
    }
}
