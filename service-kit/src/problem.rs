//! RFC 9457 problem details: the one error body every server returns.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::request_id::RequestId;
use crate::Body;

/// The media type of a problem body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Prefix of the `type` URI of every problem; the stable `code` follows it.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:problem-type:";

/// An RFC 9457 problem: a status, a stable snake_case `code` clients branch on,
/// a short `title` and a `detail` saying what is wrong with this request.
///
/// Build one with [`Problem::new`] or a shorthand, then turn it into a response
/// with [`Problem::into_response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    retry_after: Option<Duration>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    request_id: &'a str,
}

impl Problem {
    /// A problem with the given status, stable code, title and detail.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// 400 with code `invalid_request` (or another code for a more precise cause).
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, "Bad request", detail)
    }

    /// 404 for a path no route matches.
    pub fn route_not_found(path: &str) -> Self {
        let shown: String = path.chars().take(200).collect();
        Self::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "Not found",
            format!("no route matches {shown}"),
        )
    }

    /// 405 naming the methods the path allows (also set as the `Allow` header).
    pub fn method_not_allowed(allowed: &[&str]) -> Self {
        let allow = allowed.join(", ");
        let mut p = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            format!("this route allows {allow}"),
        );
        if let Ok(v) = HeaderValue::from_str(&allow) {
            p.headers.push((header::ALLOW, v));
        }
        p
    }

    /// 500 with a fixed detail: internals go to the log, never to the client.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
            "the server failed to handle the request; it has been logged",
        )
    }

    /// 503: a dependency is down or overloaded; retry after `retry_after`.
    pub fn unavailable(
        code: &'static str,
        detail: impl Into<String>,
        retry_after: Duration,
    ) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "Service unavailable",
            detail,
        )
        .with_retry_after(retry_after)
    }

    /// Adds a `Retry-After` header (whole seconds, rounded up, at least one).
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Adds a response header (for example `WWW-Authenticate` or rate-limit headers).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The detail text.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The `problem+json` response for the request `request_id`.
    pub fn into_response(self, request_id: &RequestId) -> Response<Body> {
        let body = ProblemBody {
            type_: format!("{PROBLEM_TYPE_PREFIX}{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            request_id: request_id.as_str(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(Body::new(Bytes::from(bytes)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up: retrying early would only be refused again.
            let secs = after.as_millis().div_ceil(1000).max(1);
            let secs = u64::try_from(secs).unwrap_or(u64::MAX);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A problem renders every RFC 9457 member plus `code` and `request_id`.
    #[tokio::test]
    async fn renders_all_members() {
        let id = RequestId::parse("abc-123").unwrap();
        let resp = Problem::unavailable("store_unavailable", "down", Duration::from_millis(10))
            .into_response(&id);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "urn:problem-type:store_unavailable");
        assert_eq!(v["status"], 503);
        assert_eq!(v["code"], "store_unavailable");
        assert_eq!(v["detail"], "down");
        assert_eq!(v["request_id"], "abc-123");
        assert_eq!(v["title"], "Service unavailable");
    }

    /// 405 carries the `Allow` header.
    #[test]
    fn method_not_allowed_sets_allow() {
        let resp =
            Problem::method_not_allowed(&["GET", "PUT"]).into_response(&RequestId::generate());
        assert_eq!(resp.headers()[header::ALLOW], "GET, PUT");
    }
}
