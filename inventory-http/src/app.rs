//! The application: state shared by every request, and the router that turns
//! a request into a response without needing a socket (tests call
//! [`App::handle`] directly; the server loop calls it through
//! [`service_kit::server::Handler`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use inventory_combiner::Combiner;
use inventory_core::InventoryStore;
use prometheus_client::registry::Registry;
use service_kit::body::RequestBody;
use service_kit::guard::rate_limited;
use service_kit::server::{Handler, RequestContext};
use service_kit::{Body, Problem};

use service_guard::{Authenticator, Limiter};
use service_kit::settings;

use crate::auth::Guard;
use crate::cache::{AvailabilityCache, Redis};
use crate::clock::Clock;
use crate::config::Config;
use crate::events::EventsStatus;
use crate::metrics::InventoryMetrics;
use crate::routes::{match_route, Matched, RouteId};
use crate::sweep::SweepSettings;

/// The service's name: its rate limiter's default Redis key prefix is
/// `inventory-http:ratelimit`.
pub const SERVICE_NAME: &str = "inventory-http";

/// Why the server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `REDIS_URL` is not a Redis URL.
    #[cfg(feature = "redis")]
    #[error("invalid redis url: {0}")]
    RedisUrl(#[from] redis::RedisError),
    /// A backend URL is set that this binary was built without.
    #[error(transparent)]
    NotBuilt(#[from] service_kit::backends::NotBuilt),
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] inventory_core::Error),
    /// The OpenAPI document is not valid YAML.
    #[error("openapi document: {0}")]
    OpenApi(String),
    /// The configuration is inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// The token verification settings are unusable.
    #[error("auth configuration: {0}")]
    Auth(#[from] service_guard::ConfigError),
    /// The extra CA file is unusable.
    #[error("tls: {0}")]
    Tls(#[from] service_guard::TlsError),
    /// The listener could not be inspected.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// Everything a request handler needs. Generic over the store so the library
/// can run on any [`InventoryStore`].
pub struct App<S> {
    pub(crate) store: Arc<S>,
    /// Every write goes through here: concurrent writes commit in batches.
    pub(crate) writes: Combiner<S>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) redis: Option<Arc<Redis>>,
    pub(crate) cache: Option<AvailabilityCache>,
    pub(crate) metrics: InventoryMetrics,
    pub(crate) registry: Registry,
    pub(crate) guard: Guard,
    pub(crate) limiter: Option<Limiter>,
    pub(crate) body_bytes_max: usize,
    pub(crate) sweep: SweepSettings,
    pub(crate) openapi: Bytes,
    pub(crate) events: Option<EventsStatus>,
}

impl<S> std::fmt::Debug for App<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("body_bytes_max", &self.body_bytes_max)
            .field("sweep", &self.sweep)
            .finish_non_exhaustive()
    }
}

impl<S: InventoryStore> App<S> {
    /// Builds the application over `store`, reading time from `clock`.
    ///
    /// # Errors
    /// [`StartError`] when the configuration is unusable, a backend URL
    /// among them that this binary was built without.
    pub async fn new(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        config: &Config,
    ) -> Result<Self, StartError> {
        let mut registry = Registry::default();
        let metrics = InventoryMetrics::register(&mut registry, config.stock_gauge_products_max);
        config.check_backends()?;
        let tls = config.tls.client()?;
        let redis = crate::cache::connect(config, &tls)?;
        let cache = redis
            .as_ref()
            .map(|r| AvailabilityCache::new(r.clone(), config.cache_ttl_secs));
        let authenticator = match config.auth.config()? {
            Some(auth) => Authenticator::start(&auth, &tls).await?,
            None => Authenticator::disabled(),
        };
        service_kit::metrics::register_key_reloads(&mut registry, authenticator.clone());
        let limiter = settings::limiter(config.rate_limit.config(
            SERVICE_NAME,
            config.redis_url.as_deref(),
            &tls,
        ))
        .await;
        let writes = Combiner::new(Arc::clone(&store), config.combiner())
            .with_observer(Arc::new(metrics.batches().clone()));
        Ok(Self {
            store,
            writes,
            clock,
            redis,
            cache,
            metrics,
            registry,
            guard: Guard::new(authenticator),
            limiter,
            body_bytes_max: config.body_bytes_max,
            sweep: SweepSettings {
                interval_ms: config.sweep_interval_ms,
                batch_max: config.sweep_batch_max,
                batches_per_run_max: config.sweep_batches_per_run_max,
                retention_ms: config.finished_retention_secs.saturating_mul(1_000),
            },
            openapi: crate::openapi::document_json().map_err(StartError::OpenApi)?,
            events: None,
        })
    }

    /// The application with readiness and metrics reporting the event relay
    /// behind `status`.
    #[must_use]
    pub fn with_events(mut self, status: EventsStatus) -> Self {
        self.events = Some(status);
        self
    }

    /// How many writes wait for a batch now.
    pub fn queued_writes(&self) -> usize {
        self.writes.queued()
    }

    /// The store the application runs on.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Handles one request: route, authorize, run the handler, record metrics.
    /// Never fails and never panics on client input: every error is a problem.
    pub async fn handle<B: RequestBody>(
        &self,
        request: Request<B>,
        ctx: RequestContext,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = request.method().clone();
        let uri = request.uri().clone();
        let (route, response) = match match_route(method.as_str(), uri.path()) {
            Err(problem) => ("unmatched", problem.into_response(&ctx.request_id)),
            Ok(matched) => {
                let template = matched.route.template;
                let decision = match (&self.limiter, matched.route.rate_limited) {
                    (Some(limiter), true) => {
                        Some(limiter.check(&format!("ip:{}", ctx.peer.ip())).await)
                    }
                    _ => None,
                };
                let result = match &decision {
                    Some(d) if !d.allowed => Err(rate_limited(d)),
                    _ => self.authorized(matched, request, &ctx).await,
                };
                let mut response = match result {
                    Ok(r) => r,
                    Err(problem) => problem.into_response(&ctx.request_id),
                };
                if let Some(d) = &decision {
                    for (name, value) in d.headers() {
                        response.headers_mut().insert(name, value);
                    }
                }
                (template, response)
            }
        };
        self.metrics
            .http
            .observe(route, &method, response.status(), started.elapsed());
        response
    }

    async fn authorized<B: RequestBody>(
        &self,
        matched: Matched<'_>,
        request: Request<B>,
        ctx: &RequestContext,
    ) -> Result<Response<Body>, Problem> {
        let caller = self
            .guard
            .check(request.headers(), matched.route.access)
            .await?;
        let param = matched.param.unwrap_or("");
        match matched.route.id {
            RouteId::Health => Ok(self.health()),
            RouteId::Ready => self.ready().await,
            RouteId::Metrics => Ok(self.render_metrics()),
            RouteId::OpenApi => Ok(self.openapi()),
            RouteId::BulkAvailability => self.bulk_availability(&request).await,
            RouteId::Availability => self.availability(param, request.headers()).await,
            RouteId::SetQuantity => self.set_quantity(param, request, &caller, ctx).await,
            RouteId::CreateItem => self.create_item(request, &caller, ctx).await,
            RouteId::Reserve => self.reserve(request, ctx).await,
            RouteId::ReserveLines => self.reserve_lines(request, ctx).await,
            RouteId::GetReservation => self.get_reservation(param).await,
            RouteId::Confirm => self.confirm_body(request, ctx).await,
            RouteId::ConfirmPath => self.confirm(param, ctx).await,
            RouteId::Release => self.release(param, ctx).await,
            RouteId::Adjustments => self.adjustments(param, &request).await,
            RouteId::Adjust => self.adjust(param, request, &caller, ctx).await,
        }
    }
}

impl<S> App<S> {
    fn render_metrics(&self) -> Response<Body> {
        if let Some(events) = &self.events {
            self.metrics.events(&events.health);
        }
        service_kit::metrics::render(&self.registry)
    }
}

impl<S: InventoryStore> Handler for App<S> {
    const SERVICE: &'static str = "inventory";

    fn handle(
        &self,
        request: Request<Incoming>,
        ctx: RequestContext,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        App::handle(self, request, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use http_body_util::{BodyExt, Full};
    use inventory_memory::MemoryStore;
    use service_kit::RequestId;

    fn ctx() -> RequestContext {
        RequestContext {
            request_id: RequestId::parse("unit-1").unwrap(),
            peer: "127.0.0.1:9".parse().unwrap(),
        }
    }

    /// The router is a plain async function: request in, response out, no socket.
    #[tokio::test]
    async fn router_runs_without_a_socket() {
        let app = App::new(
            Arc::new(MemoryStore::new()),
            Arc::new(SystemClock),
            &Config::embedded(),
        )
        .await
        .unwrap();
        let product = uuid::Uuid::new_v4();
        let create = Request::post("/api/inventory/items")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!(
                "{{\"product_id\":\"{product}\",\"quantity\":4}}"
            ))))
            .unwrap();
        assert_eq!(app.handle(create, ctx()).await.status(), 201);
        let read = Request::get(format!("/api/inventory/{product}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = app.handle(read, ctx()).await;
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["available"], 4);
        let missing = Request::get("/nowhere")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = app.handle(missing, ctx()).await;
        assert_eq!(resp.status(), 404);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["request_id"], "unit-1");
    }
}
