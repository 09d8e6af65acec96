//! Builders for successful JSON and text responses.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::Body;

/// A JSON response with the given status.
///
/// Serialization of the workspace's own response types cannot fail; should it,
/// the response is an empty 500 and the cause is logged.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => bytes_with_type(status, Bytes::from(bytes), "application/json"),
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// A response with a body of the given media type.
pub fn bytes_with_type(
    status: StatusCode,
    bytes: Bytes,
    content_type: &'static str,
) -> Response<Body> {
    let mut resp = Response::new(Body::new(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A response without a body.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = status;
    resp
}
