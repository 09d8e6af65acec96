//! The OpenAPI 3.1 document (`docs/openapi/inventory.yaml`), embedded at build
//! time and served as JSON at `/openapi.json`.

use bytes::Bytes;

/// The document's YAML source.
pub const SPEC_YAML: &str = include_str!("../../docs/openapi/inventory.yaml");

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
    let value = document()?;
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// Every `(METHOD, path template)` the document describes.
///
/// # Errors
/// As [`document`].
pub fn operations() -> Result<Vec<(String, String)>, String> {
    let doc = document()?;
    let mut ops = Vec::new();
    let paths = doc["paths"]
        .as_object()
        .ok_or("the document has no paths")?;
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for method in item.keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
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
    use crate::routes::ROUTES;

    /// Every route of the router has an entry in the document, and every
    /// entry of the document is a route of the router.
    #[test]
    fn document_and_route_table_agree() {
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.template.to_owned()))
            .collect();
        routes.sort();
        let documented = operations().unwrap();
        let missing: Vec<_> = routes.iter().filter(|r| !documented.contains(r)).collect();
        let extra: Vec<_> = documented.iter().filter(|d| !routes.contains(d)).collect();
        assert!(
            missing.is_empty(),
            "routes without a spec entry: {missing:?}"
        );
        assert!(extra.is_empty(), "spec entries without a route: {extra:?}");
    }

    /// The document is OpenAPI 3.1 and serializes to JSON.
    #[test]
    fn document_is_openapi_3_1() {
        assert_eq!(document().unwrap()["openapi"], "3.1.0");
        assert!(!document_json().unwrap().is_empty());
    }
}
