//! The gateway itself: route, limit, authenticate, rewrite headers, forward
//! over pooled keep-alive connections with streamed bodies, and turn every
//! upstream failure into a prompt problem+json answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::registry::Registry;
use service_guard::{authorize, Authenticator, Limiter, Principal, RateDecision, TlsClient};
use service_kit::metrics::HttpMetrics;
use service_kit::request_id::REQUEST_ID_HEADER;
use service_kit::server::{Handler, RequestContext, ResponseBody};
use service_kit::settings;
use service_kit::{Problem, RequestId};

use crate::config::Config;
use crate::headers;
use crate::health;
use crate::problems;
use crate::rules::{self, AccessRule, Target, Upstream};

pub use service_kit::server::BoxError;

/// The body of every request forwarded and every response returned: streamed.
pub type GatewayBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Why the gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A backend URL is set that this binary was built without.
    #[error(transparent)]
    NotBuilt(#[from] service_kit::backends::NotBuilt),
    /// The JWT settings are unusable.
    #[error("jwt configuration: {0}")]
    Auth(#[from] service_guard::ConfigError),
    /// The extra CA file is unusable.
    #[error("tls: {0}")]
    Tls(#[from] service_guard::TlsError),
    /// An upstream URL is not `http://host:port` or `https://host:port`
    /// (with an optional trailing `/`).
    #[error("invalid {name} url {url:?}: {reason}")]
    UpstreamUrl {
        /// Which upstream.
        name: &'static str,
        /// The value given.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A header name given to strip is not a header name.
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    /// No key is configured and the listen address is not loopback.
    #[error("no jwt key configured: refusing to run open on {0} (configure a key or listen on loopback)")]
    OpenOffLoopback(SocketAddr),
    /// A service's OpenAPI document does not parse (a build defect).
    #[error("openapi document: {0}")]
    OpenApi(String),
    /// The listener's address could not be read.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// One upstream: where it is and how long it may take.
#[derive(Clone, Debug)]
struct UpstreamConfig {
    scheme: Scheme,
    authority: Authority,
    timeout: Duration,
}

impl UpstreamConfig {
    fn parse(name: &'static str, url: &str, timeout_ms: u64) -> Result<Self, StartError> {
        let err = |reason| StartError::UpstreamUrl {
            name,
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| err("not a url"))?;
        let scheme = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
            _ => return Err(err("only http:// and https:// upstreams are supported")),
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(err("a base url has no path or query"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| err("no host"))?;
        Ok(Self {
            scheme,
            authority,
            timeout: Duration::from_millis(timeout_ms.max(1)),
        })
    }

    fn uri(&self, path_and_query: PathAndQuery) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }
}

/// The gateway's state, shared by every request.
pub struct Gateway {
    client: Client<HttpsConnector<HttpConnector>, GatewayBody>,
    orders: UpstreamConfig,
    inventory: UpstreamConfig,
    auth: Authenticator,
    public: Vec<AccessRule>,
    strip: Vec<HeaderName>,
    identity_headers: bool,
    /// Proxies in front whose `X-Forwarded-For` entries are believed (0: none).
    trusted_hops: usize,
    ip_limiter: Option<Limiter>,
    user_limiter: Option<Limiter>,
    body_bytes_max: u64,
    health_timeout: Duration,
    metrics: HttpMetrics,
    registry: Registry,
    /// The merged OpenAPI document of the public API.
    openapi: Bytes,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("orders", &self.orders)
            .field("inventory", &self.inventory)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

async fn limiter(
    per_minute: u32,
    redis_url: Option<&String>,
    prefix: &str,
    tls: &TlsClient,
) -> Option<Limiter> {
    let config = settings::config(
        per_minute,
        redis_url.map(String::as_str),
        format!("gateway:{prefix}"),
        tls,
    );
    settings::limiter(config).await
}

impl Gateway {
    /// Builds the gateway from its configuration.
    ///
    /// # Errors
    /// [`StartError`] for unusable keys, URLs or header names, a keyless
    /// gateway on a non-loopback address, or a Redis URL in a build without
    /// the `redis` feature.
    pub async fn new(config: &Config) -> Result<Self, StartError> {
        config.check_backends()?;
        let tls = config.tls.client()?;
        let auth = match config.auth.config()? {
            Some(cfg) => Authenticator::start(&cfg, &tls).await?,
            None if service_guard::open_allowed(&config.listen) => {
                tracing::warn!(addr = %config.listen, "no jwt key configured: the gateway runs open (loopback only)");
                Authenticator::disabled()
            }
            None => return Err(StartError::OpenOffLoopback(config.listen)),
        };
        let strip = config
            .strip_headers
            .iter()
            .map(|h| {
                HeaderName::from_bytes(h.trim().as_bytes())
                    .map_err(|_| StartError::HeaderName(h.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(config.pool_idle_timeout_secs))
            .pool_max_idle_per_host(config.pool_idle_per_upstream_max)
            .build(tls.https_connector(connector));
        let mut registry = Registry::default();
        let metrics = HttpMetrics::register(&mut registry);
        service_kit::metrics::register_key_reloads(&mut registry, auth.clone());
        let openapi =
            crate::openapi::document_json(&config.public_rules()).map_err(StartError::OpenApi)?;
        Ok(Self {
            client,
            orders: UpstreamConfig::parse("orders", &config.orders_url, config.orders_timeout_ms)?,
            inventory: UpstreamConfig::parse(
                "inventory",
                &config.inventory_url,
                config.inventory_timeout_ms,
            )?,
            auth,
            public: config.public_rules(),
            strip,
            identity_headers: !config.no_identity_headers,
            trusted_hops: config.trusted_hops(),
            ip_limiter: limiter(
                config.rate_limit_ip_per_minute,
                config.redis_url.as_ref(),
                "ip",
                &tls,
            )
            .await,
            user_limiter: limiter(
                config.rate_limit_user_per_minute,
                config.redis_url.as_ref(),
                "user",
                &tls,
            )
            .await,
            body_bytes_max: config.body_bytes_max,
            health_timeout: Duration::from_millis(config.health_timeout_ms.max(1)),
            metrics,
            registry,
            openapi,
        })
    }

    fn upstream(&self, upstream: Upstream) -> &UpstreamConfig {
        match upstream {
            Upstream::Orders => &self.orders,
            Upstream::Inventory => &self.inventory,
        }
    }

    /// The authenticator of clients' tokens (clones share its keys, so a
    /// reload through one reaches the gateway).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// Handles one request from `peer` with id `request_id`. Never fails:
    /// every error is a problem+json response.
    pub async fn handle<B>(
        &self,
        request: Request<B>,
        request_id: &RequestId,
        peer: SocketAddr,
    ) -> Response<GatewayBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path();
        let matched = if rules::path_is_clean(path) {
            rules::target(path).ok_or_else(|| Problem::route_not_found(path))
        } else {
            Err(Problem::bad_request(
                "invalid_path",
                "the path has dot segments or is too long",
            ))
        };
        let (label, result) = match matched {
            Err(problem) => ("unmatched", Err(problem)),
            Ok(target) => (
                label(target),
                self.route(target, request, request_id, peer).await,
            ),
        };
        let mut response = result.unwrap_or_else(|p| problem_response(p, request_id));
        if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
            response.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        self.metrics
            .observe(label, &method, response.status(), started.elapsed());
        response
    }

    async fn route<B>(
        &self,
        target: Target,
        request: Request<B>,
        request_id: &RequestId,
        peer: SocketAddr,
    ) -> Result<Response<GatewayBody>, Problem>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let local = !matches!(target, Target::Proxy { .. });
        if local && request.method() != Method::GET {
            return Err(Problem::method_not_allowed(&["GET"]));
        }
        match target {
            Target::Health => {
                // Each call probes every upstream: limit it like the API, so
                // it cannot be used to multiply load on the services.
                let ip = headers::client_ip(request.headers(), peer.ip(), self.trusted_hops);
                check(self.ip_limiter.as_ref(), &format!("ip:{ip}")).await?;
                Ok(boxed(health::report(self).await))
            }
            Target::Ready => Ok(boxed(service_kit::response::json(
                StatusCode::OK,
                &serde_json::json!({"status": "ready"}),
            ))),
            Target::Metrics => Ok(boxed(service_kit::metrics::render(&self.registry))),
            Target::OpenApi => Ok(boxed(service_kit::response::bytes_with_type(
                StatusCode::OK,
                self.openapi.clone(),
                "application/json",
            ))),
            Target::Docs => Ok(boxed(service_kit::response::bytes_with_type(
                StatusCode::OK,
                Bytes::from_static(crate::openapi::VIEWER_HTML.as_bytes()),
                "text/html; charset=utf-8",
            ))),
            Target::Proxy { upstream, .. } => {
                let ip = headers::client_ip(request.headers(), peer.ip(), self.trusted_hops);
                let ip_decision = check(self.ip_limiter.as_ref(), &format!("ip:{ip}")).await?;
                let principal = self
                    .admit(request.method(), request.uri().path(), request.headers())
                    .await?;
                let user_decision = match &principal {
                    Some(p) => {
                        check(self.user_limiter.as_ref(), &format!("user:{}", p.subject)).await?
                    }
                    None => None,
                };
                let mut response = self
                    .forward(upstream, request, principal.as_ref(), request_id, peer)
                    .await?;
                // The edge's budget replaces any an upstream reported.
                if let Some(decision) = user_decision.or(ip_decision) {
                    for (name, value) in decision.headers() {
                        response.headers_mut().insert(name, value);
                    }
                }
                Ok(response)
            }
        }
    }

    /// Authenticates and authorizes a request for a proxied route. Returns
    /// the principal to propagate (`None` for an anonymous call of a public
    /// route, or when the gateway runs open).
    async fn admit(
        &self,
        method: &Method,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<Option<Principal>, Problem> {
        if self.auth.is_disabled() {
            return Ok(None);
        }
        let public = self.public.iter().any(|r| r.matches(method, path));
        if public && !headers.contains_key(header::AUTHORIZATION) {
            return Ok(None);
        }
        let principal = self
            .auth
            .authenticate(headers)
            .await
            .map_err(service_kit::guard::auth_problem)?;
        if !public {
            authorize(&principal, rules::required_roles(method, path))
                .map_err(service_kit::guard::auth_problem)?;
        }
        Ok(Some(principal))
    }

    async fn forward<B>(
        &self,
        upstream: Upstream,
        request: Request<B>,
        principal: Option<&Principal>,
        request_id: &RequestId,
        peer: SocketAddr,
    ) -> Result<Response<GatewayBody>, Problem>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let settings = self.upstream(upstream);
        let (mut parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.body_bytes_max) {
            return Err(problems::too_large(self.body_bytes_max));
        }
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = settings
            .uri(path_and_query)
            .map_err(|_| Problem::bad_request("invalid_path", "the request target is invalid"))?;
        parts.version = Version::HTTP_11;
        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h);
        headers::strip_identity(h, &self.strip);
        headers::set_forwarded(h, peer.ip(), self.trusted_hops > 0);
        h.remove(header::HOST);
        if let (Some(p), true) = (principal, self.identity_headers) {
            headers::set_identity(h, p);
        }
        if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
            h.insert(REQUEST_ID_HEADER, v);
        }
        let body = Limited::new(
            body,
            usize::try_from(self.body_bytes_max).unwrap_or(usize::MAX),
        );
        let outgoing = Request::from_parts(parts, body.boxed());
        let sent = tokio::time::timeout(settings.timeout, self.client.request(outgoing)).await;
        let response = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(problems::upstream_error(upstream, &e, self.body_bytes_max)),
            Err(_) => {
                tracing::warn!(
                    upstream = upstream.name(),
                    timeout_ms = settings.timeout.as_millis() as u64,
                    "upstream timed out"
                );
                return Err(Problem::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "Gateway timeout",
                    format!("the {} service did not answer in time", upstream.name()),
                ));
            }
        };
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(
            parts,
            body.map_err(BoxError::from).boxed(),
        ))
    }

    /// Probes `upstream`'s `/health/ready` within the health timeout.
    pub(crate) async fn probe(&self, upstream: Upstream) -> Result<StatusCode, &'static str> {
        let settings = self.upstream(upstream);
        let uri = settings
            .uri(PathAndQuery::from_static("/health/ready"))
            .map_err(|_| "invalid url")?;
        let mut request = Request::new(Empty::<Bytes>::new().map_err(BoxError::from).boxed());
        *request.uri_mut() = uri;
        match tokio::time::timeout(self.health_timeout, self.client.request(request)).await {
            Ok(Ok(response)) => {
                let status = response.status();
                // Drain the small body so the connection goes back to the pool.
                let _ =
                    tokio::time::timeout(self.health_timeout, response.into_body().collect()).await;
                Ok(status)
            }
            Ok(Err(e)) if e.is_connect() => Err("unreachable"),
            Ok(Err(_)) => Err("bad response"),
            Err(_) => Err("timed out"),
        }
    }
}

fn label(target: Target) -> &'static str {
    match target {
        Target::Health => "/health",
        Target::Ready => "/health/ready",
        Target::Metrics => "/metrics",
        Target::OpenApi => "/openapi.json",
        Target::Docs => "/docs",
        Target::Proxy { route, .. } => route,
    }
}

/// A full response as a gateway response.
pub(crate) fn boxed(response: Response<service_kit::Body>) -> Response<GatewayBody> {
    response.map(GatewayBody::from_full)
}

impl Handler<GatewayBody> for Gateway {
    const SERVICE: &'static str = "gateway";

    async fn handle(
        &self,
        request: Request<Incoming>,
        ctx: RequestContext,
    ) -> Response<GatewayBody> {
        Gateway::handle(self, request, &ctx.request_id, ctx.peer).await
    }
}

fn problem_response(problem: Problem, request_id: &RequestId) -> Response<GatewayBody> {
    boxed(problem.into_response(request_id))
}

async fn check(limiter: Option<&Limiter>, key: &str) -> Result<Option<RateDecision>, Problem> {
    let Some(limiter) = limiter else {
        return Ok(None);
    };
    let decision = limiter.check(key).await;
    if decision.allowed {
        Ok(Some(decision))
    } else {
        Err(service_kit::guard::rate_limited(&decision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream URLs must be http or https base URLs.
    #[test]
    fn upstream_urls() {
        assert!(UpstreamConfig::parse("orders", "http://127.0.0.1:3001", 1).is_ok());
        assert!(UpstreamConfig::parse("orders", "http://orders:3001/", 1).is_ok());
        assert!(UpstreamConfig::parse("orders", "https://orders.internal", 1).is_ok());
        for bad in [
            "ftp://x",
            "http://x/api",
            "x",
            "http://x/?a=1",
            "https://x/api",
        ] {
            assert!(UpstreamConfig::parse("orders", bad, 1).is_err(), "{bad}");
        }
    }
}
