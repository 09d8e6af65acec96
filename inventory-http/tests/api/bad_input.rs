//! Bad requests, table-driven: each gets its 4xx status and stable code, and
//! afterwards the stock and the reservations are exactly as before.

use http::Method;
use inventory_core::{InventoryStore, ProductId};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::TestApp;

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        headers: JSON.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        body: body.into(),
        status,
        code,
    }
}

fn with_headers(mut c: Case, headers: &[(&'static str, &str)]) -> Case {
    c.headers = headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    c
}

fn j(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// Every kind of bad request the contract names, and then some.
fn cases(product: Uuid, order: Uuid, fresh: Uuid) -> Vec<Case> {
    let reserve = "/api/inventory/reserve";
    let lines = "/api/inventory/reservations";
    let item = format!("/api/inventory/{product}");
    let adjust = format!("{item}/adjustments");
    let r = |q: Value| j(json!({"product_id": product, "quantity": q, "order_id": Uuid::new_v4()}));
    let ttl = |t: i64| {
        j(
            json!({"product_id": product, "quantity": 1, "order_id": Uuid::new_v4(), "ttl_seconds": t}),
        )
    };
    let many_lines: Vec<Value> = (0..101)
        .map(|_| json!({"product_id": Uuid::new_v4(), "quantity": 1}))
        .collect();
    let too_many_ids: Vec<String> = (0..101).map(|_| Uuid::new_v4().to_string()).collect();
    let put_body = j(json!({"quantity": 20}));
    vec![
        case("malformed json", Method::POST, reserve, "{\"product_id\": ", 400, "malformed_json"),
        case("empty body", Method::POST, reserve, "", 400, "malformed_json"),
        case("not utf-8", Method::POST, reserve, vec![0xff, 0xfe, 0x7b], 400, "malformed_json"),
        case("deeply nested", Method::POST, reserve, "[".repeat(5000), 400, "invalid_request"),
        case("array instead of object", Method::POST, reserve, "[1,2]", 400, "invalid_request"),
        case("null body", Method::POST, reserve, "null", 400, "invalid_request"),
        case("quantity as string", Method::POST, reserve, r(json!("3")), 400, "invalid_request"),
        case("quantity as float", Method::POST, reserve, r(json!(1.5)), 400, "invalid_request"),
        case("quantity beyond i64", Method::POST, reserve, format!("{{\"product_id\":\"{product}\",\"quantity\":99999999999999999999999,\"order_id\":\"{order}\"}}"), 400, "invalid_request"),
        case("missing order_id", Method::POST, reserve, j(json!({"product_id": product, "quantity": 1})), 400, "invalid_request"),
        case("unknown field", Method::POST, reserve, j(json!({"product_id": product, "quantity": 1, "order_id": order, "price": 3})), 400, "invalid_request"),
        case("invalid uuid in body", Method::POST, reserve, j(json!({"product_id": "abc", "quantity": 1, "order_id": order})), 400, "invalid_request"),
        case("unknown product", Method::POST, reserve, j(json!({"product_id": fresh, "quantity": 1, "order_id": Uuid::new_v4()})), 404, "product_not_found"),
        case("zero quantity", Method::POST, reserve, r(json!(0)), 400, "invalid_quantity"),
        case("negative quantity", Method::POST, reserve, r(json!(-1)), 400, "invalid_quantity"),
        case("oversized quantity", Method::POST, reserve, r(json!(1_000_001)), 400, "invalid_quantity"),
        case("more than available", Method::POST, reserve, r(json!(9)), 409, "insufficient_stock"),
        case("same order, other quantity", Method::POST, reserve, j(json!({"product_id": product, "quantity": 1, "order_id": order})), 409, "idempotency_conflict"),
        case("ttl zero", Method::POST, reserve, ttl(0), 400, "invalid_request"),
        case("ttl over a day", Method::POST, reserve, ttl(86_401), 400, "invalid_request"),
        case("ttl negative", Method::POST, reserve, ttl(-5), 400, "invalid_request"),
        case("too many lines", Method::POST, lines, j(json!({"order_id": Uuid::new_v4(), "lines": many_lines})), 400, "invalid_request"),
        case("duplicate lines", Method::POST, lines, j(json!({"order_id": Uuid::new_v4(), "lines": [{"product_id": product, "quantity": 1}, {"product_id": product, "quantity": 1}]})), 422, "duplicate_product"),
        case("no lines", Method::POST, lines, j(json!({"order_id": Uuid::new_v4(), "lines": []})), 400, "invalid_request"),
        case("line with unknown product", Method::POST, lines, j(json!({"order_id": Uuid::new_v4(), "lines": [{"product_id": product, "quantity": 1}, {"product_id": fresh, "quantity": 1}]})), 404, "product_not_found"),
        case("body over the limit", Method::POST, reserve, vec![b' '; 70 * 1024], 413, "payload_too_large"),
        with_headers(case("wrong content type", Method::POST, reserve, r(json!(1)), 415, "unsupported_media_type"), &[("content-type", "text/plain")]),
        with_headers(case("no content type", Method::POST, reserve, r(json!(1)), 415, "unsupported_media_type"), &[]),
        case("unknown route", Method::GET, "/api/nothing", "", 404, "route_not_found"),
        case("path traversal", Method::GET, "/api/inventory/../../health/x", "", 404, "route_not_found"),
        case("wrong method", Method::POST, &item, "{}", 405, "method_not_allowed"),
        case("wrong method on a literal route", Method::GET, reserve, "", 405, "method_not_allowed"),
        case("invalid uuid in path", Method::GET, "/api/inventory/not-a-uuid", "", 400, "invalid_id"),
        case("unknown product in path", Method::GET, &format!("/api/inventory/{fresh}"), "", 404, "product_not_found"),
        with_headers(case("If-Match * with no item", Method::PUT, &format!("/api/inventory/{fresh}"), put_body.clone(), 412, "precondition_failed"), &[("content-type", "application/json"), ("if-match", "*")]),
        with_headers(case("bad If-Match", Method::PUT, &item, put_body.clone(), 400, "invalid_if_match"), &[("content-type", "application/json"), ("if-match", "version-1")]),
        with_headers(case("weak If-Match", Method::PUT, &item, put_body.clone(), 400, "invalid_if_match"), &[("content-type", "application/json"), ("if-match", "W/\"1\"")]),
        case("missing If-Match", Method::PUT, &item, put_body.clone(), 428, "precondition_required"),
        with_headers(case("stale If-Match", Method::PUT, &item, put_body.clone(), 412, "version_conflict"), &[("content-type", "application/json"), ("if-match", "\"1\"")]),
        with_headers(case("If-Match beyond any version", Method::PUT, &item, put_body, 412, "version_conflict"), &[("content-type", "application/json"), ("if-match", "\"65061482495919529552\"")]),
        with_headers(case("set below reserved", Method::PUT, &item, j(json!({"quantity": 1})), 409, "below_reserved"), &[("content-type", "application/json"), ("if-match", "\"2\"")]),
        case("too many product_ids", Method::GET, &format!("/api/inventory?product_ids={}", too_many_ids.join(",")), "", 400, "invalid_request"),
        case("no product_ids", Method::GET, "/api/inventory", "", 400, "invalid_request"),
        case("bad id in product_ids", Method::GET, &format!("/api/inventory?product_ids={product},zzz"), "", 400, "invalid_id"),
        case("confirm unknown reservation", Method::POST, "/api/inventory/confirm", j(json!({"reservation_id": fresh})), 404, "reservation_not_found"),
        case("confirm with bad id", Method::POST, "/api/inventory/confirm/xyz", "", 400, "invalid_id"),
        case("release with bad id", Method::DELETE, "/api/inventory/reserve/xyz", "", 400, "invalid_id"),
        case("release unknown reservation", Method::DELETE, &format!("/api/inventory/reserve/{fresh}"), "", 404, "reservation_not_found"),
        case("create negative stock", Method::POST, "/api/inventory/items", j(json!({"product_id": fresh, "quantity": -1})), 400, "invalid_quantity"),
        case("create existing item", Method::POST, "/api/inventory/items", j(json!({"product_id": product, "quantity": 1})), 409, "already_exists"),
        case("adjust by zero", Method::POST, &adjust, j(json!({"delta": 0, "reason": "x"})), 400, "invalid_quantity"),
        case("adjust without reason", Method::POST, &adjust, j(json!({"delta": 1, "reason": "  "})), 400, "invalid_request"),
        case("adjust with a huge reason", Method::POST, &adjust, j(json!({"delta": 1, "reason": "x".repeat(201)})), 400, "invalid_request"),
        case("adjust below reserved", Method::POST, &adjust, j(json!({"delta": -9, "reason": "loss"})), 409, "below_reserved"),
        case("adjust unknown product", Method::POST, &format!("/api/inventory/{fresh}/adjustments"), j(json!({"delta": 1, "reason": "x"})), 404, "product_not_found"),
        case("ledger page of zero", Method::GET, &format!("{adjust}?limit=0"), "", 400, "invalid_request"),
        case("reservation lookup with bad id", Method::GET, "/api/inventory/reservations/1", "", 400, "invalid_id"),
        case("reservation lookup unknown", Method::GET, &format!("/api/inventory/reservations/{fresh}"), "", 404, "reservation_not_found"),
    ]
}

/// Sends every bad request and checks status, code, `Allow` on 405, and that
/// nothing changed.
pub async fn bad_requests_change_nothing<S: InventoryStore>(t: &TestApp<S>) {
    let product = t.create_item(10).await;
    let order = Uuid::new_v4();
    let r = t
        .post(
            "/api/inventory/reserve",
            &json!({"product_id": product, "quantity": 2, "order_id": order}),
        )
        .await;
    assert_eq!(r.status, 201);
    let reservation = r.json();
    let reservation_id: Uuid = reservation["reservation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let before = t.availability(product).await;
    let fresh = Uuid::new_v4();
    let store = t.app.store();
    let ledger_before = store
        .adjustments(ProductId::from_uuid(product), 100)
        .await
        .unwrap();

    let table = cases(product, order, fresh);
    assert!(table.len() >= 25, "{} cases", table.len());
    for c in &table {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = t.send(c.method.clone(), &c.path, &headers, &c.body).await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (c.status, c.code),
            "{}: {:?}",
            c.name,
            reply.json()
        );
        let body = reply.json();
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            c.name
        );
        assert_eq!(body["status"], c.status, "{}", c.name);
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            c.name
        );
        assert_eq!(
            body["request_id"].as_str(),
            reply.header("x-request-id").as_deref(),
            "{}",
            c.name
        );
        if c.status == 405 {
            assert!(reply.header("allow").is_some(), "{}: Allow header", c.name);
        }
    }

    assert_eq!(t.availability(product).await, before, "stock unchanged");
    let reservations = store
        .reservations_of_product(ProductId::from_uuid(product))
        .await
        .unwrap();
    assert_eq!(reservations.len(), 1, "no reservation was added");
    let now = t
        .get(&format!("/api/inventory/reservations/{reservation_id}"))
        .await
        .json();
    assert_eq!(now, reservation, "the reservation is unchanged");
    assert!(
        store
            .item(ProductId::from_uuid(fresh))
            .await
            .unwrap()
            .is_none(),
        "no item created"
    );
    let ledger_after = store
        .adjustments(ProductId::from_uuid(product), 100)
        .await
        .unwrap();
    assert_eq!(ledger_after, ledger_before, "no ledger entry");
}
