//! Routing, request ids, header rewriting and rate limits through the gateway.

use http::Method;
use serde_json::json;
use service_guard::Role;

use crate::helpers::*;

const PRODUCT: &str = "00000000-0000-4000-8000-0000000000aa";

/// Inventory paths reach the real inventory server, orders and products
/// paths the real orders server; other paths are answered by the gateway
/// alone.
#[tokio::test]
async fn routes_each_prefix_to_its_upstream() {
    let inventory = spawn_inventory().await;
    let orders = spawn_orders(inventory.addr).await;
    let gw = spawn_gateway(config(orders.addr, inventory.addr)).await;
    let admin = token("ops", &[Role::Admin]);

    let created = json(
        gw.addr,
        Method::POST,
        "/api/inventory/items",
        &admin,
        &json!({"product_id": PRODUCT, "quantity": 7}),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let read = get(gw.addr, &format!("/api/inventory/{PRODUCT}"), None).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["available"], 7);

    let products = get(gw.addr, "/api/products", None).await;
    assert_eq!(products.status, 200);
    assert_eq!(products.json()["items"].as_array().map(Vec::len), Some(5));
    let customer = token("u1", &[Role::Customer]);
    let mine = get(gw.addr, "/api/orders", Some(&customer)).await;
    assert_eq!((mine.status, mine.json()["total"].as_u64()), (200, Some(0)));
    let unknown = get(gw.addr, "/api/orders/not-an-order/status", Some(&customer)).await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "order_not_found")
    );

    for (path, status) in [
        ("/api/ordersX", 404),
        ("/nope", 404),
        ("/api/products/../orders", 400),
    ] {
        let r = get(gw.addr, path, Some(&customer)).await;
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(
            r.code(),
            if status == 404 {
                "route_not_found"
            } else {
                "invalid_path"
            }
        );
    }
}

/// A client's request id reaches the upstream (in its log line) and comes
/// back; without one the gateway makes one and passes it on.
#[tokio::test]
async fn request_id_travels_end_to_end() {
    capture_logs();
    let inventory = spawn_inventory().await;
    let orders = spawn_recorder().await;
    let gw = spawn_gateway(config(orders.addr, inventory.addr)).await;

    let id = "e2e-request-id-4711";
    let r = send(
        gw.addr,
        Method::GET,
        &format!("/api/inventory/{PRODUCT}"),
        &[("x-request-id", id)],
        b"",
    )
    .await;
    assert_eq!(r.header("x-request-id").as_deref(), Some(id));
    assert_eq!(
        r.json()["request_id"],
        id,
        "the upstream's problem names it"
    );
    let logs = logs();
    let upstream_line = logs
        .lines()
        .find(|l| l.contains(id) && l.contains("\"target\":\"service_kit::server\""));
    assert!(upstream_line.is_some(), "inventory logged the id: {logs}");
    let gateway_line = logs
        .lines()
        .find(|l| l.contains(id) && l.contains("\"service\":\"gateway\""));
    assert!(gateway_line.is_some(), "the gateway logged the id");

    let customer = token("u1", &[Role::Customer]);
    let r = get(gw.addr, "/api/orders", Some(&customer)).await;
    let generated = r.header("x-request-id").expect("generated id");
    let seen = orders.seen();
    assert_eq!(seen[0].headers["x-request-id"], generated.as_str());
}

/// Identity headers a client forges never reach the upstream; the gateway
/// sets them from the token, forwards the token, drops hop-by-hop headers in
/// both directions and sets X-Forwarded-For/-Proto.
#[tokio::test]
async fn forged_identity_and_hop_by_hop_headers_are_stripped() {
    let orders = spawn_recorder().await;
    let mut cfg = config(orders.addr, dead_addr().await);
    cfg.strip_headers = vec!["x-tenant-admin".into()];
    let gw = spawn_gateway(cfg).await;
    let customer = token("alice", &[Role::Customer]);
    let auth = format!("Bearer {customer}");

    let r = send(
        gw.addr,
        Method::POST,
        "/api/orders",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("x-user-id", "mallory"),
            ("x-user-roles", "admin"),
            ("x-tenant-admin", "true"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("connection", "keep-alive, x-client-hop"),
            ("x-client-hop", "1"),
            ("keep-alive", "timeout=1"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic eDp5"),
        ],
        b"{\"items\":[]}",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("x-upstream-hop").is_none(),
        "response hop header dropped"
    );
    assert!(r.header("keep-alive").is_none());

    let seen = orders.seen();
    assert_eq!(
        (&seen[0].method, seen[0].target.as_str()),
        (&Method::POST, "/api/orders")
    );
    let h = &seen[0].headers;
    assert_eq!(h["x-user-id"], "alice");
    assert_eq!(h["x-user-roles"], "customer");
    assert_eq!(h.get_all("x-user-id").iter().count(), 1);
    assert!(h.get("x-tenant-admin").is_none());
    assert_eq!(h["authorization"], auth.as_str());
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    for hop in ["x-client-hop", "keep-alive", "te", "proxy-authorization"] {
        assert!(h.get(hop).is_none(), "{hop} forwarded");
    }
    assert_eq!(seen[0].body_len, 12, "the body is forwarded");
}

/// Past the per-user budget the gateway answers 429 with Retry-After and
/// forwards nothing more.
#[tokio::test]
async fn per_user_rate_limit() {
    let orders = spawn_recorder().await;
    let mut cfg = config(orders.addr, dead_addr().await);
    cfg.rate_limit_user_per_minute = 2;
    let gw = spawn_gateway(cfg).await;
    let customer = token("busy", &[Role::Customer]);
    for _ in 0..2 {
        let r = get(gw.addr, "/api/orders", Some(&customer)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-limit").as_deref(), Some("2"));
    }
    let r = get(gw.addr, "/api/orders", Some(&customer)).await;
    assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(orders.seen().len(), 2);
    let other = token("calm", &[Role::Customer]);
    assert_eq!(get(gw.addr, "/api/orders", Some(&other)).await.status, 200);
}

/// Past the per-IP budget anonymous public reads get 429 too.
#[tokio::test]
async fn per_ip_rate_limit() {
    let orders = spawn_recorder().await;
    let mut cfg = config(orders.addr, dead_addr().await);
    cfg.rate_limit_ip_per_minute = 1;
    let gw = spawn_gateway(cfg).await;
    assert_eq!(get(gw.addr, "/api/products", None).await.status, 200);
    assert_eq!(get(gw.addr, "/api/products", None).await.status, 429);
    assert_eq!(
        get(gw.addr, "/health", None).await.status,
        429,
        "health probes upstreams: limited too"
    );
    assert_eq!(orders.seen().len(), 1);
}

/// Bodies over the limit are refused with 413 before anything is forwarded.
#[tokio::test]
async fn oversized_body_is_413() {
    let orders = spawn_recorder().await;
    let mut cfg = config(orders.addr, dead_addr().await);
    cfg.body_bytes_max = 16;
    let gw = spawn_gateway(cfg).await;
    let auth = format!("Bearer {}", token("u1", &[Role::Customer]));
    let r = send(
        gw.addr,
        Method::POST,
        "/api/orders",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        &[b' '; 64],
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));
    assert!(orders.seen().is_empty());
}
