//! # stack
//!
//! The whole system in one process, for trying it out: inventory, orders and
//! the gateway, each on its own port and talking to the others over real
//! HTTP, with in-memory stores and one freshly generated HS256 key that all
//! three verify (orders also mints its `service` tokens for inventory with
//! it). [`start`] binds, starts, waits until the gateway reports every
//! upstream ready, and stocks the demo catalog's products in inventory
//! through the gateway; [`Stack::run_until`] keeps it running until a
//! shutdown signal (or until one service fails), then stops all three.
//!
//! ## Invariants
//!
//! - **The services are the real ones**: [`inventory_http::run_with_bus`],
//!   [`orders_http::run_with_bus`] and [`gateway::run`], configured as their
//!   binaries would be; nothing here short-cuts their HTTP. Inventory and
//!   orders share one in-process event bus, carrying the same envelopes
//!   RabbitMQ would.
//! - **No external service is needed**: no database, Redis or broker.
//! - **Every wait is bounded** ([`READY_TIMEOUT_MS`], [`CALL_TIMEOUT_MS`]).

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use service_guard::{Role, TokenSigner};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Default inventory address.
pub const INVENTORY_LISTEN_DEFAULT: &str = "127.0.0.1:8080";
/// Default orders address.
pub const ORDERS_LISTEN_DEFAULT: &str = "127.0.0.1:3001";
/// Default gateway address.
pub const GATEWAY_LISTEN_DEFAULT: &str = "127.0.0.1:8000";

/// Longest wait for the gateway to report every upstream ready, in milliseconds.
pub const READY_TIMEOUT_MS: u64 = 10_000;

/// Pause between readiness polls, in milliseconds.
const READY_POLL_INTERVAL_MS: u64 = 25;

/// Longest a call made while starting (readiness, seeding) may take, in milliseconds.
pub const CALL_TIMEOUT_MS: u64 = 2_000;

/// Lifetime of the tokens the stack prints, in seconds (a working day).
pub const DEMO_TOKEN_TTL_SECS: u64 = 12 * 3600;

/// `iss` of the stack's tokens; every service requires it.
pub const STACK_ISSUER: &str = "shop-stack";

/// `aud` of the stack's tokens; every service requires it.
pub const STACK_AUDIENCE: &str = "shop-api";

/// Units stocked for each demo product, by its number in the demo catalog
/// ([`orders_http::catalog::demo_product_id`]).
pub const DEMO_STOCK: [(u128, u64); 5] = [(1, 25), (2, 100), (3, 10), (4, 40), (5, 15)];

/// Where the three services listen, and the key they share.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Inventory's address.
    pub inventory_listen: SocketAddr,
    /// Orders' address.
    pub orders_listen: SocketAddr,
    /// The gateway's address.
    pub gateway_listen: SocketAddr,
    /// The HS256 secret every service verifies tokens with.
    pub secret: String,
    /// The gateway's budget per client IP per minute (0 disables).
    pub rate_limit_ip_per_minute: u32,
    /// The gateway's budget per authenticated user per minute (0 disables).
    pub rate_limit_user_per_minute: u32,
}

impl StackConfig {
    /// The documented ports (8080, 3001, 8000) and a fresh random key.
    pub fn local() -> Self {
        Self {
            inventory_listen: INVENTORY_LISTEN_DEFAULT.parse().expect("valid address"),
            orders_listen: ORDERS_LISTEN_DEFAULT.parse().expect("valid address"),
            gateway_listen: GATEWAY_LISTEN_DEFAULT.parse().expect("valid address"),
            secret: service_guard::random_hs256_secret(),
            rate_limit_ip_per_minute: gateway::config::RATE_LIMIT_IP_PER_MINUTE_DEFAULT,
            rate_limit_user_per_minute: gateway::config::RATE_LIMIT_USER_PER_MINUTE_DEFAULT,
        }
    }

    /// Ports chosen by the system (for tests) and a fresh random key.
    pub fn ephemeral() -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        Self {
            inventory_listen: any,
            orders_listen: any,
            gateway_listen: any,
            ..Self::local()
        }
    }
}

/// Why the stack could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A port could not be bound (another process has it?).
    #[error("cannot listen on {addr} for {service}: {source}")]
    Bind {
        /// Which service.
        service: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A service refused its configuration or stopped with an error.
    #[error("{service} failed: {reason}")]
    Service {
        /// Which service.
        service: &'static str,
        /// Why.
        reason: String,
    },
    /// The services did not become ready in time.
    #[error("the stack was not ready within {READY_TIMEOUT_MS} ms: {0}")]
    NotReady(String),
    /// Stocking the demo products failed.
    #[error("seeding stock failed: {0}")]
    Seed(String),
    /// The demo key cannot sign (cannot happen with a generated key).
    #[error("token: {0}")]
    Token(String),
}

type Task = JoinHandle<Result<(), StackError>>;

/// The running stack.
pub struct Stack {
    /// Inventory's address.
    pub inventory: SocketAddr,
    /// Orders' address.
    pub orders: SocketAddr,
    /// The gateway's address.
    pub gateway: SocketAddr,
    signer: TokenSigner,
    stop: watch::Sender<bool>,
    ended: mpsc::Receiver<&'static str>,
    tasks: Vec<(&'static str, Task)>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("inventory", &self.inventory)
            .field("orders", &self.orders)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

async fn bind(service: &'static str, addr: SocketAddr) -> Result<TcpListener, StackError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StackError::Bind {
            service,
            addr,
            source,
        })
}

fn local_addr(service: &'static str, listener: &TcpListener) -> Result<SocketAddr, StackError> {
    listener.local_addr().map_err(|source| StackError::Bind {
        service,
        addr: "0.0.0.0:0".parse().expect("valid address"),
        source,
    })
}

/// Binds the three ports, starts the three services, waits until the
/// gateway reports both upstreams ready, and stocks the demo products.
///
/// # Errors
/// [`StackError`] when a port is taken, a service refuses to start, the
/// stack is not ready in time, or seeding fails; whatever started is stopped.
pub async fn start(config: StackConfig) -> Result<Stack, StackError> {
    let inventory_listener = bind("inventory", config.inventory_listen).await?;
    let orders_listener = bind("orders", config.orders_listen).await?;
    let gateway_listener = bind("gateway", config.gateway_listen).await?;
    let inventory = local_addr("inventory", &inventory_listener)?;
    let orders = local_addr("orders", &orders_listener)?;
    let gateway = local_addr("gateway", &gateway_listener)?;

    let mut inventory_config = inventory_http::Config::embedded();
    inventory_config.listen = inventory;
    inventory_config.auth.jwt_secret = Some(config.secret.clone());
    inventory_config.auth.jwt_issuer = Some(STACK_ISSUER.to_owned());
    inventory_config.auth.jwt_audience = Some(STACK_AUDIENCE.to_owned());
    // Every call reaches inventory from the gateway or orders on loopback:
    // clients are rate limited at the gateway, per user and per IP.
    inventory_config.rate_limit.rate_limit_per_minute = 0;

    let mut orders_config = orders_http::config::Config::embedded();
    orders_config.listen = orders;
    orders_config.inventory_url = format!("http://{inventory}");
    orders_config.auth.jwt_secret = Some(config.secret.clone());
    orders_config.auth.jwt_issuer = Some(STACK_ISSUER.to_owned());
    orders_config.auth.jwt_audience = Some(STACK_AUDIENCE.to_owned());
    orders_config.inventory_jwt_secret = Some(config.secret.clone());
    orders_config.inventory_jwt_issuer = Some(STACK_ISSUER.to_owned());
    orders_config.inventory_jwt_audience = Some(STACK_AUDIENCE.to_owned());
    orders_config.rate_limit.rate_limit_per_minute = 0;
    // One in-process event bus for both services: orders consumes the stock
    // events inventory relays, as it would through RabbitMQ.
    let bus = event_bus::InProcessBus::new();
    let inventory_bus = bus.clone();

    let mut gateway_config = gateway::Config::embedded();
    gateway_config.listen = gateway;
    gateway_config.orders_url = format!("http://{orders}");
    gateway_config.inventory_url = format!("http://{inventory}");
    gateway_config.auth.jwt_secret = Some(config.secret.clone());
    gateway_config.auth.jwt_issuer = Some(STACK_ISSUER.to_owned());
    gateway_config.auth.jwt_audience = Some(STACK_AUDIENCE.to_owned());
    gateway_config.rate_limit_ip_per_minute = config.rate_limit_ip_per_minute;
    gateway_config.rate_limit_user_per_minute = config.rate_limit_user_per_minute;

    let (stop, stopped) = watch::channel(false);
    let (ended_tx, ended) = mpsc::channel(3);
    let on_stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let spawn =
        |service: &'static str,
         fut: std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>| {
            let ended_tx = ended_tx.clone();
            let task: Task = tokio::spawn(async move {
                let result = fut.await;
                let _ = ended_tx.send(service).await;
                result.map_err(|reason| StackError::Service { service, reason })
            });
            (service, task)
        };
    let tasks = vec![
        spawn(
            "inventory",
            Box::pin({
                let shutdown = on_stop(stopped.clone());
                async move {
                    inventory_http::run_with_bus(
                        inventory_listener,
                        inventory_config,
                        inventory_bus,
                        shutdown,
                    )
                    .await
                    .map_err(|e| e.to_string())
                }
            }),
        ),
        spawn(
            "orders",
            Box::pin({
                let shutdown = on_stop(stopped.clone());
                async move {
                    orders_http::run_with_bus(orders_listener, orders_config, bus, shutdown)
                        .await
                        .map_err(|e| e.to_string())
                }
            }),
        ),
        spawn(
            "gateway",
            Box::pin({
                let shutdown = on_stop(stopped.clone());
                async move {
                    gateway::run(gateway_listener, gateway_config, shutdown)
                        .await
                        .map_err(|e| e.to_string())
                }
            }),
        ),
    ];
    let signer = TokenSigner::hs256(&config.secret)
        .map_err(|e| StackError::Token(e.to_string()))?
        .with_issuer(STACK_ISSUER)
        .with_audience(STACK_AUDIENCE);
    let mut stack = Stack {
        inventory,
        orders,
        gateway,
        signer,
        stop,
        ended,
        tasks,
    };
    if let Err(e) = stack.prepare().await {
        let failure = stack.shutdown().await.err();
        return Err(failure.unwrap_or(e));
    }
    Ok(stack)
}

impl Stack {
    /// A token for `sub` with `roles`, signed with the stack's key, valid for
    /// [`DEMO_TOKEN_TTL_SECS`].
    ///
    /// # Errors
    /// [`StackError::Token`] for an empty subject.
    pub fn token(&self, sub: &str, roles: &[Role]) -> Result<String, StackError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.signer
            .mint(sub, roles, Duration::from_secs(DEMO_TOKEN_TTL_SECS), now)
            .map_err(|e| StackError::Token(e.to_string()))
    }

    async fn prepare(&mut self) -> Result<(), StackError> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        let health = format!("http://{}/health", self.gateway);
        loop {
            if let Ok(service) = self.ended.try_recv() {
                return Err(StackError::NotReady(format!(
                    "{service} stopped while starting"
                )));
            }
            match call(&client, Method::GET, &health, None, None).await {
                Ok((StatusCode::OK, _)) => break,
                Ok((_, body)) if tokio::time::Instant::now() >= deadline => {
                    return Err(StackError::NotReady(
                        String::from_utf8_lossy(&body).into_owned(),
                    ))
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(StackError::NotReady(e))
                }
                _ => tokio::time::sleep(Duration::from_millis(READY_POLL_INTERVAL_MS)).await,
            }
        }
        let admin = self.token("stack-seeder", &[Role::Admin])?;
        let items = format!("http://{}/api/inventory/items", self.gateway);
        for (n, quantity) in DEMO_STOCK {
            let body = serde_json::json!({
                "product_id": demo_product(n),
                "quantity": quantity,
            });
            let (status, answer) = call(&client, Method::POST, &items, Some(&admin), Some(body))
                .await
                .map_err(StackError::Seed)?;
            if status != StatusCode::CREATED {
                return Err(StackError::Seed(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&answer)
                )));
            }
        }
        tracing::info!(products = DEMO_STOCK.len(), "demo stock seeded");
        Ok(())
    }

    /// Runs until `shutdown` completes or a service stops by itself, then
    /// stops all three and waits for them to drain.
    ///
    /// # Errors
    /// The first service failure, if any.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), StackError> {
        tokio::select! {
            () = shutdown => {}
            Some(service) = self.ended.recv() => {
                tracing::error!(service, "a service stopped: stopping the stack");
            }
        }
        self.shutdown().await
    }

    /// Stops all three services and waits for them to drain.
    ///
    /// # Errors
    /// The first service failure, if any.
    pub async fn shutdown(self) -> Result<(), StackError> {
        let _ = self.stop.send(true);
        let mut first = None;
        for (service, task) in self.tasks {
            let result = match task.await {
                Ok(r) => r,
                Err(e) => Err(StackError::Service {
                    service,
                    reason: e.to_string(),
                }),
            };
            if let Err(e) = result {
                tracing::error!(service, error = %e, "service failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// The id of demo product number `n` (the same id in the orders catalog and
/// in inventory).
pub fn demo_product(n: u128) -> Uuid {
    Uuid::from_u128(orders_http::catalog::demo_product_id(n).as_u128())
}

async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> Result<(StatusCode, Bytes), String> {
    let mut builder = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let bytes = match body {
        Some(json) => {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    let request = builder.body(Full::new(bytes)).map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_millis(CALL_TIMEOUT_MS), exchange)
        .await
        .map_err(|_| format!("{url} did not answer within {CALL_TIMEOUT_MS} ms"))?
}
