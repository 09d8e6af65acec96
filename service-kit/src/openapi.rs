//! OpenAPI 3.1 documents: read, listed by operation, served, and (with the
//! `openapi-check` feature) checked against the code that serves them.
//!
//! The documents are JSON files in `docs/openapi/`, embedded by each server.
//! What keeps them true (ADR 0009): each server's tests hold every operation,
//! request body, response body, status and bound of its document to its route
//! table, its types and its constants, with the checks of `check` (feature `openapi-check`); and a
//! schema fuzzer runs against the served documents in CI.
//!
//! ```
//! let doc = service_kit::openapi::parse(r#"{"openapi": "3.1.0",
//!     "paths": {"/health": {"get": {"responses": {"200": {"description": "up"}}}}}}"#)
//!     .unwrap();
//! assert_eq!(
//!     service_kit::openapi::operations(&doc),
//!     vec![("GET".to_owned(), "/health".to_owned())]
//! );
//! assert!(service_kit::openapi::statuses(&doc, "GET", "/health").contains(&200));
//! ```

use std::collections::BTreeSet;

use bytes::Bytes;
use serde_json::Value;

/// The HTTP methods an OpenAPI path item can hold, lower case as in documents.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// Parses a document.
///
/// # Errors
/// The JSON parser's message, or a note that the value is not an OpenAPI 3.1
/// document.
pub fn parse(source: &str) -> Result<Value, String> {
    let doc: Value = serde_json::from_str(source).map_err(|e| e.to_string())?;
    match doc["openapi"].as_str() {
        Some(v) if v.starts_with("3.1") => Ok(doc),
        _ => Err("not an OpenAPI 3.1 document".to_owned()),
    }
}

/// The document as compact JSON bytes, ready to serve.
pub fn to_bytes(doc: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(doc).unwrap_or_default())
}

/// An embedded document's source, checked with [`parse`] and compacted with
/// [`to_bytes`]: what a server answers at `/openapi.json`.
///
/// # Errors
/// As [`parse`].
pub fn served(source: &str) -> Result<Bytes, String> {
    parse(source).map(|doc| to_bytes(&doc))
}

/// Every `(METHOD, path template)` the document describes, sorted.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flat_map(|m| m.keys()) {
            if METHODS.contains(&method.as_str()) {
                ops.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    ops.sort();
    ops
}

/// The operation object of `method` on `template` (`Value::Null` if absent).
pub fn operation<'a>(doc: &'a Value, method: &str, template: &str) -> &'a Value {
    doc["paths"]
        .get(template)
        .and_then(|item| item.get(method.to_ascii_lowercase()))
        .unwrap_or(&Value::Null)
}

/// The statuses an operation documents.
pub fn statuses(doc: &Value, method: &str, template: &str) -> BTreeSet<u16> {
    operation(doc, method, template)["responses"]
        .as_object()
        .into_iter()
        .flat_map(|r| r.keys())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Follows a local `$ref` (`#/components/...`) until a value without one.
/// Unknown references resolve to `Value::Null`.
pub fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(target) = value.get("$ref").and_then(Value::as_str) else {
            return value;
        };
        value = target
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
            .unwrap_or(&Value::Null);
    }
    value
}

#[cfg(feature = "openapi-check")]
pub mod check;
