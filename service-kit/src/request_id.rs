//! Request ids: accepted from `X-Request-Id` when sane, generated otherwise,
//! echoed on the response and recorded on the request's tracing span.

use std::fmt;

use http::{HeaderMap, HeaderName};

/// The header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id accepted from a client, in bytes. Longer ones are
/// replaced: they end up in every log line of the request.
pub const REQUEST_ID_LEN_MAX: usize = 128;

/// The id of one request: 1 to [`REQUEST_ID_LEN_MAX`] characters from
/// `[A-Za-z0-9._:-]`, so it is safe in headers, JSON and logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Validates a client-supplied id.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= REQUEST_ID_LEN_MAX
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        ok.then(|| Self(value.to_owned()))
    }

    /// A fresh random id (a UUID v4).
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The id from `X-Request-Id` if it is sane, else a fresh one.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(Self::generate)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// Sane ids are kept; unsafe or oversized ones are replaced by a UUID.
    #[test]
    fn accepts_sane_and_replaces_the_rest() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("req-1.a_b:c"));
        assert_eq!(RequestId::from_headers(&h).as_str(), "req-1.a_b:c");
        for bad in [
            "",
            "has space",
            "quote\"",
            &"x".repeat(REQUEST_ID_LEN_MAX + 1),
        ] {
            assert!(RequestId::parse(bad).is_none(), "{bad}");
        }
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("a b"));
        let generated = RequestId::from_headers(&h);
        assert!(uuid::Uuid::parse_str(generated.as_str()).is_ok());
    }
}
