//! [`RateDecision`]: the outcome of one check and the response headers that report it.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// `RateLimit-Limit` (IETF httpapi rate-limit headers draft).
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`: seconds until the full budget is back.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
/// `X-RateLimit-Limit`, the older spelling many clients still read.
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`.
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Whether one request may proceed, and what to tell the client about its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// The request may proceed.
    pub allowed: bool,
    /// Requests allowed per window.
    pub limit: u32,
    /// Requests still allowed right now, after this one.
    pub remaining: u32,
    /// Time until the full budget is available again.
    pub reset_after: Duration,
    /// When denied: time until the next request will be allowed.
    pub retry_after: Option<Duration>,
}

impl RateDecision {
    /// The rate-limit response headers: `RateLimit-Limit`, `-Remaining`, `-Reset`, the
    /// same three as `X-RateLimit-*`, and `Retry-After` (whole seconds, at least 1)
    /// when denied.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let reset = ceil_secs(self.reset_after);
        let mut headers = Vec::with_capacity(7);
        for (name, value) in [
            (RATELIMIT_LIMIT, u64::from(self.limit)),
            (RATELIMIT_REMAINING, u64::from(self.remaining)),
            (RATELIMIT_RESET, reset),
            (X_RATELIMIT_LIMIT, u64::from(self.limit)),
            (X_RATELIMIT_REMAINING, u64::from(self.remaining)),
            (X_RATELIMIT_RESET, reset),
        ] {
            headers.push((name, HeaderValue::from(value)));
        }
        if !self.allowed {
            let retry = self.retry_after.map_or(1, ceil_secs).max(1);
            headers.push((http::header::RETRY_AFTER, HeaderValue::from(retry)));
        }
        headers
    }
}

/// Whole seconds, rounded up: a client that waits this long is never early.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(h: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
        h.iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn allowed_decision_has_budget_headers_and_no_retry_after() {
        let d = RateDecision {
            allowed: true,
            limit: 100,
            remaining: 99,
            reset_after: Duration::from_millis(600),
            retry_after: None,
        };
        let h = d.headers();
        assert_eq!(header(&h, "ratelimit-limit"), Some("100"));
        assert_eq!(header(&h, "ratelimit-remaining"), Some("99"));
        assert_eq!(header(&h, "ratelimit-reset"), Some("1"));
        assert_eq!(header(&h, "x-ratelimit-remaining"), Some("99"));
        assert_eq!(header(&h, "retry-after"), None);
    }

    #[test]
    fn denied_decision_rounds_retry_after_up() {
        let d = RateDecision {
            allowed: false,
            limit: 5,
            remaining: 0,
            reset_after: Duration::from_millis(60_000),
            retry_after: Some(Duration::from_millis(11_200)),
        };
        let h = d.headers();
        assert_eq!(header(&h, "retry-after"), Some("12"));
        assert_eq!(header(&h, "ratelimit-reset"), Some("60"));
        assert_eq!(header(&h, "ratelimit-remaining"), Some("0"));
    }
}
