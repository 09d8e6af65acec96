//! The accept loop every server runs, the gateway's included: a cap on
//! connections, header-read and per-request timeouts, a request-id span around
//! each request, and graceful shutdown that drains in-flight requests within a
//! bounded time. Responses are full buffers ([`Body`]) by default, or any
//! [`ResponseBody`] (the gateway streams its upstreams' bodies).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::problem::Problem;
use crate::request_id::{RequestId, REQUEST_ID_HEADER};
use crate::Body;

/// Default cap on open connections. Past it the server stops accepting and the
/// kernel's backlog holds new clients, so memory stays bounded under a flood.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1_024;

/// Default time a client has to send a request's headers. Cuts off slow-loris
/// clients that trickle bytes to hold a connection.
pub const HEADER_READ_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Default time a server's request waits for a database connection before
/// it is answered 503, in milliseconds: while the database is down, clients
/// get a 503 with `Retry-After` within this time, so it stays below the
/// gateway's upstream timeouts (3 s for inventory, 5 s for orders) and the
/// gateway's 504 is never the answer. (The stores' own default, for
/// embedders, is longer.)
pub const DB_ACQUIRE_TIMEOUT_MS_DEFAULT: u64 = 1_500;

/// Default time a request may take from headers read to response ready
/// (including reading the body). Bounds work held by a slow client or store.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Default time graceful shutdown waits for in-flight requests to finish.
/// Below the usual 30 s an orchestrator waits after SIGTERM before SIGKILL.
pub const SHUTDOWN_DRAIN_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Pause after a failed `accept` (for example too many open files) before
/// trying again, so the loop does not spin.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// The limits of one server. Build with `Default` and change fields as needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Most connections open at once.
    pub connections_max: usize,
    /// Time allowed to receive a request's headers, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Time allowed to produce a response, in milliseconds.
    pub request_timeout_ms: u64,
    /// Time shutdown waits for in-flight requests, in milliseconds.
    pub shutdown_drain_timeout_ms: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            header_read_timeout_ms: HEADER_READ_TIMEOUT_MS_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            shutdown_drain_timeout_ms: SHUTDOWN_DRAIN_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// What the server knows about a request besides the request itself.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The request's id (from `X-Request-Id` or generated).
    pub request_id: RequestId,
    /// The client's address (the TCP peer).
    pub peer: SocketAddr,
}

/// An error of a streamed body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body the server loop can send, and build from a full buffer
/// (for the answers the loop gives itself, such as a timed-out request).
pub trait ResponseBody:
    hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
    /// A full buffer as this body.
    fn from_full(full: Body) -> Self;
}

impl ResponseBody for Body {
    fn from_full(full: Body) -> Self {
        full
    }
}

impl ResponseBody for BoxBody<Bytes, BoxError> {
    fn from_full(full: Body) -> Self {
        full.map_err(|never| match never {}).boxed()
    }
}

/// The application a server runs: turns a request into a response with a
/// body of type `B` (a full buffer unless said otherwise). It never fails:
/// errors are responses (problems).
pub trait Handler<B: ResponseBody = Body>: Send + Sync + 'static {
    /// The server's name on each request's span (`service` in the logs).
    const SERVICE: &'static str = "server";

    /// Handles one request.
    fn handle(
        &self,
        request: Request<Incoming>,
        ctx: RequestContext,
    ) -> impl Future<Output = Response<B>> + Send;
}

/// Serves `handler` on `listener` until `shutdown` completes, then stops
/// accepting, waits up to `limits.shutdown_drain_timeout_ms` for in-flight
/// requests, and returns.
pub async fn serve<H: Handler<B>, B: ResponseBody>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.connections_max.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms));
    let request_timeout = Duration::from_millis(limits.request_timeout_ms);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(dispatch(&*handler, req, peer, request_timeout).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let drain = Duration::from_millis(limits.shutdown_drain_timeout_ms);
    match tokio::time::timeout(drain, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(
            drain_ms = limits.shutdown_drain_timeout_ms,
            "drain timed out, closing remaining connections"
        ),
    }
}

/// The answer to a request that ran out of time. Its handler was stopped
/// part way, so a write may or may not have happened: a request that is safe
/// to repeat (GET, PUT, DELETE ...) gets 503 `request_timeout` with
/// `Retry-After`; any other (POST, PATCH) gets 504 `outcome_unknown` with no
/// retry hint, since repeating it blindly could apply it twice.
///
/// ```
/// let write = service_kit::server::timed_out(false);
/// assert_eq!(write.status(), http::StatusCode::GATEWAY_TIMEOUT);
/// let read = service_kit::server::timed_out(true);
/// assert_eq!(read.status(), http::StatusCode::SERVICE_UNAVAILABLE);
/// ```
pub fn timed_out(idempotent: bool) -> Problem {
    if idempotent {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            "Request timeout",
            "the request took too long to handle",
        )
        .with_retry_after(Duration::from_secs(1))
    } else {
        Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "outcome_unknown",
            "Outcome unknown",
            "the request took too long to handle and may or may not have been applied; \
             check its effect before sending it again",
        )
    }
}

/// Runs one request inside a span carrying its request id, under the request
/// timeout, and echoes the id on the response.
async fn dispatch<H: Handler<B>, B: ResponseBody>(
    handler: &H,
    request: Request<Incoming>,
    peer: SocketAddr,
    timeout: Duration,
) -> Response<B> {
    let request_id = RequestId::from_headers(request.headers());
    let span = tracing::info_span!(
        "request",
        service = H::SERVICE,
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = Instant::now();
    let ctx = RequestContext {
        request_id: request_id.clone(),
        peer,
    };
    async move {
        // Boxed: an application's handler future can be large, and boxing it
        // once is cheaper than moving it through the wrappers.
        let idempotent = request.method().is_idempotent();
        let handling = Box::pin(handler.handle(request, ctx));
        let mut response = match tokio::time::timeout(timeout, handling).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
                timed_out(idempotent)
                    .into_response(&request_id)
                    .map(B::from_full)
            }
        };
        if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
            response.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "request finished"
        );
        response
    }
    .instrument(span)
    .await
}
