//! The whole stack, started as `cargo run --release` starts it (same library
//! call, ephemeral ports): an order placed through the gateway is confirmed,
//! the stock drops, and only its owner can see it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use service_guard::Role;
use stack::{demo_product, StackConfig, DEMO_STOCK};

/// Longest the saga may take to confirm an order here, in milliseconds.
const CONFIRM_WITHIN_MS: u64 = 10_000;

async fn call(
    gw: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{gw}{path}"));
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        builder = builder
            .header("content-type", "application/json")
            .header("idempotency-key", "stack-test-1");
    }
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let response = client
        .request(builder.body(Full::new(bytes)).expect("request"))
        .await
        .expect("response");
    let read = test_support::http::Reply::read(response).await;
    (read.status, read.json())
}

/// Order through the gateway -> confirmed, stock decremented, visible only to its owner.
#[tokio::test]
async fn order_through_the_gateway_is_confirmed_and_private() {
    let stack = stack::start(StackConfig::ephemeral())
        .await
        .expect("stack starts");
    let gw = stack.gateway;
    let alice = stack.token("alice", &[Role::Customer]).expect("token");
    let bob = stack.token("bob", &[Role::Customer]).expect("token");
    let keyboard = demo_product(1);
    let initial = DEMO_STOCK[0].1;

    let (status, products) = call(gw, Method::GET, "/api/products", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(products["items"].as_array().map(Vec::len), Some(5));
    let stock_path = format!("/api/inventory/{keyboard}");
    let (status, stock) = call(gw, Method::GET, &stock_path, None, None).await;
    assert_eq!((status, stock["quantity"].as_u64()), (200, Some(initial)));

    let order = json!({"items": [{"product_id": keyboard, "quantity": 2}]});
    let (status, placed) = call(gw, Method::POST, "/api/orders", Some(&alice), Some(order)).await;
    assert_eq!(status, 202, "{placed}");
    let id = placed["id"].as_str().expect("order id").to_owned();

    let status_path = format!("/api/orders/{id}/status");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(CONFIRM_WITHIN_MS);
    loop {
        let (code, body) = call(gw, Method::GET, &status_path, Some(&alice), None).await;
        assert_eq!(code, 200, "{body}");
        match body["status"].as_str() {
            Some("confirmed") => break,
            Some("pending") if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("order did not confirm: {other:?}"),
        }
    }

    let (_, stock) = call(gw, Method::GET, &stock_path, None, None).await;
    assert_eq!(stock["quantity"].as_u64(), Some(initial - 2));
    assert_eq!(stock["reserved"].as_u64(), Some(0));

    // Inventory's stock events reach orders over the shared in-process bus:
    // the order shows its hold, confirmed.
    let order_path = format!("/api/orders/{id}");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(CONFIRM_WITHIN_MS);
    let mine = loop {
        let (code, mine) = call(gw, Method::GET, &order_path, Some(&alice), None).await;
        assert_eq!((code, mine["user_id"].as_str()), (200, Some("alice")));
        let held = mine["holds"].as_array().and_then(|h| h.first()).cloned();
        match held {
            Some(hold) if hold["status"] == "confirmed" => break mine,
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => panic!("no confirmed hold from inventory's events: {mine}"),
        }
    };
    assert_eq!(mine["holds"][0]["product_id"], json!(keyboard));
    assert_eq!(mine["holds"][0]["quantity"], 2);
    let (code, _) = call(gw, Method::GET, &order_path, Some(&bob), None).await;
    assert_eq!(code, 404, "another customer cannot see it");
    let (code, _) = call(gw, Method::GET, &order_path, None, None).await;
    assert_eq!(code, 401);

    stack.shutdown().await.expect("clean shutdown");
}
