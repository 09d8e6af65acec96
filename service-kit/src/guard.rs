//! Problems for service-guard's verdicts, the same in every server: a 401 or
//! 403 with its `WWW-Authenticate` challenge, and a 429 with `Retry-After`.

use http::{header, HeaderValue, StatusCode};
use service_guard::{AuthError, RateDecision};

use crate::Problem;

/// The problem for an authentication (401, with `WWW-Authenticate`) or
/// authorization (403) failure.
pub fn auth_problem(error: AuthError) -> Problem {
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

/// The 429 problem of a request over its budget of `decision.limit`
/// requests per minute, with `Retry-After` (the caller adds the rate-limit
/// headers of `decision` to every response of a limited route).
pub fn rate_limited(decision: &RateDecision) -> Problem {
    let after = decision.retry_after.unwrap_or(decision.reset_after);
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests",
        format!(
            "more than {} requests per minute from this client",
            decision.limit
        ),
    )
    .with_retry_after(after)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::RequestId;

    #[test]
    fn a_missing_token_is_401_with_a_challenge() {
        let resp = auth_problem(AuthError::Missing).into_response(&RequestId::parse("t").unwrap());
        assert_eq!(resp.status(), 401);
        let challenge = resp.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    }

    #[test]
    fn a_missing_role_is_403_without_a_challenge() {
        let p = auth_problem(AuthError::Forbidden);
        assert_eq!(p.status(), StatusCode::FORBIDDEN);
        let resp = p.into_response(&RequestId::parse("t").unwrap());
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn rate_limited_says_when_to_retry() {
        let decision = RateDecision {
            allowed: false,
            limit: 5,
            remaining: 0,
            reset_after: Duration::from_secs(30),
            retry_after: Some(Duration::from_millis(1_500)),
        };
        let resp = rate_limited(&decision).into_response(&RequestId::parse("t").unwrap());
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
    }
}
