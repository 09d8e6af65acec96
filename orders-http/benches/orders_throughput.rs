//! End-to-end order throughput on the memory stores: a real inventory-http and
//! orders-http on 127.0.0.1 sockets in this process; concurrent customers
//! place orders over HTTP; the clock stops when every saga has finished.
//!
//! `cargo bench -p orders-http --bench orders_throughput`
//! (`ORDERS_BENCH_COUNT`, default 5000; `ORDERS_BENCH_CONCURRENCY`, default 64).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use inventory_core::{
    Actor, Command, InventoryStore, Meta, ProductId as InvProductId, StockLevel, Timestamp,
};
use orders_http::catalog::Product;
use orders_http::clock::{Clock as _, SystemClock};
use orders_http::config::Config;
use orders_http::domain::ProductId;
use orders_http::payment::PaymentSimulator;
use orders_http::service::{build, serve_app, Services};
use orders_http::store::{MemoryStore, OrderStore};
use service_guard::{AuthConfig, Authenticator, Role, TokenSigner};
use tokio::sync::oneshot;
use uuid::Uuid;

const SECRET: &str = "orders-bench-shared-secret-0123456789abcdef";
const PRODUCTS: usize = 20;
const STOCK_PER_PRODUCT: u64 = 10_000_000;
/// Longest the bench waits for the sagas after the last order, in seconds.
const DRAIN_WAIT_SECS: u64 = 120;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let count = env_or("ORDERS_BENCH_COUNT", 5_000);
    let concurrency = env_or("ORDERS_BENCH_CONCURRENCY", 64).max(1);

    let inventory_store = Arc::new(inventory_memory::MemoryStore::new());
    let clock = Arc::new(inventory_http::SystemClock);
    let mut inv_config = inventory_http::Config::embedded();
    inv_config.rate_limit.rate_limit_per_minute = 0;
    inv_config.auth.jwt_secret = Some(SECRET.to_owned());
    let inv_app = inventory_http::App::new(inventory_store.clone(), clock.clone(), &inv_config)
        .await
        .expect("inventory app");
    let inv_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let inv_addr = inv_listener.local_addr().expect("addr");
    let (inv_stop, inv_stopped) = oneshot::channel::<()>();
    let inv_task = tokio::spawn(inventory_http::serve_app(
        inv_listener,
        Arc::new(inv_app),
        inv_config.server_limits(),
        async move {
            let _ = inv_stopped.await;
        },
    ));

    let store: Arc<dyn OrderStore> = Arc::new(MemoryStore::new());
    let mut products = Vec::new();
    for i in 0..PRODUCTS {
        let id = Uuid::new_v4();
        let create = Command::CreateItem {
            product_id: InvProductId::from_uuid(id),
            quantity: StockLevel::new(STOCK_PER_PRODUCT).expect("stock"),
            actor: Actor::system(),
        };
        inventory_store
            .execute(create, &Meta::at(Timestamp::from_millis(clock.now_ms())))
            .await
            .expect("stock");
        let product = Product {
            id: ProductId::from_uuid(id),
            name: format!("bench product {i}"),
            price_minor: 1_000 + i as i64,
            currency: "EUR".into(),
            active: true,
            updated_at_ms: 0,
        };
        store.create_product(&product).await.expect("product");
        products.push(id);
    }

    let mut config = Config::embedded();
    config.inventory_url = format!("http://{inv_addr}");
    config.inventory_jwt_secret = Some(SECRET.to_owned());
    // 64 customers ordering as fast as they can: no per-user budget.
    config.rate_limit.rate_limit_per_minute = 0;
    let auth = Authenticator::new(&AuthConfig::hs256(SECRET)).expect("auth");
    let services = Services {
        store: store.clone(),
        payments: Arc::new(PaymentSimulator::new(config.payment())),
        clock: Arc::new(SystemClock),
        bus: event_bus::InProcessBus::new(),
    };
    let app = build(&config, auth, services).await.expect("orders app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let orders_task = tokio::spawn(serve_app(
        listener,
        app,
        config.server_limits(),
        async move {
            let _ = stopped.await;
        },
    ));

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let signer = TokenSigner::hs256(SECRET).expect("signer");
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let products = products.clone();
        let token = signer
            .mint(
                &format!("bench-user-{w}"),
                &[Role::Customer],
                Duration::from_secs(3_600),
                now,
            )
            .expect("token");
        let share = count / concurrency + usize::from(w < count % concurrency);
        workers.push(tokio::spawn(async move {
            for i in 0..share {
                let a = products[(w + i) % products.len()];
                let b = products[(w * 7 + i * 3 + 1) % products.len()];
                let body = serde_json::json!({"items": [{"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 1}]});
                let request = Request::post(format!("http://{addr}/api/orders"))
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(serde_json::to_vec(&body).expect("json"))))
                    .expect("request");
                let response = client.request(request).await.expect("response");
                assert_eq!(response.status().as_u16(), 202);
                let _ = response.into_body().collect().await;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let placed_in = started.elapsed();
    let drain_deadline = Instant::now() + Duration::from_secs(DRAIN_WAIT_SECS);
    while !store.pending(None, 1).await.expect("pending").is_empty() {
        assert!(
            Instant::now() < drain_deadline,
            "sagas did not finish in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let finished_in = started.elapsed();

    let mut confirmed = 0;
    for user in 0..concurrency {
        let uid = orders_http::domain::UserId::parse(&format!("bench-user-{user}")).expect("user");
        let mut offset = 0;
        loop {
            let page = store.list(&uid, offset, 100).await.expect("list");
            if page.records.is_empty() {
                break;
            }
            offset += page.records.len() as u64;
            confirmed += page
                .records
                .iter()
                .filter(|r| r.order.status == orders_http::domain::OrderStatus::Confirmed)
                .count();
        }
    }
    println!("orders: {count}, concurrency: {concurrency}, lines per order: 2");
    println!(
        "placed (202) in {:.2?}: {:.0} orders/s",
        placed_in,
        count as f64 / placed_in.as_secs_f64()
    );
    println!(
        "confirmed {confirmed}/{count} end to end in {:.2?}: {:.0} orders/s",
        finished_in,
        confirmed as f64 / finished_in.as_secs_f64()
    );
    let _ = stop.send(());
    let _ = inv_stop.send(());
    let _ = orders_task.await;
    let _ = inv_task.await;
}
