//! The accept loop of the gateway.
//!
//! Same limits and shutdown behaviour as `service_kit::serve` (connection cap,
//! header-read timeout, request timeout, request-id span, bounded drain), but
//! its responses are streamed ([`GatewayBody`](crate::GatewayBody)) where `service_kit::serve`
//! fixes the body to a full buffer. This loop goes away once the service-kit
//! server is generic over the response body.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use service_kit::{RequestId, ServerLimits};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::proxy::{boxed, Gateway};

/// Pause after a failed `accept` (for example too many open files), so the
/// loop does not spin.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// Serves `gateway` on `listener` until `shutdown` completes, then stops
/// accepting and waits up to `limits.shutdown_drain_timeout_ms` for
/// in-flight requests.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
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
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    accepted = listener.accept() => accepted.map(|a| (a, permit)),
                },
                Err(_) => break,
            },
        };
        let ((stream, peer), permit) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let gateway = gateway.clone();
        let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let gateway = gateway.clone();
            async move {
                let request_id = RequestId::from_headers(request.headers());
                let span = tracing::info_span!(
                    "request",
                    request_id = %request_id,
                    method = %request.method(),
                    path = %request.uri().path(),
                );
                let started = Instant::now();
                let response = async {
                    let idempotent = request.method().is_idempotent();
                    let handled = gateway.handle(request, &request_id, peer);
                    let response = match tokio::time::timeout(request_timeout, handled).await {
                        Ok(r) => r,
                        Err(_) => boxed(
                            service_kit::server::timed_out(idempotent).into_response(&request_id),
                        ),
                    };
                    tracing::info!(
                        status = response.status().as_u16(),
                        elapsed_us = started.elapsed().as_micros() as u64,
                        "request finished"
                    );
                    response
                }
                .instrument(span)
                .await;
                Ok::<_, Infallible>(response)
            }
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
