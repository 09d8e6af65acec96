//! The OpenAPI 3.1 document (`docs/openapi/orders.yaml`), embedded at build
//! time and served as JSON at `/openapi.json`.

use bytes::Bytes;

/// The document's YAML source.
pub const SPEC_YAML: &str = include_str!("../../../docs/openapi/orders.yaml");

/// The document as a JSON value.
///
/// # Errors
/// The YAML parser's message when the document is malformed.
pub fn document() -> Result<serde_json::Value, String> {
    serde_yaml::from_str(SPEC_YAML).map_err(|e| e.to_string())
}

/// The document as JSON bytes, ready to serve.
///
/// # Errors
/// As [`document`].
pub fn document_json() -> Result<Bytes, String> {
    serde_json::to_vec(&document()?)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// Every `(METHOD, path template)` the document describes, sorted.
///
/// # Errors
/// As [`document`].
pub fn operations() -> Result<Vec<(String, String)>, String> {
    let doc = document()?;
    let paths = doc["paths"]
        .as_object()
        .ok_or("the document has no paths")?;
    let mut ops = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().map(|m| m.keys()).into_iter().flatten() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                ops.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    ops.sort();
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::routes::ROUTES;

    /// Every route is documented and every documented operation is a route.
    #[test]
    fn routes_match_the_document() {
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.template.to_owned()))
            .collect();
        routes.sort();
        assert_eq!(operations().unwrap(), routes);
    }

    /// The list's paging bounds in the document are the server's.
    #[test]
    fn paging_bounds_match_the_document() {
        use crate::http::handlers::{PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, PAGE_MAX};
        let doc = document().unwrap();
        let params = doc["paths"]["/api/orders"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .clone();
        let schema = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["schema"].clone())
                .unwrap()
        };
        assert_eq!(schema("page")["minimum"], 1);
        assert_eq!(schema("page")["maximum"], u64::from(PAGE_MAX));
        assert_eq!(schema("limit")["maximum"], u64::from(PAGE_LIMIT_MAX));
        assert_eq!(schema("limit")["default"], u64::from(PAGE_LIMIT_DEFAULT));
    }
}
