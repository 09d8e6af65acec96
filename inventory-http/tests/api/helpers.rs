//! `spawn_app()`: the server on 127.0.0.1:0 with a manual clock, and a small
//! HTTP client to talk to it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use event_bus::InProcessBus;
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use inventory_core::InventoryStore;
use inventory_http::{serve_app, AnyStore, App, Config, EventsRelay, ManualClock};
use serde_json::{json, Value};
use test_support::server::{self, Running};
use uuid::Uuid;

/// Where the manual clock of every test app starts (2023-11-14T22:13:20Z).
pub const CLOCK_START_MS: i64 = 1_700_000_000_000;

/// A running server and a client for it.
pub struct TestApp<S: InventoryStore> {
    /// The server's address.
    pub addr: SocketAddr,
    /// The application (for direct store checks and `sweep_once`).
    pub app: Arc<App<S>>,
    /// The clock the server reads.
    pub clock: Arc<ManualClock>,
    /// Sent as `Authorization: Bearer ...` when set.
    pub token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
    server: Running,
    relay: Option<EventsRelay>,
}

pub use test_support::http::Reply;

/// The embedded configuration without rate limiting: every test client
/// shares 127.0.0.1, and only the rate-limit tests count requests.
pub fn test_config() -> Config {
    Config {
        rate_limit: service_kit::settings::RateLimitSettings::off(),
        ..Config::embedded()
    }
}

/// Starts the server on an ephemeral port over `store` with `config`.
pub async fn spawn_app<S: InventoryStore>(store: S, config: Config) -> TestApp<S> {
    spawn_app_on(Arc::new(store), config, None).await
}

/// Starts the server over `store` with its event relay running as `config`
/// says (`bus` when it names no AMQP URL); the relay stops after the server.
pub async fn spawn_app_with_events(
    store: AnyStore,
    config: Config,
    bus: &InProcessBus,
) -> TestApp<AnyStore> {
    let store = Arc::new(store);
    let relay = EventsRelay::spawn(&store, &config.events(), bus);
    spawn_app_on(store, config, Some(relay)).await
}

async fn spawn_app_on<S: InventoryStore>(
    store: Arc<S>,
    config: Config,
    relay: Option<EventsRelay>,
) -> TestApp<S> {
    let clock = Arc::new(ManualClock::new(CLOCK_START_MS));
    let mut app = App::new(store, clock.clone(), &config)
        .await
        .expect("app builds");
    if let Some(relay) = &relay {
        app = app.with_events(relay.status());
    }
    let app = Arc::new(app);
    let (listener, addr) = server::bind_ephemeral().await;
    let limits = config.server_limits();
    let server = Running::spawn(addr, |stopped| {
        serve_app(listener, app.clone(), limits, stopped)
    });
    let client = Client::builder(TokioExecutor::new()).build_http();
    TestApp {
        addr,
        app,
        clock,
        token: None,
        client,
        server,
        relay,
    }
}

impl<S: InventoryStore> TestApp<S> {
    /// Sends a request with raw body bytes and extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        let response = self.client.request(request).await.expect("response");
        Reply::read(response).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], b"").await
    }

    /// `method path` with a JSON body.
    pub async fn json(&self, method: Method, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send(
            method,
            path,
            &[("content-type", "application/json")],
            &bytes,
        )
        .await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.json(Method::POST, path, body).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, &[], b"").await
    }

    /// Creates an item with `quantity` units and returns its product id.
    pub async fn create_item(&self, quantity: i64) -> Uuid {
        let product_id = Uuid::new_v4();
        let r = self
            .post(
                "/api/inventory/items",
                &json!({"product_id": product_id, "quantity": quantity}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.json());
        product_id
    }

    /// The availability body of a product (asserting 200).
    pub async fn availability(&self, product_id: Uuid) -> Value {
        let r = self.get(&format!("/api/inventory/{product_id}")).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        r.json()
    }

    /// Reserves `quantity` of a product for a fresh order.
    pub async fn reserve(&self, product_id: Uuid, quantity: i64) -> Reply {
        self.post(
            "/api/inventory/reserve",
            &json!({"product_id": product_id, "quantity": quantity, "order_id": Uuid::new_v4()}),
        )
        .await
    }

    /// Stops the server and waits for it to drain.
    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
        if let Some(relay) = self.relay.take() {
            relay.stop().await;
        }
    }
}
