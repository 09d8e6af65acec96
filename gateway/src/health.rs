//! `GET /health`: the gateway is up, and how each upstream's readiness probe
//! (`/health/ready`, bounded by the health timeout) answered.

use http::{Response, StatusCode};
use serde::Serialize;

use crate::proxy::Gateway;
use crate::rules::Upstream;

/// One upstream's readiness as reported.
#[derive(Debug, Serialize)]
struct UpstreamHealth {
    name: &'static str,
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct Report {
    status: &'static str,
    upstreams: Vec<UpstreamHealth>,
}

/// Probes every upstream at once; 200 with `status: ok` when all are ready,
/// else 503 with `status: degraded`. Either way the body lists each upstream.
pub(crate) async fn report(gateway: &Gateway) -> Response<service_kit::Body> {
    let (orders, inventory) = tokio::join!(
        gateway.probe(Upstream::Orders),
        gateway.probe(Upstream::Inventory)
    );
    let upstreams: Vec<UpstreamHealth> = Upstream::ALL
        .into_iter()
        .zip([orders, inventory])
        .map(|(upstream, probe)| match probe {
            Ok(status) => UpstreamHealth {
                name: upstream.name(),
                ready: status.is_success(),
                status: Some(status.as_u16()),
                error: None,
            },
            Err(error) => UpstreamHealth {
                name: upstream.name(),
                ready: false,
                status: None,
                error: Some(error),
            },
        })
        .collect();
    let all_ready = upstreams.iter().all(|u| u.ready);
    let (status, text) = if all_ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    };
    service_kit::response::json(
        status,
        &Report {
            status: text,
            upstreams,
        },
    )
}
