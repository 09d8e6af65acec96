//! The test stack: a real inventory-http and an orders server, each on its
//! own 127.0.0.1:0 socket in this process, over memory or PostgreSQL stores;
//! a small HTTP client; tokens; polling with a bounded deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use event_bus::InProcessBus;
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use inventory_core::{
    Actor, Command, InventoryStore, Meta, OrderId as InvOrderId, ProductId as InvProductId,
    Quantity, ReservationId, ReservationStatus, Reserve, ReserveLine, StockLevel, Timestamp, Ttl,
};
use orders_http::catalog::Product;
use orders_http::clock::{Clock, SystemClock};
use orders_http::config::Config;
use orders_http::domain::ProductId;
use orders_http::payment::{
    ChargeRequest, PaymentError, PaymentProvider, PaymentSimulator, SimulatorConfig,
};
use orders_http::service::{build, serve_app, Services};
use orders_http::store::{BoxFuture, MemoryStore, OrderStore, PgOrderOptions, PgOrderStore};
use serde_json::{json, Value};
use service_guard::{AuthConfig, Authenticator, Role};
use sqlx::postgres::PgConnectOptions;
use test_support::postgres::TestSchema as Schema;
use test_support::server::{self, Running};
use test_support::tokens;
use tokio::sync::Semaphore;
use uuid::Uuid;

/// The HS256 secret both servers share in the tests.
pub(crate) const SECRET: &str = "orders-tests-shared-secret-0123456789abcdef";

/// Where the inventory's manual clock starts (2023-11-14T22:13:20Z).
pub(crate) const INVENTORY_CLOCK_START_MS: i64 = 1_700_000_000_000;

/// Longest a test waits for an order to reach a final status.
pub(crate) const FINAL_WAIT_MS: u64 = 20_000;

/// Interval between two polls.
const POLL_INTERVAL_MS: u64 = 10;

/// The real inventory server over store `S`, with a manual clock.
pub(crate) struct Inventory<S: InventoryStore> {
    /// The store (shared across restarts).
    pub(crate) store: Arc<S>,
    /// The clock the server reads.
    pub(crate) clock: Arc<inventory_http::ManualClock>,
    running: Running,
}

fn inventory_config() -> inventory_http::Config {
    let mut config = inventory_http::Config::embedded();
    config.rate_limit.rate_limit_per_minute = 0;
    config.auth.jwt_secret = Some(SECRET.to_owned());
    config.shutdown_drain_timeout_ms = 1_000;
    config
}

async fn start_inventory<S: InventoryStore>(
    store: Arc<S>,
    clock: Arc<inventory_http::ManualClock>,
    addr: SocketAddr,
) -> Running {
    let config = inventory_config();
    let app = inventory_http::App::new(store, clock, &config)
        .await
        .expect("inventory app builds");
    let (listener, addr) = server::bind(addr).await;
    Running::spawn(addr, |stopped| {
        inventory_http::serve_app(listener, Arc::new(app), config.server_limits(), stopped)
    })
}

impl<S: InventoryStore> Inventory<S> {
    /// Starts inventory on an ephemeral port.
    pub(crate) async fn spawn(store: S) -> Self {
        let store = Arc::new(store);
        let clock = Arc::new(inventory_http::ManualClock::new(INVENTORY_CLOCK_START_MS));
        let running = start_inventory(store.clone(), clock.clone(), server::EPHEMERAL).await;
        Self {
            store,
            clock,
            running,
        }
    }

    /// The base URL.
    pub(crate) fn url(&self) -> String {
        self.running.url()
    }

    /// Stops the server (its port then refuses connections).
    pub(crate) async fn stop(&mut self) {
        self.running.shutdown().await;
    }

    /// Starts it again on the same port, over the same store.
    pub(crate) async fn restart(&mut self) {
        self.running =
            start_inventory(self.store.clone(), self.clock.clone(), self.running.addr).await;
    }

    fn meta(&self) -> Meta {
        use inventory_http::Clock as _;
        Meta::at(Timestamp::from_millis(self.clock.now_ms()))
    }

    /// Stocks a new product with `quantity` units.
    pub(crate) async fn stock(&self, product: Uuid, quantity: u64) {
        let create = Command::CreateItem {
            product_id: InvProductId::from_uuid(product),
            quantity: StockLevel::new(quantity).expect("stock"),
            actor: Actor::system(),
        };
        self.store
            .execute(create, &self.meta())
            .await
            .expect("create item");
    }

    /// `(quantity on hand, reserved)` of a product.
    pub(crate) async fn levels(&self, product: Uuid) -> (u64, u64) {
        let item = self
            .store
            .item(InvProductId::from_uuid(product))
            .await
            .expect("item")
            .expect("item exists");
        (item.quantity(), item.reserved())
    }

    /// Reservations of a product by status: `(pending, confirmed, other)`.
    pub(crate) async fn reservations(&self, product: Uuid) -> (usize, usize, usize) {
        let all = self
            .store
            .reservations_of_product(InvProductId::from_uuid(product))
            .await
            .expect("reservations");
        let count = |s: ReservationStatus| all.iter().filter(|r| r.status() == s).count();
        let (p, c) = (
            count(ReservationStatus::Pending),
            count(ReservationStatus::Confirmed),
        );
        (p, c, all.len() - p - c)
    }

    /// Expires a reservation now (as inventory's sweep would), directly in
    /// the store.
    pub(crate) async fn expire(&self, reservation: Uuid) {
        let expire = Command::Expire {
            reservation_id: ReservationId::from_uuid(reservation),
        };
        self.store
            .execute(expire, &self.meta())
            .await
            .expect("expire");
    }

    /// Holds `quantity` units for another buyer, directly in the store.
    pub(crate) async fn hold_directly(&self, product: Uuid, quantity: u64) {
        let line = ReserveLine {
            product_id: InvProductId::from_uuid(product),
            quantity: Quantity::new(quantity).expect("quantity"),
            reservation_id: ReservationId::from_uuid(Uuid::new_v4()),
        };
        let reserve = Reserve::single(InvOrderId::from_uuid(Uuid::new_v4()), line, Ttl::default());
        self.store
            .execute(Command::Reserve(reserve), &self.meta())
            .await
            .expect("direct hold");
    }
}

/// A payment provider that waits for the test to open its gate before each
/// charge, then delegates to the simulator.
pub(crate) struct GatedPayments {
    /// The simulator doing the work.
    pub(crate) inner: PaymentSimulator,
    /// One permit per charge allowed through.
    pub(crate) gate: Semaphore,
}

impl GatedPayments {
    /// A closed gate over a default simulator.
    pub(crate) fn closed() -> Arc<Self> {
        Arc::new(Self {
            inner: PaymentSimulator::new(SimulatorConfig::default()),
            gate: Semaphore::new(0),
        })
    }
}

impl PaymentProvider for GatedPayments {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<String, PaymentError>> {
        Box::pin(async move {
            self.gate.acquire().await.expect("gate").forget();
            self.inner.charge(request).await
        })
    }

    fn charge_of(
        &self,
        order_id: orders_http::domain::OrderId,
    ) -> BoxFuture<'_, Result<Option<String>, PaymentError>> {
        self.inner.charge_of(order_id)
    }

    fn refund(
        &self,
        order_id: orders_http::domain::OrderId,
        payment_id: String,
        amount_minor: i64,
    ) -> BoxFuture<'_, Result<String, PaymentError>> {
        self.inner.refund(order_id, payment_id, amount_minor)
    }
}

/// A response, fully read.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Status code.
    pub(crate) status: u16,
    /// Body as JSON (`Null` when not JSON).
    pub(crate) json: Value,
    /// Headers.
    pub(crate) headers: http::HeaderMap,
}

impl Reply {
    /// The problem code.
    pub(crate) fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }
}

/// The orders server.
pub(crate) struct Orders {
    /// Its store (shared across restarts).
    pub(crate) store: Arc<dyn OrderStore>,
    running: Running,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The orders configuration the tests start from: quick retries.
pub(crate) fn orders_config(inventory_url: &str) -> Config {
    let mut config = Config::embedded();
    config.inventory_url = inventory_url.to_owned();
    config.inventory_jwt_secret = Some(SECRET.to_owned());
    config.retry_delay_min_ms = 5;
    config.retry_delay_max_ms = 20;
    config.retry_total_ms = 100;
    config.retries_max = 3;
    config.park_interval_ms = 20;
    config.breaker_open_ms = 100;
    config.inventory_timeout_ms = 2_000;
    config.shutdown_drain_timeout_ms = 1_000;
    // Tests poll one user's orders far more than 100 times a minute.
    config.rate_limit.rate_limit_per_minute = 0;
    config.amqp_url = None;
    config
}

impl Orders {
    /// Starts orders over `store` with `payments` and `clock`.
    pub(crate) async fn spawn_with(
        config: Config,
        store: Arc<dyn OrderStore>,
        payments: Arc<dyn PaymentProvider>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::spawn_on_bus(config, store, payments, clock, InProcessBus::new()).await
    }

    /// Starts orders with events on `bus` (when no AMQP URL is configured).
    pub(crate) async fn spawn_on_bus(
        config: Config,
        store: Arc<dyn OrderStore>,
        payments: Arc<dyn PaymentProvider>,
        clock: Arc<dyn Clock>,
        bus: InProcessBus,
    ) -> Self {
        let auth = Authenticator::new(&AuthConfig::hs256(SECRET)).expect("authenticator");
        let services = Services {
            store: store.clone(),
            payments,
            clock,
            bus,
        };
        let app = build(&config, auth, services)
            .await
            .expect("orders app builds");
        let (listener, addr) = server::bind_ephemeral().await;
        let running = Running::spawn(addr, |stopped| {
            serve_app(listener, app.clone(), config.server_limits(), stopped)
        });
        Self {
            store,
            running,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Starts orders over a memory store with the default simulator and the
    /// system clock.
    pub(crate) async fn spawn(config: Config, store: Arc<dyn OrderStore>) -> Self {
        let payments = Arc::new(PaymentSimulator::new(config.payment()));
        Self::spawn_with(config, store, payments, Arc::new(SystemClock)).await
    }

    /// Stops the server and every saga task where it stands.
    pub(crate) async fn stop(&mut self) {
        self.running.shutdown().await;
    }

    /// Sends a request.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.running.addr));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let bytes = body
            .map(|b| serde_json::to_vec(b).expect("json"))
            .unwrap_or_default();
        let request = builder
            .body(Full::new(Bytes::from(bytes)))
            .expect("request");
        let response = self.client.request(request).await.expect("response");
        let read = test_support::http::Reply::read(response).await;
        Reply {
            status: read.status,
            json: read.json(),
            headers: read.headers,
        }
    }

    /// `GET path` as `token`.
    pub(crate) async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), &[], None).await
    }

    /// Places an order for `items` (`(product, quantity)`).
    pub(crate) async fn place(
        &self,
        token: &str,
        items: &[(Uuid, i64)],
        key: Option<&str>,
    ) -> Reply {
        let body = json!({"items": items.iter().map(|(p, q)| json!({"product_id": p, "quantity": q})).collect::<Vec<_>>()});
        let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
        self.send(
            Method::POST,
            "/api/orders",
            Some(token),
            &headers,
            Some(&body),
        )
        .await
    }

    /// Polls an order until it is no longer pending (bounded by [`FINAL_WAIT_MS`]).
    pub(crate) async fn wait_final(&self, token: &str, id: &str) -> Value {
        self.wait_for(token, id, |o| o["status"] != "pending").await
    }

    /// Polls an order until `done` holds (bounded by [`FINAL_WAIT_MS`]).
    pub(crate) async fn wait_for(
        &self,
        token: &str,
        id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(FINAL_WAIT_MS);
        loop {
            let reply = self.get(&format!("/api/orders/{id}"), token).await;
            assert_eq!(reply.status, 200, "{:?}", reply.json);
            if done(&reply.json) {
                return reply.json;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {id} did not get there in time: {}",
                reply.json
            );
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
    }

    /// The metrics text.
    pub(crate) async fn metrics(&self) -> String {
        let request = Request::get(format!("http://{}/metrics", self.running.addr))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = self.client.request(request).await.expect("response");
        let read = test_support::http::Reply::read(response).await;
        String::from_utf8_lossy(&read.body).into_owned()
    }

    /// Adds a product to the catalog.
    pub(crate) async fn sell(&self, id: Uuid, price_minor: i64) {
        let product = Product {
            id: ProductId::from_uuid(id),
            name: format!("product {id}"),
            price_minor,
            currency: "EUR".into(),
            active: true,
            updated_at_ms: 0,
        };
        self.store
            .create_product(&product)
            .await
            .expect("create product");
    }
}

/// A customer token for `user`.
pub(crate) fn customer(user: &str) -> String {
    token(user, &[Role::Customer])
}

/// A token for `sub` with `roles`.
pub(crate) fn token(sub: &str, roles: &[Role]) -> String {
    tokens::hs256(SECRET, sub, roles, Duration::from_secs(600))
}

/// A fresh memory store.
pub(crate) fn memory() -> Arc<dyn OrderStore> {
    Arc::new(MemoryStore::new())
}

/// Connections per test pool: the tests of this binary run in parallel and
/// share PostgreSQL's `max_connections` (100 by default) with other suites.
const TEST_POOL_SIZE_MAX: u32 = 6;

/// A schema of its own on the test server (see [`Schema`]), with the stores
/// the tests put in it; dropped with everything in it when this value is
/// dropped.
pub(crate) struct TestSchema(Schema);

impl TestSchema {
    /// Creates a fresh schema, or returns `None` (after printing why) when the
    /// server cannot be reached and `REQUIRE_SERVICES` is not `1`.
    pub(crate) async fn create() -> Option<Self> {
        Schema::create().await.map(Self)
    }

    /// Connection options working in this schema.
    pub(crate) fn options(&self) -> PgConnectOptions {
        self.0.connect_options()
    }

    /// A migrated orders store in this schema.
    pub(crate) async fn orders_store(&self) -> Arc<dyn OrderStore> {
        let options = PgOrderOptions {
            schema: Some(self.0.name().to_owned()),
            pool_size_max: TEST_POOL_SIZE_MAX,
            ..PgOrderOptions::default()
        };
        let store = PgOrderStore::connect(self.0.url(), options)
            .await
            .expect("connect orders store");
        store.migrate().await.expect("migrate orders store");
        Arc::new(store)
    }

    /// A migrated inventory store in this schema.
    pub(crate) async fn inventory_store(&self) -> inventory_sqlx::PgStore {
        let store = inventory_sqlx::PgStore::connect_with(
            self.options(),
            inventory_sqlx::PgOptions {
                pool_size_max: TEST_POOL_SIZE_MAX,
                ..inventory_sqlx::PgOptions::default()
            },
        )
        .await
        .expect("connect inventory store");
        store.migrate().await.expect("migrate inventory store");
        store
    }
}
