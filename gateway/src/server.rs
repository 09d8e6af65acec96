//! The gateway's accept loop: service-kit's ([`service_kit::serve`]), with the
//! same limits and shutdown as every server, over streamed bodies
//! ([`GatewayBody`](crate::GatewayBody)).

use std::future::Future;
use std::sync::Arc;

use service_kit::ServerLimits;
use tokio::net::TcpListener;

use crate::proxy::Gateway;

/// Serves `gateway` on `listener` until `shutdown` completes, then stops
/// accepting and waits up to `limits.shutdown_drain_timeout_ms` for
/// in-flight requests.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    service_kit::serve(listener, gateway, limits, shutdown).await;
}
