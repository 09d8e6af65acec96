//! Upstream failures: down, silent; and what `/health` reports.

use std::time::{Duration, Instant};

use service_guard::Role;

use crate::helpers::*;

/// An upstream nobody listens on is a prompt 503 problem, never a hang.
#[tokio::test]
async fn upstream_down_is_a_prompt_503() {
    let mut cfg = config(dead_addr().await, dead_addr().await);
    cfg.orders_timeout_ms = 2_000;
    let gw = spawn_gateway(cfg).await;
    let customer = token("u1", &[Role::Customer]);
    let started = Instant::now();
    let r = get(gw.addr, "/api/orders", Some(&customer)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered within the timeout"
    );
    assert_eq!((r.status, r.code().as_str()), (503, "upstream_unavailable"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
}

/// An upstream that accepts but never answers is cut off at its timeout (504).
#[tokio::test]
async fn silent_upstream_times_out() {
    let silent = spawn_silent().await;
    let mut cfg = config(dead_addr().await, silent.addr);
    cfg.inventory_timeout_ms = 300;
    let gw = spawn_gateway(cfg).await;
    let started = Instant::now();
    let r = get(
        gw.addr,
        "/api/inventory/00000000-0000-4000-8000-000000000001",
        None,
    )
    .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!((r.status, r.code().as_str()), (504, "upstream_timeout"));
}

/// `/health` lists each upstream's readiness: 200 when all are ready, 503
/// (degraded) when one is down; it needs no token.
#[tokio::test]
async fn health_reports_each_upstream() {
    let inventory = spawn_inventory().await;
    let orders = spawn_orders(inventory.addr).await;
    let gw = spawn_gateway(config(orders.addr, inventory.addr)).await;
    let r = get(gw.addr, "/health", None).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["status"], "ok");

    let gw = spawn_gateway(config(dead_addr().await, inventory.addr)).await;
    let r = get(gw.addr, "/health", None).await;
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["upstreams"][0]["name"], "orders");
    assert_eq!(body["upstreams"][0]["ready"], false);
    assert_eq!(body["upstreams"][0]["error"], "unreachable");
    assert_eq!(body["upstreams"][1]["name"], "inventory");
    assert_eq!(body["upstreams"][1]["ready"], true);
}

/// Without a key the gateway refuses a listener bound beyond loopback, even
/// when the configured address is a loopback one (what counts is where it
/// really listens).
#[tokio::test]
async fn open_gateway_refuses_a_public_listener() {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let config = gateway::Config::embedded();
    assert!(
        config.listen.ip().is_loopback(),
        "the configured address is loopback"
    );

    let result = gateway::run(listener, config, std::future::ready(())).await;

    assert!(
        matches!(result, Err(gateway::StartError::OpenOffLoopback(addr)) if addr.ip().is_unspecified()),
        "{result:?}"
    );
}
