//! The HTTP face of the service: [`App`] holds what requests share and routes
//! each request (tests call [`App::handle`] directly; the server loop calls it
//! through [`service_kit::server::Handler`]).

mod handlers;

pub use handlers::{
    BROKER_RETRY_AFTER_MS, IDEMPOTENCY_KEY_HEADER, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, PAGE_MAX,
};

pub mod dto;
pub mod openapi;
pub mod routes;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use service_guard::{authorize, AuthError, Authenticator, Limiter, Role};
use service_kit::guard::{auth_problem, rate_limited};
use service_kit::metrics::HttpMetrics;
use service_kit::server::{Handler, RequestContext};
use service_kit::{Body, Problem};

use crate::clock::Clock;
use crate::domain::UserId;
use crate::events::{EventSettings, EventsHealth};
use crate::metrics::OrderMetrics;
use crate::saga::SagaEngine;
use crate::store::{OrderStore, StoreError};
use routes::{match_route, Access, RouteId};

/// Everything an [`App`] is built from.
pub struct AppParts {
    /// Where orders live.
    pub store: Arc<dyn OrderStore>,
    /// The saga engine (over the same store).
    pub engine: Arc<SagaEngine>,
    /// Wall clock.
    pub clock: Arc<dyn Clock>,
    /// Verifies callers' tokens.
    pub authenticator: Authenticator,
    /// The registry `/metrics` renders (the order metrics already in it).
    pub registry: Registry,
    /// The order metrics.
    pub metrics: OrderMetrics,
    /// Largest request body, in bytes.
    pub body_bytes_max: usize,
    /// Limits requests on the orders routes; `None` when disabled.
    pub limiter: Option<Limiter>,
    /// How events are published and consumed.
    pub events: EventSettings,
}

/// The application.
pub struct App {
    store: Arc<dyn OrderStore>,
    engine: Arc<SagaEngine>,
    clock: Arc<dyn Clock>,
    authenticator: Authenticator,
    registry: Registry,
    http_metrics: HttpMetrics,
    metrics: OrderMetrics,
    body_bytes_max: usize,
    openapi: Bytes,
    limiter: Option<Limiter>,
    events: EventSettings,
    events_health: OnceLock<EventsHealth>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("body_bytes_max", &self.body_bytes_max)
            .finish_non_exhaustive()
    }
}

/// Who is calling an order route.
struct Caller {
    user: UserId,
}

impl App {
    /// Builds the application.
    ///
    /// # Errors
    /// The parser's message when the embedded OpenAPI document is malformed.
    pub fn new(parts: AppParts) -> Result<Self, String> {
        let mut registry = parts.registry;
        let http_metrics = HttpMetrics::register(&mut registry);
        service_kit::metrics::register_key_reloads(&mut registry, parts.authenticator.clone());
        Ok(Self {
            store: parts.store,
            engine: parts.engine,
            clock: parts.clock,
            authenticator: parts.authenticator,
            registry,
            http_metrics,
            metrics: parts.metrics,
            body_bytes_max: parts.body_bytes_max,
            openapi: openapi::document_json()?,
            limiter: parts.limiter,
            events: parts.events,
            events_health: OnceLock::new(),
        })
    }

    /// How events are published and consumed.
    pub fn event_settings(&self) -> &EventSettings {
        &self.events
    }

    /// Records the running relay's and consumer's health (for readiness and
    /// metrics); the first call wins.
    pub fn set_events_health(&self, health: EventsHealth) {
        let _ = self.events_health.set(health);
    }

    /// The running relay's and consumer's health, once started.
    pub fn events_health(&self) -> Option<&EventsHealth> {
        self.events_health.get()
    }

    /// The saga engine.
    pub fn engine(&self) -> &Arc<SagaEngine> {
        &self.engine
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn OrderStore> {
        &self.store
    }

    /// Handles one request: route, authenticate, run the handler, record
    /// metrics. Never fails: every error is a problem response.
    pub async fn handle<B>(&self, request: Request<B>, ctx: RequestContext) -> Response<Body>
    where
        B: hyper::body::Body + Send,
        B::Data: Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let (route, response) = match match_route(method.as_str(), &path) {
            Err(problem) => ("unmatched", problem.into_response(&ctx.request_id)),
            Ok(matched) => {
                let template = matched.route.template;
                let param = matched.param.map(str::to_owned);
                let caller = self.caller(request.headers(), matched.route.access).await;
                let decision = match (&self.limiter, matched.route.rate_limited) {
                    (Some(limiter), true) => {
                        Some(limiter.check(&self.rate_key(&caller, &ctx)).await)
                    }
                    _ => None,
                };
                let result = match (&decision, caller) {
                    (Some(d), _) if !d.allowed => Err(rate_limited(d)),
                    (_, Err(problem)) => Err(problem),
                    (_, Ok(caller)) => {
                        self.dispatch(
                            matched.route.id,
                            caller.as_ref().map(|c| &c.user),
                            param.as_deref(),
                            request,
                            &ctx,
                        )
                        .await
                    }
                };
                let mut response = result.unwrap_or_else(|p| p.into_response(&ctx.request_id));
                if let Some(d) = &decision {
                    for (name, value) in d.headers() {
                        response.headers_mut().insert(name, value);
                    }
                }
                (template, response)
            }
        };
        self.http_metrics
            .observe(route, &method, response.status(), started.elapsed());
        response
    }

    /// Whose budget a request counts against: the user when the caller is
    /// authenticated (and the server checks tokens), else the client's IP.
    fn rate_key(&self, caller: &Result<Option<Caller>, Problem>, ctx: &RequestContext) -> String {
        match caller {
            Ok(Some(c)) if !self.authenticator.is_disabled() => format!("user:{}", c.user.as_str()),
            _ => format!("ip:{}", ctx.peer.ip()),
        }
    }

    async fn caller(
        &self,
        headers: &http::HeaderMap,
        access: Access,
    ) -> Result<Option<Caller>, Problem> {
        let roles: &[Role] = match access {
            Access::Public => return Ok(None),
            Access::Customer => &[Role::Customer, Role::Admin],
            Access::Admin => &[Role::Admin],
        };
        let principal = self
            .authenticator
            .authenticate(headers)
            .await
            .map_err(auth_problem)?;
        authorize(&principal, roles).map_err(auth_problem)?;
        let user = UserId::parse(&principal.subject).map_err(|e| {
            Problem::new(
                http::StatusCode::UNAUTHORIZED,
                e.code(),
                "Unauthorized",
                e.to_string(),
            )
        })?;
        Ok(Some(Caller { user }))
    }

    async fn dispatch<B>(
        &self,
        route: RouteId,
        user: Option<&UserId>,
        param: Option<&str>,
        request: Request<B>,
        ctx: &RequestContext,
    ) -> Result<Response<Body>, Problem>
    where
        B: hyper::body::Body + Send,
        B::Data: Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let param = param.unwrap_or("");
        match (route, user) {
            (RouteId::Health, _) => Ok(self.health()),
            (RouteId::Ready, _) => self.ready().await,
            (RouteId::Metrics, _) => Ok(self.render_metrics()),
            (RouteId::OpenApi, _) => Ok(service_kit::response::bytes_with_type(
                http::StatusCode::OK,
                self.openapi.clone(),
                "application/json",
            )),
            (RouteId::ListProducts, _) => self.list_products().await,
            (RouteId::GetProduct, _) => self.get_product(param).await,
            (RouteId::CreateProduct, _) => self.create_product(request).await,
            (RouteId::UpdateProduct, _) => self.update_product(param, request).await,
            (RouteId::PlaceOrder, Some(user)) => self.place_order(user, request, ctx).await,
            (RouteId::ListOrders, Some(user)) => self.list_orders(user, &request).await,
            (RouteId::GetOrder, Some(user)) => self.get_order(user, param).await,
            (RouteId::OrderStatus, Some(user)) => self.order_status(user, param).await,
            (RouteId::CancelOrder, Some(user)) => self.cancel_order(user, param).await,
            (_, None) => Err(auth_problem(AuthError::Missing)),
        }
    }
}

impl Handler for App {
    const SERVICE: &'static str = "orders";

    fn handle(
        &self,
        request: Request<Incoming>,
        ctx: RequestContext,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        App::handle(self, request, ctx)
    }
}

/// Retry hint sent when the store is unavailable, in milliseconds.
pub const STORE_RETRY_AFTER_MS: u64 = 2_000;

/// The problem for a store failure; internals go to the log only.
fn store_problem(e: StoreError) -> Problem {
    match e {
        StoreError::Unavailable(reason) => {
            tracing::error!(%reason, "order store unavailable");
            Problem::unavailable(
                "store_unavailable",
                "the order store is unavailable; retry later",
                std::time::Duration::from_millis(STORE_RETRY_AFTER_MS),
            )
        }
        StoreError::ProductExists(id) => Problem::new(
            http::StatusCode::CONFLICT,
            "product_exists",
            "Conflict",
            format!("product {id} already exists"),
        ),
        StoreError::LeaseLost(id) => {
            tracing::error!(order_id = %id, "saga write refused on a request path");
            Problem::internal()
        }
        StoreError::Internal(reason) => {
            tracing::error!(%reason, "order store failure");
            Problem::internal()
        }
    }
}
