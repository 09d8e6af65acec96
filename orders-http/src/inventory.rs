//! The inventory service as orders sees it: the [`InventoryApi`] port the saga
//! calls, and [`HttpInventory`], its HTTP client: pooled keep-alive
//! connections, a timeout on every call, a circuit breaker, a `service`
//! credential and the caller's correlation id on every request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use service_guard::{Role, TlsClient, TokenSigner};
use uuid::Uuid;

use crate::breaker::{Breaker, BreakerConfig, BreakerState};
use crate::metrics::{CallLabels, OrderMetrics};
use crate::store::BoxFuture;
use crate::store::HoldStatus;

/// Default time one inventory call may take, in milliseconds.
pub const CALL_TIMEOUT_MS_DEFAULT: u64 = 2_000;

/// Time to open a TCP connection to inventory, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;

/// Idle keep-alive connections kept to inventory.
pub const POOL_IDLE_PER_HOST_MAX: usize = 64;

/// How long an idle keep-alive connection to inventory is kept, in
/// milliseconds.
pub const POOL_IDLE_TIMEOUT_MS: u64 = 30_000;

/// Largest inventory response read, in bytes.
pub const RESPONSE_BYTES_MAX: usize = 256 * 1024;

/// Default lifetime of a minted service token, in seconds; it is renewed at
/// half its life.
pub const SERVICE_TOKEN_TTL_SECS_DEFAULT: u64 = 600;

/// One line held by inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedLine {
    /// The product.
    pub product_id: Uuid,
    /// Its reservation.
    pub reservation_id: Uuid,
}

/// Why an inventory call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// 409 `insufficient_stock`: nothing was held.
    #[error("insufficient stock")]
    InsufficientStock,
    /// 410: the hold ran out.
    #[error("reservation expired")]
    Expired,
    /// 404: unknown product or reservation.
    #[error("not found: {0}")]
    NotFound(String),
    /// Another 409 (for example a reservation already released).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Another 4xx: the request itself is wrong (or the credential is).
    #[error("rejected with {status}: {code}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The problem's code.
        code: String,
    },
    /// 5xx, 429, timeout or connection failure: try again later.
    #[error("inventory unavailable: {0}")]
    Unavailable(String),
    /// The circuit breaker is open: the call was not made.
    #[error("inventory circuit open")]
    CircuitOpen,
}

impl InventoryError {
    /// Whether a later retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::CircuitOpen)
            || matches!(
                self,
                Self::Rejected {
                    status: 401 | 403,
                    ..
                }
            )
    }

    fn outcome(&self) -> &'static str {
        match self {
            Self::InsufficientStock => "insufficient_stock",
            Self::Expired => "expired",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Rejected { .. } => "rejected",
            Self::Unavailable(_) => "unavailable",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

/// What the saga needs from inventory.
pub trait InventoryApi: Send + Sync + 'static {
    /// Holds every line for `inventory_order_id`, all or nothing. Repeating
    /// the call with the same id returns the existing reservations.
    ///
    /// # Errors
    /// [`InventoryError::InsufficientStock`] when any line is short.
    fn reserve<'a>(
        &'a self,
        inventory_order_id: Uuid,
        lines: &'a [(Uuid, u32)],
        ttl_seconds: Option<u64>,
        correlation: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ReservedLine>, InventoryError>>;

    /// Confirms one reservation (idempotent).
    ///
    /// # Errors
    /// [`InventoryError::Expired`] when the hold ran out.
    fn confirm<'a>(
        &'a self,
        reservation_id: Uuid,
        correlation: &'a str,
    ) -> BoxFuture<'a, Result<(), InventoryError>>;

    /// Releases one reservation (idempotent).
    ///
    /// # Errors
    /// [`InventoryError`] as returned by inventory.
    fn release<'a>(
        &'a self,
        reservation_id: Uuid,
        correlation: &'a str,
    ) -> BoxFuture<'a, Result<(), InventoryError>>;

    /// Where one reservation stands now, as inventory stores it (what settles
    /// a call whose outcome is unknown).
    ///
    /// # Errors
    /// [`InventoryError::NotFound`] for an unknown reservation.
    fn reservation_status<'a>(
        &'a self,
        reservation_id: Uuid,
        correlation: &'a str,
    ) -> BoxFuture<'a, Result<HoldStatus, InventoryError>>;

    /// Puts `quantity` units of `product_id` back on hand (sold units of an
    /// order that was cancelled after all), at most once per `key`.
    ///
    /// # Errors
    /// [`InventoryError`] as returned by inventory.
    fn restock<'a>(
        &'a self,
        product_id: Uuid,
        quantity: u32,
        key: &'a str,
        correlation: &'a str,
    ) -> BoxFuture<'a, Result<(), InventoryError>>;
}

/// Reason recorded in inventory's ledger for units given back by [`InventoryApi::restock`].
pub const RESTOCK_REASON: &str = "order cancelled after its units were sold";

/// How orders proves to inventory that it is a service.
#[derive(Clone, Debug, Default)]
pub enum ServiceCredential {
    /// No credential (inventory runs open on loopback).
    #[default]
    None,
    /// A fixed bearer token.
    Static(String),
    /// Tokens minted on demand for `subject` with the `service` role.
    Signer {
        /// The signer.
        signer: TokenSigner,
        /// The token subject (this service's name).
        subject: String,
        /// Lifetime of each token, in seconds.
        ttl_secs: u64,
    },
}

/// Settings of [`HttpInventory`].
#[derive(Clone, Debug)]
pub struct InventoryClientConfig {
    /// Base URL, for example `http://127.0.0.1:8080` or
    /// `https://inventory.internal`.
    pub base_url: String,
    /// Time one call may take, in milliseconds.
    pub call_timeout_ms: u64,
    /// Circuit breaker thresholds.
    pub breaker: BreakerConfig,
    /// The credential sent.
    pub credential: ServiceCredential,
    /// Which servers an `https://` base URL may be (the system's roots by
    /// default).
    pub tls: TlsClient,
}

impl InventoryClientConfig {
    /// Defaults for everything but the URL.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            call_timeout_ms: CALL_TIMEOUT_MS_DEFAULT,
            breaker: BreakerConfig::default(),
            credential: ServiceCredential::None,
            tls: TlsClient::system(),
        }
    }
}

/// The inventory client over HTTP.
pub struct HttpInventory {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base_url: String,
    call_timeout: Duration,
    credential: ServiceCredential,
    token: Mutex<Option<(String, u64)>>,
    breaker: Mutex<Breaker>,
    metrics: OrderMetrics,
}

#[derive(Serialize)]
struct LineBody {
    product_id: Uuid,
    quantity: u32,
}

#[derive(Serialize)]
struct ReserveBody<'a> {
    order_id: Uuid,
    lines: &'a [LineBody],
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_seconds: Option<u64>,
}

#[derive(Serialize)]
struct ConfirmBody {
    reservation_id: Uuid,
}

#[derive(Deserialize)]
struct ReservationBody {
    reservation_id: Uuid,
    product_id: Uuid,
}

#[derive(Deserialize)]
struct StatusBody {
    status: String,
}

#[derive(Serialize)]
struct AdjustBody<'a> {
    delta: i64,
    reason: &'a str,
}

#[derive(Deserialize)]
struct ReservationsBody {
    reservations: Vec<ReservationBody>,
}

#[derive(Deserialize)]
struct ProblemBody {
    #[serde(default)]
    code: String,
}

/// Returns a half-open probe slot when a call is dropped before it ends.
struct Admitted<'a> {
    breaker: &'a Mutex<Breaker>,
    settled: bool,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.lock().on_abandon();
        }
    }
}

impl HttpInventory {
    /// A client with its own connection pool.
    pub fn new(config: InventoryClientConfig, metrics: OrderMetrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST_MAX)
            .pool_idle_timeout(Duration::from_millis(POOL_IDLE_TIMEOUT_MS))
            .build(config.tls.https_connector(connector));
        Self {
            client,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            call_timeout: Duration::from_millis(config.call_timeout_ms),
            credential: config.credential,
            token: Mutex::new(None),
            breaker: Mutex::new(Breaker::new(config.breaker)),
            metrics,
        }
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.lock().state(tokio::time::Instant::now())
    }

    fn bearer(&self) -> Option<String> {
        match &self.credential {
            ServiceCredential::None => None,
            ServiceCredential::Static(token) => Some(token.clone()),
            ServiceCredential::Signer {
                signer,
                subject,
                ttl_secs,
            } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut cached = self.token.lock();
                if let Some((token, renew_at)) = cached.as_ref() {
                    if now < *renew_at {
                        return Some(token.clone());
                    }
                }
                match signer.mint(
                    subject,
                    &[Role::Service],
                    Duration::from_secs(*ttl_secs),
                    now,
                ) {
                    Ok(token) => {
                        *cached = Some((token.clone(), now + ttl_secs / 2));
                        Some(token)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot mint the service token");
                        None
                    }
                }
            }
        }
    }

    fn observe_state(&self, breaker: &Breaker) {
        let state = breaker.state(tokio::time::Instant::now());
        self.metrics.breaker_state.set(state.as_gauge());
    }

    async fn call(
        &self,
        op: &'static str,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
        correlation: &str,
    ) -> Result<(StatusCode, Bytes), InventoryError> {
        let request = self.build(method, &path, body, correlation)?;
        self.send(op, request).await
    }

    /// A POST carrying an `Idempotency-Key`.
    async fn call_keyed(
        &self,
        op: &'static str,
        path: String,
        body: Vec<u8>,
        key: &str,
        correlation: &str,
    ) -> Result<(StatusCode, Bytes), InventoryError> {
        let mut request = self.build(Method::POST, &path, Some(body), correlation)?;
        let key = HeaderValue::from_str(key).map_err(|_| InventoryError::Rejected {
            status: 0,
            code: "invalid idempotency key".into(),
        })?;
        request.headers_mut().insert("idempotency-key", key);
        self.send(op, request).await
    }

    async fn send(
        &self,
        op: &'static str,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), InventoryError> {
        let result = self.call_inner(request).await;
        let outcome = call_outcome(&result);
        self.metrics
            .inventory_calls
            .get_or_create(&CallLabels { op, outcome })
            .inc();
        result
    }

    async fn call_inner(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), InventoryError> {
        {
            let mut breaker = self.breaker.lock();
            if breaker.try_acquire(tokio::time::Instant::now()).is_err() {
                self.metrics.breaker_rejected.inc();
                self.observe_state(&breaker);
                return Err(InventoryError::CircuitOpen);
            }
        }
        let mut admitted = Admitted {
            breaker: &self.breaker,
            settled: false,
        };
        let sent = tokio::time::timeout(self.call_timeout, async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let bytes = http_body_util::Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| InventoryError::Unavailable(format!("reading response: {e}")))?
                .to_bytes();
            Ok::<_, InventoryError>((status, bytes))
        })
        .await;
        let result = match sent {
            Ok(r) => r,
            Err(_) => Err(InventoryError::Unavailable("timed out".into())),
        };
        let healthy = match &result {
            Ok((status, _)) => !status.is_server_error(),
            Err(_) => false,
        };
        let mut breaker = self.breaker.lock();
        let was = breaker.state(tokio::time::Instant::now());
        if healthy {
            breaker.on_success();
        } else {
            breaker.on_failure(tokio::time::Instant::now());
            if was != BreakerState::Open
                && breaker.state(tokio::time::Instant::now()) == BreakerState::Open
            {
                self.metrics.breaker_opened.inc();
                tracing::warn!("inventory circuit breaker opened");
            }
        }
        admitted.settled = true;
        self.observe_state(&breaker);
        result
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        correlation: &str,
    ) -> Result<Request<Full<Bytes>>, InventoryError> {
        let uri = format!("{}{path}", self.base_url);
        let mut builder = Request::builder().method(method).uri(uri);
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = self.bearer() {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Ok(v) = HeaderValue::from_str(correlation) {
            builder = builder.header(service_kit::request_id::REQUEST_ID_HEADER, v);
        }
        builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| InventoryError::Rejected {
                status: 0,
                code: format!("bad request: {e}"),
            })
    }
}

impl From<hyper_util::client::legacy::Error> for InventoryError {
    fn from(e: hyper_util::client::legacy::Error) -> Self {
        InventoryError::Unavailable(e.to_string())
    }
}

/// The `outcome` label of a call: `ok` for a success, else what the answer
/// means (a 4xx is inventory refusing, not an `ok`).
fn call_outcome(result: &Result<(StatusCode, Bytes), InventoryError>) -> &'static str {
    match result {
        Ok((status, _)) if status.is_success() => "ok",
        Ok((status, body)) => problem(*status, body).outcome(),
        Err(e) => e.outcome(),
    }
}

/// `Ok` for a success, else the problem inventory answered.
fn succeeded(status: StatusCode, body: &[u8]) -> Result<(), InventoryError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(problem(status, body))
    }
}

fn problem(status: StatusCode, body: &[u8]) -> InventoryError {
    let code = serde_json::from_slice::<ProblemBody>(body)
        .map(|p| p.code)
        .unwrap_or_default();
    match status.as_u16() {
        409 if code == "insufficient_stock" => InventoryError::InsufficientStock,
        409 => InventoryError::Conflict(code),
        410 => InventoryError::Expired,
        404 => InventoryError::NotFound(code),
        429 | 500..=599 => InventoryError::Unavailable(format!("status {status}")),
        s => InventoryError::Rejected { status: s, code },
    }
}

impl InventoryApi for HttpInventory {
    fn reserve<'a>(
        &'a self,
        inventory_order_id: Uuid,
        lines: &'a [(Uuid, u32)],
        ttl_seconds: Option<u64>,
        correlation: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ReservedLine>, InventoryError>> {
        Box::pin(async move {
            let lines: Vec<LineBody> = lines
                .iter()
                .map(|(product_id, quantity)| LineBody {
                    product_id: *product_id,
                    quantity: *quantity,
                })
                .collect();
            let body = serde_json::to_vec(&ReserveBody {
                order_id: inventory_order_id,
                lines: &lines,
                ttl_seconds,
            })
            .unwrap_or_default();
            let (status, bytes) = self
                .call(
                    "reserve",
                    Method::POST,
                    "/api/inventory/reservations".into(),
                    Some(body),
                    correlation,
                )
                .await?;
            if !status.is_success() {
                return Err(problem(status, &bytes));
            }
            let parsed: ReservationsBody = serde_json::from_slice(&bytes).map_err(|e| {
                InventoryError::Unavailable(format!("unexpected reserve body: {e}"))
            })?;
            Ok(parsed
                .reservations
                .into_iter()
                .map(|r| ReservedLine {
                    product_id: r.product_id,
                    reservation_id: r.reservation_id,
                })
                .collect())
        })
    }

    fn confirm<'a>(
        &'a self,
        reservation_id: Uuid,
        correlation: &'a str,
    ) -> BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&ConfirmBody { reservation_id }).unwrap_or_default();
            let (status, bytes) = self
                .call(
                    "confirm",
                    Method::POST,
                    "/api/inventory/confirm".into(),
                    Some(body),
                    correlation,
                )
                .await?;
            succeeded(status, &bytes)
        })
    }

    fn release<'a>(
        &'a self,
        reservation_id: Uuid,
        correlation: &'a str,
    ) -> BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(async move {
            let (status, bytes) = self
                .call(
                    "release",
                    Method::DELETE,
                    format!("/api/inventory/reserve/{reservation_id}"),
                    None,
                    correlation,
                )
                .await?;
            succeeded(status, &bytes)
        })
    }

    fn reservation_status<'a>(
        &'a self,
        reservation_id: Uuid,
        correlation: &'a str,
    ) -> BoxFuture<'a, Result<HoldStatus, InventoryError>> {
        Box::pin(async move {
            let (status, bytes) = self
                .call(
                    "reservation",
                    Method::GET,
                    format!("/api/inventory/reservations/{reservation_id}"),
                    None,
                    correlation,
                )
                .await?;
            if !status.is_success() {
                return Err(problem(status, &bytes));
            }
            let body: StatusBody = serde_json::from_slice(&bytes).map_err(|e| {
                InventoryError::Unavailable(format!("unexpected reservation body: {e}"))
            })?;
            match body.status.as_str() {
                "pending" => Ok(HoldStatus::Reserved),
                other => HoldStatus::parse(other).ok_or_else(|| {
                    InventoryError::Unavailable(format!("unknown reservation status {other}"))
                }),
            }
        })
    }

    fn restock<'a>(
        &'a self,
        product_id: Uuid,
        quantity: u32,
        key: &'a str,
        correlation: &'a str,
    ) -> BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&AdjustBody {
                delta: i64::from(quantity),
                reason: RESTOCK_REASON,
            })
            .unwrap_or_default();
            let (status, bytes) = self
                .call_keyed(
                    "restock",
                    format!("/api/inventory/{product_id}/adjustments"),
                    body,
                    key,
                    correlation,
                )
                .await?;
            succeeded(status, &bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Problem bodies map to the variants the saga acts on.
    #[test]
    fn problems_map_to_variants() {
        let body = |code: &str| format!("{{\"code\":\"{code}\"}}").into_bytes();
        assert_eq!(
            problem(StatusCode::CONFLICT, &body("insufficient_stock")),
            InventoryError::InsufficientStock
        );
        assert_eq!(
            problem(StatusCode::CONFLICT, &body("invalid_transition")),
            InventoryError::Conflict("invalid_transition".into())
        );
        assert_eq!(
            problem(StatusCode::GONE, &body("reservation_expired")),
            InventoryError::Expired
        );
        assert!(problem(StatusCode::SERVICE_UNAVAILABLE, b"").is_transient());
        assert!(problem(StatusCode::UNAUTHORIZED, &body("missing_token")).is_transient());
        assert!(!problem(StatusCode::BAD_REQUEST, &body("invalid_request")).is_transient());
    }

    /// A call inventory answered with a 4xx is counted by what the answer
    /// means, not as `ok`.
    #[test]
    fn refused_calls_are_not_counted_ok() {
        let answer = |status: StatusCode, code: &str| {
            Ok((status, Bytes::from(format!("{{\"code\":\"{code}\"}}"))))
        };
        assert_eq!(call_outcome(&answer(StatusCode::CREATED, "")), "ok");
        assert_eq!(
            call_outcome(&answer(StatusCode::CONFLICT, "insufficient_stock")),
            "insufficient_stock"
        );
        assert_eq!(
            call_outcome(&answer(StatusCode::NOT_FOUND, "reservation_not_found")),
            "not_found"
        );
        assert_eq!(
            call_outcome(&Err(InventoryError::CircuitOpen)),
            "circuit_open"
        );
    }

    /// With nothing listening, calls fail as unavailable until the breaker
    /// opens; then they fail fast and are counted.
    #[tokio::test]
    async fn breaker_opens_when_inventory_is_down() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let metrics = OrderMetrics::default();
        let mut config = InventoryClientConfig::new(format!("http://{addr}"));
        config.breaker.failures_to_open = 2;
        config.breaker.open_cool_down_ms = 60_000;
        let client = HttpInventory::new(config, metrics.clone());
        for _ in 0..2 {
            let e = client.confirm(Uuid::new_v4(), "t").await.unwrap_err();
            assert!(matches!(e, InventoryError::Unavailable(_)), "{e:?}");
        }
        assert_eq!(client.breaker_state(), BreakerState::Open);
        assert_eq!(
            client.confirm(Uuid::new_v4(), "t").await,
            Err(InventoryError::CircuitOpen)
        );
        assert_eq!(metrics.breaker_rejected.get(), 1);
        assert_eq!(metrics.breaker_state.get(), 1);
        assert_eq!(metrics.breaker_opened.get(), 1);
    }
}
