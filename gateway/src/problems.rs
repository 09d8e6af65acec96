//! The problems the gateway answers with itself, beyond service-kit's auth
//! and rate-limit problems: oversized bodies and upstream failures
//! (unreachable 503, timeout 504, invalid answer or untrusted TLS
//! certificate 502).

use std::time::Duration;

use http::StatusCode;
use service_kit::Problem;

use crate::rules::Upstream;

/// `Retry-After` sent with a 503 for an unreachable upstream, in milliseconds.
pub const UPSTREAM_RETRY_AFTER_MS: u64 = 1_000;

pub(crate) fn too_large(limit: u64) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "Payload too large",
        format!("the request body is larger than {limit} bytes"),
    )
}

pub(crate) fn upstream_error(
    upstream: Upstream,
    error: &hyper_util::client::legacy::Error,
    body_limit: u64,
) -> Problem {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return too_large(body_limit);
        }
        source = e.source();
    }
    if service_guard::tls::is_tls_error(error) {
        // The upstream answered but is not a server this gateway trusts (a
        // certificate of an unknown CA, or for another name): a
        // configuration error, not an outage, so no Retry-After.
        tracing::error!(upstream = upstream.name(), error = ?error, "upstream tls handshake failed");
        return Problem::new(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            "Bad gateway",
            format!(
                "the {} service's TLS certificate is not trusted",
                upstream.name()
            ),
        );
    }
    if error.is_connect() {
        tracing::warn!(upstream = upstream.name(), error = %error, "upstream unreachable");
        return Problem::unavailable(
            "upstream_unavailable",
            format!("the {} service is unavailable", upstream.name()),
            Duration::from_millis(UPSTREAM_RETRY_AFTER_MS),
        );
    }
    tracing::warn!(upstream = upstream.name(), error = %error, "upstream request failed");
    Problem::new(
        StatusCode::BAD_GATEWAY,
        "bad_gateway",
        "Bad gateway",
        format!(
            "the {} service did not return a valid response",
            upstream.name()
        ),
    )
}
