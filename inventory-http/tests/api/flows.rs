//! The contract's flows over a real socket: each scenario is a generic
//! function run against every store.

use std::time::Duration;

use http::Method;
use inventory_core::InventoryStore;
use serde_json::json;
use uuid::Uuid;

pub use crate::bad_input::bad_requests_change_nothing;
use crate::helpers::{spawn_app, TestApp};

/// Reserve -> repeat -> confirm -> repeat -> release refused; reserve ->
/// release -> repeat; with exact statuses and bodies.
pub async fn reserve_confirm_release<S: InventoryStore>(t: &TestApp<S>) {
    let product = t.create_item(10).await;
    let order = Uuid::new_v4();
    let body = json!({"product_id": product, "quantity": 3, "order_id": order, "ttl_seconds": 600});

    let first = t.post("/api/inventory/reserve", &body).await;
    assert_eq!(first.status, 201, "{:?}", first.json());
    let r = first.json();
    assert_eq!(r["product_id"], product.to_string());
    assert_eq!(r["order_id"], order.to_string());
    assert_eq!(r["quantity"], 3);
    assert_eq!(r["status"], "pending");
    assert_eq!(r["created_at"], "2023-11-14T22:13:20Z");
    assert_eq!(r["expires_at"], "2023-11-14T22:23:20Z");
    let id = r["reservation_id"].as_str().unwrap().to_owned();
    assert_eq!(
        first.header("location").unwrap(),
        format!("/api/inventory/reservations/{id}")
    );

    let repeat = t.post("/api/inventory/reserve", &body).await;
    assert_eq!(repeat.status, 200);
    assert_eq!(
        repeat.json(),
        r,
        "an idempotent repeat returns the same reservation"
    );

    let a = t.availability(product).await;
    assert_eq!(
        (
            a["quantity"].as_u64(),
            a["reserved"].as_u64(),
            a["available"].as_u64()
        ),
        (Some(10), Some(3), Some(7))
    );
    assert_eq!(a["version"], 2);

    let confirmed = t
        .post("/api/inventory/confirm", &json!({"reservation_id": id}))
        .await;
    assert_eq!(confirmed.status, 200);
    assert_eq!(confirmed.json()["status"], "confirmed");
    let again = t
        .post(&format!("/api/inventory/confirm/{id}"), &json!({}))
        .await;
    assert_eq!(again.status, 200, "confirm is idempotent (path form)");
    assert_eq!(again.json()["status"], "confirmed");

    let a = t.availability(product).await;
    assert_eq!(
        (
            a["quantity"].as_u64(),
            a["reserved"].as_u64(),
            a["available"].as_u64()
        ),
        (Some(7), Some(0), Some(7))
    );
    assert_eq!(a["version"], 3, "the repeat changed nothing");

    let refused = t.delete(&format!("/api/inventory/reserve/{id}")).await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (409, "invalid_transition")
    );

    let second = t.reserve(product, 2).await;
    assert_eq!(second.status, 201);
    let id2 = second.json()["reservation_id"].as_str().unwrap().to_owned();
    let released = t.delete(&format!("/api/inventory/reserve/{id2}")).await;
    assert_eq!(released.status, 200);
    assert_eq!(released.json()["status"], "released");
    let again = t.delete(&format!("/api/inventory/reserve/{id2}")).await;
    assert_eq!(again.status, 200, "release is idempotent");
    let confirm_released = t
        .post("/api/inventory/confirm", &json!({"reservation_id": id2}))
        .await;
    assert_eq!(
        (confirm_released.status, confirm_released.code().as_str()),
        (409, "invalid_transition")
    );

    let fetched = t.get(&format!("/api/inventory/reservations/{id2}")).await;
    assert_eq!(fetched.json()["status"], "released");
    let a = t.availability(product).await;
    assert_eq!(
        (a["quantity"].as_u64(), a["available"].as_u64()),
        (Some(7), Some(7))
    );
}

/// A reservation past its hold is expired by the sweep (time moved by the
/// manual clock, no sleeping); confirming it afterwards is 410.
pub async fn expiry_by_sweep<S: InventoryStore>(t: &TestApp<S>) {
    let product = t.create_item(5).await;
    let r = t
        .post(
            "/api/inventory/reserve",
            &json!({"product_id": product, "quantity": 4, "order_id": Uuid::new_v4(), "ttl_seconds": 60}),
        )
        .await;
    assert_eq!(r.status, 201);
    let id = r.json()["reservation_id"].as_str().unwrap().to_owned();
    assert_eq!(t.app.sweep_once().await.unwrap(), 0, "nothing is due yet");

    t.clock.advance(Duration::from_secs(61));
    assert!(t.app.sweep_once().await.unwrap() >= 1);

    let a = t.availability(product).await;
    assert_eq!(
        (a["reserved"].as_u64(), a["available"].as_u64()),
        (Some(0), Some(5))
    );
    let fetched = t.get(&format!("/api/inventory/reservations/{id}")).await;
    assert_eq!(fetched.json()["status"], "expired");
    let late = t
        .post("/api/inventory/confirm", &json!({"reservation_id": id}))
        .await;
    assert_eq!(
        (late.status, late.code().as_str()),
        (410, "reservation_expired")
    );
}

/// 100 clients race for the last unit: exactly one wins.
pub async fn last_unit_race<S: InventoryStore>(t: &TestApp<S>) {
    let product = t.create_item(1).await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        tasks.push(t.reserve(product, 1));
    }
    let replies = futures_join_all(tasks).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let short = replies
        .iter()
        .filter(|r| r.status == 409 && r.code() == "insufficient_stock")
        .count();
    assert_eq!((created, short), (1, 99));
    let a = t.availability(product).await;
    assert_eq!(
        (a["reserved"].as_u64(), a["available"].as_u64()),
        (Some(1), Some(0))
    );
}

/// Runs futures concurrently on this task and collects their outputs.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("ready")).collect()
}

/// ETag and If-None-Match on reads; If-Match on PUT (412 stale, 428 missing);
/// adjustments and their ledger.
pub async fn versions_and_stock_management<S: InventoryStore>(t: &TestApp<S>) {
    let product = t.create_item(10).await;
    let path = format!("/api/inventory/{product}");
    let read = t.get(&path).await;
    assert_eq!(read.header("etag").as_deref(), Some("\"1\""));
    let cached = t
        .send(Method::GET, &path, &[("if-none-match", "\"1\"")], b"")
        .await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    // HEAD where GET is: the same status and headers, no body.
    let head = t.send(Method::HEAD, &path, &[], b"").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("etag").as_deref(), Some("\"1\""));
    assert!(head.body.is_empty());

    let put = |tag: Option<&'static str>, qty: i64| {
        let body = serde_json::to_vec(&json!({"quantity": qty, "reason": "stock count"})).unwrap();
        let path = path.clone();
        async move {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(tag) = tag {
                headers.push(("if-match", tag));
            }
            t.send(Method::PUT, &path, &headers, &body).await
        }
    };
    let ok = put(Some("\"1\""), 12).await;
    assert_eq!(ok.status, 200, "{:?}", ok.json());
    assert_eq!(ok.json()["quantity"], 12);
    assert_eq!(ok.header("etag").as_deref(), Some("\"2\""));
    let stale = put(Some("\"1\""), 13).await;
    assert_eq!(
        (stale.status, stale.code().as_str()),
        (412, "version_conflict")
    );
    let missing = put(None, 13).await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (428, "precondition_required")
    );
    // `*`: any current version (RFC 9110).
    let any = put(Some("*"), 12).await;
    assert_eq!(any.status, 200, "{:?}", any.json());
    assert_eq!(any.json()["quantity"], 12);

    let adj = t
        .post(
            &format!("{path}/adjustments"),
            &json!({"delta": -2, "reason": "damaged"}),
        )
        .await;
    assert_eq!(adj.status, 200);
    assert_eq!(adj.json()["quantity"], 10);
    let ledger = t.get(&format!("{path}/adjustments")).await;
    assert_eq!(ledger.status, 200);
    let entries = ledger.json()["adjustments"].as_array().unwrap().clone();
    assert_eq!(entries[0]["delta"], -2);
    assert_eq!(entries[0]["reason"], "damaged");
    assert_eq!(entries[0]["quantity_after"], 10);

    let bulk = t
        .get(&format!(
            "/api/inventory?product_ids={product},{}",
            Uuid::new_v4()
        ))
        .await;
    assert_eq!(bulk.status, 200);
    assert_eq!(bulk.json()["items"][0]["quantity"], 10);
    assert_eq!(bulk.json()["missing"].as_array().unwrap().len(), 1);

    // An empty list, which the contract allows, is answered with empty lists.
    let none = t.get("/api/inventory?product_ids=").await;
    assert_eq!(none.status, 200);
    assert_eq!(none.json(), json!({"items": [], "missing": []}));

    // A number with an integral value is an integer, as JSON Schema says,
    // however it is written.
    let integral = t
        .post(
            &format!("/api/inventory/{product}/adjustments"),
            &json!({"delta": 2.0, "reason": "recount"}),
        )
        .await;
    assert!(integral.status < 300, "{}", integral.status);
    assert_eq!(t.availability(product).await["quantity"], 12);
    let fraction = t
        .post(
            &format!("/api/inventory/{product}/adjustments"),
            &json!({"delta": 2.5, "reason": "recount"}),
        )
        .await;
    assert_eq!(
        (fraction.status, fraction.code()),
        (400, "invalid_request".to_owned())
    );
}

/// An adjustment sent twice with one `Idempotency-Key` (as a client does
/// after a timeout) changes the stock once; the key with another delta is
/// 409 `idempotency_conflict`; a malformed key is 400; the ledger shows the key.
pub async fn repeated_adjustment_counts_once<S: InventoryStore>(t: &TestApp<S>) {
    let product = t.create_item(10).await;
    let path = format!("/api/inventory/{product}/adjustments");
    let adjust = |key: &'static str, delta: i64| {
        let body = serde_json::to_vec(&json!({"delta": delta, "reason": "restock"})).unwrap();
        let path = path.clone();
        async move {
            let headers = [
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ];
            t.send(Method::POST, &path, &headers, &body).await
        }
    };
    let first = adjust("restock-7", 5).await;
    assert_eq!(
        (first.status, first.json()["quantity"].clone()),
        (200, json!(15))
    );
    let again = adjust("restock-7", 5).await;
    assert_eq!(
        (again.status, again.json()["quantity"].clone()),
        (200, json!(15))
    );
    let reused = adjust("restock-7", 4).await;
    assert_eq!(
        (reused.status, reused.code().as_str()),
        (409, "idempotency_conflict")
    );
    let bad = adjust("two words", 5).await;
    assert_eq!(
        (bad.status, bad.code().as_str()),
        (400, "invalid_idempotency_key")
    );
    let ledger = t.get(&path).await.json()["adjustments"].clone();
    let ledger = ledger.as_array().unwrap();
    assert_eq!(ledger.len(), 2, "initial stock and one restock: {ledger:?}");
    assert_eq!(ledger[0]["idempotency_key"], "restock-7");
    assert_eq!(
        t.get(&format!("/api/inventory/{product}")).await.json()["quantity"],
        15
    );
}

/// All-or-nothing: one short line reserves nothing.
pub async fn multi_line_all_or_nothing<S: InventoryStore>(t: &TestApp<S>) {
    let plenty = t.create_item(10).await;
    let scarce = t.create_item(1).await;
    let order = Uuid::new_v4();
    let r = t
        .post(
            "/api/inventory/reservations",
            &json!({"order_id": order, "lines": [{"product_id": plenty, "quantity": 5}, {"product_id": scarce, "quantity": 2}]}),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (409, "insufficient_stock"));
    assert_eq!(t.availability(plenty).await["reserved"], 0);
    let ok = t
        .post(
            "/api/inventory/reservations",
            &json!({"order_id": order, "lines": [{"product_id": plenty, "quantity": 5}, {"product_id": scarce, "quantity": 1}]}),
        )
        .await;
    assert_eq!(ok.status, 201);
    assert_eq!(ok.json()["reservations"].as_array().unwrap().len(), 2);
    assert_eq!(t.availability(scarce).await["available"], 0);
}

/// Operations routes, request ids, and graceful shutdown.
pub async fn operations<S: InventoryStore>(t: &TestApp<S>) {
    assert_eq!(t.get("/health").await.status, 200);
    let ready = t.get("/health/ready").await;
    assert_eq!(ready.status, 200, "{:?}", ready.json());
    let id = t
        .send(Method::GET, "/health", &[("x-request-id", "trace-42")], b"")
        .await;
    assert_eq!(id.header("x-request-id").as_deref(), Some("trace-42"));
    let generated = t.get("/nope").await;
    let rid = generated.header("x-request-id").unwrap();
    assert_eq!(generated.json()["request_id"], rid);
    let product = t.create_item(2).await;
    let order = Uuid::new_v4();
    let body = json!({"product_id": product, "quantity": 1, "order_id": order, "ttl_seconds": 10});
    assert_eq!(t.post("/api/inventory/reserve", &body).await.status, 201);
    assert_eq!(t.post("/api/inventory/reserve", &body).await.status, 200);
    assert_eq!(t.reserve(product, 5).await.status, 409);
    t.clock.advance(Duration::from_secs(11));
    assert_eq!(t.app.sweep_once().await.unwrap(), 1);
    assert_eq!(t.availability(product).await["available"], 2);
    let metrics = t.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        text.contains("http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains("route=\"unmatched\""), "{text}");
    for line in [
        "inventory_reservations_total{outcome=\"created\"} 1".to_owned(),
        "inventory_reservations_total{outcome=\"repeated\"} 1".to_owned(),
        "inventory_reservations_total{outcome=\"insufficient_stock\"} 1".to_owned(),
        "inventory_expired_by_sweep_total 1".to_owned(),
        format!("inventory_stock_available{{product_id=\"{product}\"}} 2"),
        "route=\"/api/inventory/{product_id}\",method=\"GET\",status=\"200\"".to_owned(),
    ] {
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert!(
        !text.contains(&format!("route=\"/api/inventory/{product}")),
        "raw paths never become labels"
    );
    let spec = t.get("/openapi.json").await;
    assert_eq!(spec.json()["openapi"], "3.1.0");
}

macro_rules! on_store {
    ($store:ident, $($name:ident),* $(,)?) => {
        mod $store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((store, _schema)) = crate::stores::$store().await else { return };
                    let t = crate::helpers::spawn_app(store, crate::helpers::test_config()).await;
                    super::$name(&t).await;
                    t.shutdown().await;
                }
            )*
        }
    };
}

on_store!(
    memory,
    reserve_confirm_release,
    expiry_by_sweep,
    last_unit_race,
    versions_and_stock_management,
    repeated_adjustment_counts_once,
    multi_line_all_or_nothing,
    operations,
    bad_requests_change_nothing,
);

on_store!(
    postgres,
    reserve_confirm_release,
    expiry_by_sweep,
    last_unit_race,
    versions_and_stock_management,
    repeated_adjustment_counts_once,
    multi_line_all_or_nothing,
    operations,
    bad_requests_change_nothing,
);

/// The server drains and stops when its shutdown future completes.
#[tokio::test]
async fn shutdown_stops_the_server() {
    let (store, _) = crate::stores::memory().await.expect("memory store");
    let t = spawn_app(store, crate::helpers::test_config()).await;
    let addr = t.addr;
    t.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// `run` serves the configured store and stops on its shutdown future.
#[tokio::test]
async fn run_serves_until_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(inventory_http::run(
        listener,
        crate::helpers::test_config(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Without a token key the server refuses to listen beyond loopback.
#[tokio::test]
async fn open_server_refuses_a_public_address() {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let result = inventory_http::run(
        listener,
        crate::helpers::test_config(),
        std::future::ready(()),
    )
    .await;
    assert!(
        matches!(result, Err(inventory_http::StartError::Config(_))),
        "{result:?}"
    );
}
