//! The problems the gateway answers with itself: authentication and
//! authorization failures, rate limits, oversized bodies, and upstream
//! failures (unreachable 503, timeout 504, invalid answer 502).

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::StatusCode;
use service_guard::{AuthError, RateDecision};
use service_kit::Problem;

use crate::rules::Upstream;

/// `Retry-After` sent with a 503 for an unreachable upstream, in milliseconds.
pub const UPSTREAM_RETRY_AFTER_MS: u64 = 1_000;

/// 429 with the rate-limit headers and `Retry-After` of a denied decision.
pub(crate) fn rate_limited(decision: &RateDecision) -> Problem {
    let mut problem = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests",
        "the request rate limit is exceeded; retry after the time in Retry-After",
    );
    for (name, value) in decision.headers() {
        problem = problem.with_header(name, value);
    }
    problem
}

pub(crate) fn auth_problem(error: AuthError) -> Problem {
    let title = if error.status() == StatusCode::FORBIDDEN {
        "Forbidden"
    } else {
        "Unauthorized"
    };
    let mut problem = Problem::new(error.status(), error.code(), title, error.to_string());
    if let Some(challenge) = error
        .www_authenticate()
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        problem = problem.with_header(header::WWW_AUTHENTICATE, challenge);
    }
    problem
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::RequestId;

    /// A rejected token maps to a 401 problem with its challenge; a role
    /// failure to a 403 without one.
    #[test]
    fn auth_problems() {
        let p = auth_problem(AuthError::Expired);
        assert_eq!(
            (p.status(), p.code()),
            (StatusCode::UNAUTHORIZED, "token_expired")
        );
        let r = p.into_response(&RequestId::generate());
        assert!(r.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let p = auth_problem(AuthError::Forbidden);
        assert_eq!(p.status(), StatusCode::FORBIDDEN);
        assert!(!p
            .into_response(&RequestId::generate())
            .headers()
            .contains_key(header::WWW_AUTHENTICATE));
    }

    /// A denied decision becomes a 429 carrying Retry-After.
    #[test]
    fn rate_limited_problem() {
        let decision = RateDecision {
            allowed: false,
            limit: 2,
            remaining: 0,
            reset_after: Duration::from_secs(30),
            retry_after: Some(Duration::from_millis(1_500)),
        };
        let r = rate_limited(&decision).into_response(&RequestId::generate());
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
