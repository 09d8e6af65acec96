//! The public API as the gateway serves it: one OpenAPI 3.1 document merged
//! from the services' documents (`docs/openapi/inventory.json` and
//! `orders.json`), served at `/openapi.json`, with a small viewer at `/docs`.
//!
//! Only the operations the gateway forwards are kept. Each gets the gateway's
//! own answers: 401 at the edge where the route is not public, 429 from the
//! edge's rate limits, 413 for a body over its limit, 400 for an unclean path,
//! 502 when an upstream answers badly, 503 when it cannot be reached, 504 when
//! it does not answer in time. Components of the same name and content are
//! shared; a name the two documents use differently is prefixed with the
//! service's name.

use bytes::Bytes;
use http::Method;
use serde_json::{json, Map, Value};
use service_kit::openapi;

use crate::rules::{self, AccessRule, Target};

/// Inventory's document.
pub const INVENTORY_JSON: &str = include_str!("../../docs/openapi/inventory.json");

/// Orders' document.
pub const ORDERS_JSON: &str = include_str!("../../docs/openapi/orders.json");

/// The viewer page served at `/docs`: it reads `/openapi.json` and lists every
/// operation with its parameters, body and answers (no script from elsewhere).
pub const VIEWER_HTML: &str = include_str!("viewer.html");

/// The merged document of the public API, given the routes public at the edge.
///
/// # Errors
/// When a service's document does not parse.
pub fn document(public: &[AccessRule]) -> Result<Value, String> {
    let mut paths = own_paths();
    let mut components = Map::new();
    for (service, source) in [("Inventory", INVENTORY_JSON), ("Orders", ORDERS_JSON)] {
        let mut doc = openapi::parse(source)?;
        rename_clashes(&mut doc, &components, service);
        merge_components(&mut components, &doc["components"]);
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            if !matches!(rules::target(path), Some(Target::Proxy { .. })) {
                continue;
            }
            let mut item = item.clone();
            for (method, op) in item.as_object_mut().into_iter().flatten() {
                if openapi::METHODS.contains(&method.as_str()) {
                    at_the_edge(op, method, path, public);
                }
            }
            paths.insert(path.clone(), item);
        }
    }
    let responses = components.entry("responses").or_insert_with(|| json!({}));
    for (name, response) in gateway_responses() {
        responses[name] = response;
    }
    components.entry("schemas").or_insert_with(|| json!({}))["GatewayHealth"] = health_schema();
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "shop API (through the gateway)",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "Orders, the product catalog and inventory, behind one edge.",
            "description": "The public API: every operation the gateway forwards to the orders and \
                inventory services, with the gateway's own answers added (401 at the edge, 429, \
                502, 503, 504). Errors are RFC 9457 `application/problem+json` bodies with a \
                stable `code` and the `request_id` (also in `X-Request-Id`). The services' own \
                documents are at their `/openapi.json`."
        },
        // Relative: the API is wherever this document was fetched from.
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": components,
    }))
}

/// The merged document as JSON bytes, ready to serve.
///
/// # Errors
/// As [`document`].
pub fn document_json(public: &[AccessRule]) -> Result<Bytes, String> {
    document(public).map(|d| openapi::to_bytes(&d))
}

fn problem(description: &str, codes: &[&str], retry_after: bool) -> Value {
    let mut schema = json!({"$ref": "#/components/schemas/Problem"});
    if !codes.is_empty() {
        schema["properties"] = json!({"code": {"enum": codes}});
    }
    let mut r = json!({
        "description": description,
        "content": {"application/problem+json": {"schema": schema}}
    });
    if retry_after {
        r["headers"] = json!({"Retry-After": {
            "description": "Whole seconds to wait before retrying.",
            "schema": {"type": "integer", "minimum": 1}
        }});
    }
    r
}

fn gateway_responses() -> Vec<(&'static str, Value)> {
    vec![
        (
            "GatewayBadGateway",
            problem(
                "The service answered with something that is not HTTP (`bad_gateway`).",
                &["bad_gateway"],
                false,
            ),
        ),
        (
            "GatewayUnavailable",
            problem(
                "The service cannot be reached (`upstream_unavailable`), or it is \
                 unavailable itself (its own 503: `request_timeout`, `store_unavailable`, \
                 `overloaded`, `contention`, `inventory_unavailable` ...). Retry after \
                 `Retry-After` seconds.",
                &[],
                false,
            ),
        ),
        (
            "GatewayTimeout",
            problem(
                "No answer in time: the gateway's (`upstream_timeout`) or the service's \
                 (`outcome_unknown`). A write may or may not have been applied: repeat it \
                 with the same `Idempotency-Key`, or read the state.",
                &["upstream_timeout", "outcome_unknown"],
                false,
            ),
        ),
        (
            "GatewayRateLimited",
            problem(
                "Over a budget of the edge (per client IP and per user) or of the service \
                 (`rate_limited`); retry after `Retry-After` seconds.",
                &["rate_limited"],
                true,
            ),
        ),
    ]
}

/// Adds the gateway's answers to one forwarded operation.
fn at_the_edge(op: &mut Value, method: &str, path: &str, public: &[AccessRule]) {
    let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap_or(Method::GET);
    // A route is public at the edge when a rule matches its template (a
    // `{name}` segment stands for any one segment).
    let is_public = public.iter().any(|rule| rule.matches(&m, path));
    let responses = &mut op["responses"];
    let reference = |name: &str| json!({"$ref": format!("#/components/responses/{name}")});
    let unauthorized = || reference("Unauthorized");
    if !is_public && responses.get("401").is_none() {
        responses["401"] = unauthorized();
        op["security"] = json!([{"bearer": []}]);
    }
    let responses = &mut op["responses"];
    if responses.get("400").is_none() {
        responses["400"] = reference("Problem");
    }
    responses["429"] = reference("GatewayRateLimited");
    responses["502"] = reference("GatewayBadGateway");
    responses["503"] = reference("GatewayUnavailable");
    responses["504"] = reference("GatewayTimeout");
    if op.get("requestBody").is_some() && op["responses"].get("413").is_none() {
        op["responses"]["413"] = reference("PayloadTooLarge");
    }
    if let Some(sorted) = op["responses"].as_object().map(|r| {
        let mut v: Vec<(String, Value)> = r.clone().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().collect::<Map<String, Value>>()
    }) {
        op["responses"] = Value::Object(sorted);
    }
}

/// Renames, in `doc`, every component whose name `merged` already holds with
/// other content, to `{service}{Name}`, and rewrites the references to it.
fn rename_clashes(doc: &mut Value, merged: &Map<String, Value>, service: &str) {
    let mut renames = Vec::new();
    for (kind, entries) in doc["components"].as_object().into_iter().flatten() {
        for (name, value) in entries.as_object().into_iter().flatten() {
            match merged.get(kind).and_then(|k| k.get(name)) {
                Some(existing) if existing != value => renames.push((
                    format!("#/components/{kind}/{name}"),
                    format!("#/components/{kind}/{service}{name}"),
                    kind.clone(),
                    name.clone(),
                )),
                _ => {}
            }
        }
    }
    for (from, to, kind, name) in renames {
        rewrite_refs(doc, &from, &to);
        if let Some(entries) = doc["components"][&kind].as_object_mut() {
            if let Some(value) = entries.remove(&name) {
                entries.insert(format!("{service}{name}"), value);
            }
        }
    }
}

fn rewrite_refs(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k == "$ref" && v == from {
                    *v = json!(to);
                } else {
                    rewrite_refs(v, from, to);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| rewrite_refs(v, from, to)),
        _ => {}
    }
}

fn merge_components(merged: &mut Map<String, Value>, components: &Value) {
    for (kind, entries) in components.as_object().into_iter().flatten() {
        let target = merged.entry(kind.clone()).or_insert_with(|| json!({}));
        for (name, value) in entries.as_object().into_iter().flatten() {
            target[name] = value.clone();
        }
    }
}

/// The body of the gateway's `/health` (see `health.rs`).
fn health_schema() -> Value {
    json!({
        "type": "object",
        "required": ["status", "upstreams"],
        "properties": {
            "status": {"enum": ["ok", "degraded"]},
            "upstreams": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "ready"],
                "properties": {
                    "name": {"enum": ["orders", "inventory"]},
                    "ready": {"type": "boolean"},
                    "status": {"type": "integer", "description": "The service's readiness status, when it answered."},
                    "error": {"type": "string", "description": "Why it could not be asked."}
                }
            }}
        }
    })
}

/// The gateway's own routes.
fn own_paths() -> Map<String, Value> {
    let text = |description: &str, media: &str| json!({"description": description, "content": {media: {"schema": {"type": "string"}}}});
    let mut paths = Map::new();
    paths.insert(
        "/health".into(),
        json!({"get": {
            "summary": "The gateway and each service's readiness",
            "responses": {
                "200": {"description": "Every service is ready.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GatewayHealth"}}}},
                "429": {"$ref": "#/components/responses/GatewayRateLimited"},
                "503": {"description": "A service is not ready (named in `services`).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GatewayHealth"}}}}
            }
        }}),
    );
    paths.insert(
        "/health/ready".into(),
        json!({"get": {"summary": "The gateway's own readiness", "responses": {"200": {
            "description": "Ready.",
            "content": {"application/json": {"schema": {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["ready"]}}}}}
        }}}}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {"summary": "Prometheus / OpenMetrics text exposition of the gateway", "responses": {
            "200": text("Metrics.", "application/openmetrics-text")
        }}}),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"summary": "This document", "responses": {"200": {
            "description": "The merged OpenAPI document of the public API.",
            "content": {"application/json": {"schema": {"type": "object"}}}
        }}}}),
    );
    paths.insert(
        "/docs".into(),
        json!({"get": {"summary": "A page that shows this document", "responses": {
            "200": text("The viewer.", "text/html")
        }}}),
    );
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::DEFAULT_PUBLIC_ROUTES;

    fn public() -> Vec<AccessRule> {
        DEFAULT_PUBLIC_ROUTES
            .iter()
            .map(|r| r.parse().unwrap())
            .collect()
    }

    /// Every operation a service documents under a forwarded prefix is in the
    /// merged document, and nothing else but the gateway's own routes.
    #[test]
    fn every_forwarded_operation_is_documented() {
        let merged = document(&public()).unwrap();
        let ops = openapi::operations(&merged);
        let mut want: Vec<(String, String)> = Vec::new();
        for source in [INVENTORY_JSON, ORDERS_JSON] {
            let doc = openapi::parse(source).unwrap();
            want.extend(
                openapi::operations(&doc)
                    .into_iter()
                    .filter(|(_, p)| matches!(rules::target(p), Some(Target::Proxy { .. }))),
            );
        }
        for own in [
            "/docs",
            "/health",
            "/health/ready",
            "/metrics",
            "/openapi.json",
        ] {
            want.push(("GET".into(), own.into()));
        }
        want.sort();
        assert_eq!(ops, want);
    }

    /// Every forwarded operation documents the gateway's answers, and a route
    /// that is not public at the edge documents its 401 and its token.
    #[test]
    fn the_gateway_answers_are_documented() {
        let merged = document(&public()).unwrap();
        for (method, path) in openapi::operations(&merged) {
            if !path.starts_with("/api/") {
                continue;
            }
            let statuses = openapi::statuses(&merged, &method, &path);
            for status in [429, 502, 503, 504] {
                assert!(statuses.contains(&status), "{method} {path}: {status}");
            }
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let is_public = public().iter().any(|r| r.matches(&m, &path));
            assert_eq!(statuses.contains(&401), !is_public, "{method} {path}");
        }
    }

    /// Every reference of the merged document resolves.
    #[test]
    fn every_reference_resolves() {
        fn walk(doc: &Value, v: &Value, bad: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        if openapi::resolve(doc, v).is_null() {
                            bad.push(r.clone());
                        }
                    }
                    m.values().for_each(|x| walk(doc, x, bad));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(doc, x, bad)),
                _ => {}
            }
        }
        let merged = document(&public()).unwrap();
        let mut bad = Vec::new();
        walk(&merged, &merged, &mut bad);
        assert_eq!(bad, Vec::<String>::new());
    }

    /// A component two services name alike with different content is kept
    /// twice, the second under its service's prefix, and its references follow.
    #[test]
    fn clashing_components_are_renamed() {
        let mut merged = Map::new();
        merged.insert("schemas".into(), json!({"Problem": {"type": "object"}}));
        let mut doc = json!({"components": {"schemas": {"Problem": {"type": "string"}}},
            "paths": {"/x": {"get": {"responses": {"400": {"$ref": "#/components/schemas/Problem"}}}}}});
        rename_clashes(&mut doc, &merged, "Orders");
        assert!(doc["components"]["schemas"]["OrdersProblem"].is_object());
        assert_eq!(
            doc["paths"]["/x"]["get"]["responses"]["400"]["$ref"],
            "#/components/schemas/OrdersProblem"
        );
    }
}
