//! Checks of a document against the code that serves it, for the servers'
//! tests (feature `openapi-check`): statuses from the route table's facts,
//! request bodies against the types that parse them, response bodies against
//! the types that render them, field by field.
//!
//! Each check returns what disagrees, as readable lines; an empty list means
//! the document and the code agree.
//!
//! ```
//! use serde_json::json;
//! use service_kit::openapi::check;
//!
//! let doc = json!({"openapi": "3.1.0", "paths": {}, "components": {"schemas": {
//!     "Item": {"type": "object", "required": ["id"],
//!              "properties": {"id": {"type": "string", "format": "uuid"}}}}}});
//! let item = json!({"$ref": "#/components/schemas/Item"});
//! // A value the code renders, held to the schema made strict: an extra field is a finding.
//! let rendered = json!({"id": "6f0e1c52-2f43-4d1c-9a35-1b7c6b8f6a11", "extra": 1});
//! assert_eq!(check::response_mismatches(&doc, &item, &rendered).len(), 1);
//! ```

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::{operation, resolve, statuses};

/// What the code knows about one route, from which the statuses it must
/// document follow (see [`expected_statuses`]).
#[derive(Clone, Copy, Debug)]
pub struct RouteFacts<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path template; each `{name}` segment is parsed as an id (400 when malformed).
    pub template: &'a str,
    /// A bearer token is required (401).
    pub authenticated: bool,
    /// Only some roles may call it (403).
    pub role_limited: bool,
    /// Requests count against the caller's rate limit (429).
    pub rate_limited: bool,
    /// It reaches a store or another service, so it may run out of time or
    /// find it down (503 when safe to repeat, else 504 `outcome_unknown`).
    pub reaches_out: bool,
}

impl<'a> RouteFacts<'a> {
    /// The facts of a route table's row: a token and a role are needed unless
    /// the row `is_public`; routes under `/api/` reach a store or a service.
    pub fn of<I, A>(
        route: &'a crate::routing::Route<I, A>,
        is_public: impl Fn(&A) -> bool,
    ) -> Self {
        let public = is_public(&route.access);
        Self {
            method: route.method,
            template: route.template,
            authenticated: !public,
            role_limited: !public,
            rate_limited: route.rate_limited,
            reaches_out: route.template.starts_with("/api/"),
        }
    }
}

/// The statuses a route with these facts can answer, whatever its handler does:
/// 400 for a malformed path id or body, 401, 403, 413 and 415 for a JSON body,
/// 429, and 503 or 504 when what it reaches is slow or down.
pub fn expected_statuses(facts: &RouteFacts<'_>, json_body: bool) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    if facts.template.contains('{') || json_body {
        out.insert(400);
    }
    if facts.authenticated {
        out.insert(401);
    }
    if facts.role_limited {
        out.insert(403);
    }
    if json_body {
        out.extend([413, 415]);
    }
    if facts.rate_limited {
        out.insert(429);
    }
    if facts.reaches_out {
        out.insert(if facts.method == "POST" || facts.method == "PATCH" {
            504
        } else {
            503
        });
    }
    out
}

/// The JSON schema of an operation's request body (`None` without one).
pub fn request_schema<'a>(doc: &'a Value, method: &str, template: &str) -> Option<&'a Value> {
    let body = resolve(doc, &operation(doc, method, template)["requestBody"]);
    body.pointer("/content/application~1json/schema")
}

/// Routes whose documented statuses lack one their facts imply, one line each.
pub fn missing_statuses(doc: &Value, routes: &[RouteFacts<'_>]) -> Vec<String> {
    let mut out = Vec::new();
    for facts in routes {
        let json_body = request_schema(doc, facts.method, facts.template).is_some();
        let documented = statuses(doc, facts.method, facts.template);
        for status in expected_statuses(facts, json_body) {
            if !documented.contains(&status) {
                out.push(format!(
                    "{} {}: {status} is not documented",
                    facts.method, facts.template
                ));
            }
        }
        // Every operation's security must say whether it needs a token.
        let security = &operation(doc, facts.method, facts.template)["security"];
        let documented_auth = security.as_array().is_some_and(|s| !s.is_empty())
            || (security.is_null() && doc["security"].as_array().is_some_and(|s| !s.is_empty()));
        if documented_auth != facts.authenticated {
            out.push(format!(
                "{} {}: the document says a token is {}needed",
                facts.method,
                facts.template,
                if documented_auth { "" } else { "not " }
            ));
        }
    }
    out
}

/// The problem codes the document names: the snake_case words of its
/// `Problem` schema's `code` description (where each document lists them).
pub fn documented_codes(doc: &Value) -> BTreeSet<String> {
    doc.pointer("/components/schemas/Problem/properties/code/description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Validates `instance` against `schema` (a schema of the document, usually a
/// `$ref`) made strict: every object schema that lists properties and says
/// nothing of others refuses others. Returns the validator's findings.
pub fn validation_errors(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let mut root = match schema {
        Value::Object(m) => m.clone(),
        other => return vec![format!("not a schema: {other}")],
    };
    let mut components = doc["components"].clone();
    strict(&mut components);
    let mut own = Value::Object(std::mem::take(&mut root));
    strict(&mut own);
    let Value::Object(mut root) = own else {
        unreachable!("an object stays an object")
    };
    root.insert("components".to_owned(), components);
    root.insert(
        "$schema".to_owned(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    let root = Value::Object(root);
    let validator = match jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
    {
        Ok(v) => v,
        Err(e) => return vec![format!("the schema does not compile: {e}")],
    };
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Findings for a value the code renders as a response: what the strict
/// schema refuses, and every documented property the value lacks (render the
/// fullest value: every optional field set).
pub fn response_mismatches(doc: &Value, schema: &Value, rendered: &Value) -> Vec<String> {
    let mut out = validation_errors(doc, schema, rendered);
    absent_properties(doc, schema, rendered, "", &mut out);
    out
}

fn absent_properties(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), value.as_object()) {
        for (name, sub) in props {
            match obj.get(name) {
                Some(v) => absent_properties(doc, sub, v, &format!("{at}/{name}"), out),
                None => out.push(format!("{at}/{name} is documented but not rendered")),
            }
        }
    }
    if let (Some(items), Some(first)) = (
        schema.get("items"),
        value.as_array().and_then(|a| a.first()),
    ) {
        absent_properties(doc, items, first, &format!("{at}/0"), out);
    }
}

/// A value the schema accepts with every property present: `examples`,
/// `default`, `const` or `enum` when given, else the smallest value its type
/// and bounds allow (a UUID or an RFC 3339 time for those formats).
pub fn example(doc: &Value, schema: &Value) -> Value {
    let s = resolve(doc, schema);
    if let Some(v) = s["examples"].get(0).or(s.get("default")).or(s.get("const")) {
        return v.clone();
    }
    if let Some(v) = s["enum"].get(0) {
        return v.clone();
    }
    match type_of(s) {
        "object" => {
            let props = s["properties"].as_object().into_iter().flatten();
            Value::Object(props.map(|(k, v)| (k.clone(), example(doc, v))).collect())
        }
        "array" => {
            let n = s["minItems"].as_u64().unwrap_or(1).max(1);
            Value::Array((0..n).map(|_| example(doc, &s["items"])).collect())
        }
        "integer" | "number" => {
            let low = s["minimum"].as_i64().unwrap_or(1);
            let forbidden = s.pointer("/not/const").and_then(Value::as_i64);
            json!(if forbidden == Some(low) { low + 1 } else { low })
        }
        "boolean" => json!(true),
        _ => match s["format"].as_str() {
            Some("uuid") => json!("6f0e1c52-2f43-4d1c-9a35-1b7c6b8f6a11"),
            Some("date-time") => json!("2026-01-01T00:00:00Z"),
            _ => {
                let n = usize::try_from(s["minLength"].as_u64().unwrap_or(1)).unwrap_or(1);
                json!("x".repeat(n.max(1)))
            }
        },
    }
}

fn type_of(schema: &Value) -> &str {
    match &schema["type"] {
        Value::String(t) => t,
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "",
    }
}

/// A value of another JSON type than the schema's.
fn wrong_type(schema: &Value) -> Value {
    match type_of(schema) {
        "string" => json!(7),
        "array" => json!({}),
        "object" => json!([]),
        _ => json!("not of the documented type"),
    }
}

/// Findings for a request body schema against the code that parses it
/// (`parse` returns `Err` when the code refuses the bytes): the fullest
/// example must be accepted; leaving out a property must be refused exactly
/// when the document requires it; a property of the wrong JSON type and, where
/// the document forbids others, an unknown property must be refused. Nested
/// objects (and the first item of arrays) are checked the same way.
pub fn request_mismatches(
    doc: &Value,
    schema: &Value,
    parse: &dyn Fn(&[u8]) -> Result<(), String>,
) -> Vec<String> {
    let full = example(doc, schema);
    let mut out = Vec::new();
    let accepts = |v: &Value| parse(&serde_json::to_vec(v).unwrap_or_default());
    if let Err(e) = accepts(&full) {
        out.push(format!("the documented example {full} is refused: {e}"));
        return out;
    }
    let mut objects = Vec::new();
    object_schemas(doc, schema, &full, String::new(), &mut objects);
    for (at, s) in objects {
        let required: BTreeSet<&str> = s["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (name, sub) in s["properties"].as_object().into_iter().flatten() {
            let mut without = full.clone();
            if let Some(Value::Object(m)) = without.pointer_mut(&at) {
                m.remove(name);
            }
            match (required.contains(name.as_str()), accepts(&without)) {
                (true, Ok(())) => out.push(format!("{at}/{name} is required but may be left out")),
                (false, Err(e)) => {
                    out.push(format!("{at}/{name} is optional but is required: {e}"))
                }
                _ => {}
            }
            let mut wrong = full.clone();
            if let Some(Value::Object(m)) = wrong.pointer_mut(&at) {
                m.insert(name.clone(), wrong_type(resolve(doc, sub)));
            }
            if accepts(&wrong).is_ok() {
                out.push(format!("{at}/{name} of another type is accepted"));
            }
        }
        if s["additionalProperties"] == json!(false) {
            let mut extra = full.clone();
            if let Some(Value::Object(m)) = extra.pointer_mut(&at) {
                m.insert("undocumented_property".to_owned(), json!(1));
            }
            if accepts(&extra).is_ok() {
                out.push(format!("{at}: an undocumented property is accepted"));
            }
        }
    }
    out
}

/// How a server parses one request body: `Err` when its code refuses the bytes.
pub type Parse = fn(&[u8]) -> Result<(), String>;

/// A [`Parse`] through the servers' own JSON body parser into `T`.
pub fn parses<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(), String> {
    crate::body::parse_json::<T>(bytes)
        .map(drop)
        .map_err(|p| p.to_string())
}

/// [`request_mismatches`] for every operation of the document, given how the
/// code parses each body (`(METHOD, template, parse)`); a body documented but
/// not parsed, or parsed but not documented, is a finding too.
pub fn request_bodies_mismatches(doc: &Value, bodies: &[(&str, &str, Parse)]) -> Vec<String> {
    let mut out = Vec::new();
    for (method, template) in super::operations(doc) {
        let schema = request_schema(doc, &method, &template);
        let parse = bodies
            .iter()
            .find(|(m, t, _)| *m == method && *t == template)
            .map(|b| b.2);
        match (schema, parse) {
            (Some(schema), Some(parse)) => out.extend(
                request_mismatches(doc, schema, &parse)
                    .into_iter()
                    .map(|f| format!("{method} {template}: {f}")),
            ),
            (None, None) => {}
            (Some(_), None) => out.push(format!(
                "{method} {template}: a documented body no type parses"
            )),
            (None, Some(_)) => out.push(format!(
                "{method} {template}: a parsed body is not documented"
            )),
        }
    }
    out
}

/// [`response_mismatches`] for each `(METHOD, template, status, rendered)`.
pub fn rendered_mismatches(doc: &Value, rendered: &[(&str, &str, u16, &Value)]) -> Vec<String> {
    let mut out = Vec::new();
    for (method, template, status, value) in rendered {
        match response_schema(doc, method, template, *status) {
            Some(schema) => out.extend(
                response_mismatches(doc, schema, value)
                    .into_iter()
                    .map(|f| format!("{method} {template} {status}: {f}")),
            ),
            None => out.push(format!("{method} {template} {status}: no body documented")),
        }
    }
    out
}

/// Every object schema under `schema`, with the JSON pointer of its value in `value`.
fn object_schemas<'a>(
    doc: &'a Value,
    schema: &'a Value,
    value: &Value,
    at: String,
    out: &mut Vec<(String, &'a Value)>,
) {
    let s = resolve(doc, schema);
    if let (Some(props), Some(obj)) = (s["properties"].as_object(), value.as_object()) {
        for (name, sub) in props {
            if let Some(v) = obj.get(name) {
                object_schemas(doc, sub, v, format!("{at}/{name}"), out);
            }
        }
        out.push((at, s));
    } else if let (Some(items), Some(first)) =
        (s.get("items"), value.as_array().and_then(|a| a.first()))
    {
        object_schemas(doc, items, first, format!("{at}/0"), out);
    }
}

/// Makes every object schema under `value` that lists properties, and says
/// nothing of others (and does not extend a `$ref`), refuse others.
fn strict(value: &mut Value) {
    match value {
        Value::Object(m) => {
            if m.contains_key("properties")
                && !m.contains_key("additionalProperties")
                && !m.contains_key("$ref")
            {
                m.insert("additionalProperties".to_owned(), json!(false));
            }
            m.values_mut().for_each(strict);
        }
        Value::Array(a) => a.iter_mut().for_each(strict),
        _ => {}
    }
}

/// The schema of an operation's response body for `status` (JSON or problem
/// JSON; `None` without a body).
pub fn response_schema<'a>(
    doc: &'a Value,
    method: &str,
    template: &str,
    status: u16,
) -> Option<&'a Value> {
    let response = resolve(
        doc,
        &operation(doc, method, template)["responses"][status.to_string()],
    );
    let content: &Map<String, Value> = response["content"].as_object()?;
    content.values().next().and_then(|c| c.get("schema"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({"openapi": "3.1.0", "paths": {
            "/api/things/{id}": {"post": {
                "security": [{"bearer": []}],
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Req"}}}},
                "responses": {"200": {"description": "ok"}, "400": {"description": "bad"}}}}},
            "components": {"schemas": {"Req": {
                "type": "object", "additionalProperties": false, "required": ["n"],
                "properties": {"n": {"type": "integer", "minimum": 1}, "note": {"type": "string"}}}}}})
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        n: u32,
        note: Option<String>,
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Lax {
        n: Option<u32>,
    }

    #[test]
    fn a_route_lacking_implied_statuses_is_found() {
        let facts = RouteFacts {
            method: "POST",
            template: "/api/things/{id}",
            authenticated: true,
            role_limited: true,
            rate_limited: true,
            reaches_out: true,
        };
        let found = missing_statuses(&doc(), &[facts]);
        for status in [401, 403, 413, 415, 429, 504] {
            assert!(
                found.iter().any(|f| f.contains(&status.to_string())),
                "{status}: {found:?}"
            );
        }
        assert!(!found.iter().any(|f| f.contains("400")), "{found:?}");
    }

    #[test]
    fn a_type_matching_the_request_schema_has_no_finding() {
        let d = doc();
        let schema = request_schema(&d, "POST", "/api/things/{id}").unwrap();
        let parse = |b: &[u8]| {
            serde_json::from_slice::<Req>(b)
                .map(drop)
                .map_err(|e| e.to_string())
        };
        assert_eq!(request_mismatches(&d, schema, &parse), Vec::<String>::new());
    }

    #[test]
    fn a_lax_type_is_found_field_by_field() {
        let d = doc();
        let schema = request_schema(&d, "POST", "/api/things/{id}").unwrap();
        let parse = |b: &[u8]| {
            serde_json::from_slice::<Lax>(b)
                .map(drop)
                .map_err(|e| e.to_string())
        };
        let found = request_mismatches(&d, schema, &parse);
        assert!(
            found.iter().any(|f| f.contains("/n is required")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.contains("undocumented property")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.contains("/note of another type")),
            "{found:?}"
        );
    }

    #[test]
    fn a_rendered_value_is_held_to_the_strict_schema_and_to_every_property() {
        let d = doc();
        let schema = json!({"$ref": "#/components/schemas/Req"});
        assert!(response_mismatches(&d, &schema, &json!({"n": 2, "note": "x"})).is_empty());
        let found = response_mismatches(&d, &schema, &json!({"n": 0}));
        assert!(
            found.iter().any(|f| f.contains("/note is documented")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.contains("minimum") || f.contains("less than")),
            "{found:?}"
        );
    }
}
