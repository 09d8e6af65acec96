//! Request bodies: read under a size limit (413), check the content type (415),
//! parse JSON (400 saying what is wrong).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Default largest request body, in bytes. JSON commands are small; a
/// hundred-line reservation is under 10 KiB.
pub const BODY_BYTES_MAX_DEFAULT: usize = 64 * 1024;

/// Most bytes of an oversized body read and thrown away before answering 413,
/// so the client (which is usually still sending) gets the answer instead of
/// a reset connection. Past this the connection is simply closed.
pub const DRAIN_BYTES_MAX: usize = 1024 * 1024;

/// A request body handlers can read and move across tasks: a shorthand for
/// the bounds every handler generic over its body repeats (tests pass
/// `Full<Bytes>`, the server hyper's `Incoming`).
pub trait RequestBody:
    hyper::body::Body<Data: Send, Error: std::error::Error + Send + Sync + 'static> + Send
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data: Send, Error: std::error::Error + Send + Sync + 'static> + Send
{
}

/// Reads a whole body, refusing it with 413 once it exceeds `limit_bytes`
/// (checked against `Content-Length` first, then while reading).
///
/// # Errors
/// 413 `payload_too_large` when over the limit; 400 `body_read_failed` when the
/// client broke the stream.
pub async fn read_limited<B>(
    headers: &HeaderMap,
    body: B,
    limit_bytes: usize,
) -> Result<Bytes, Problem>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut over = declared.is_some_and(|n| n > limit_bytes as u64);
    if declared.is_some_and(|n| n > DRAIN_BYTES_MAX as u64) {
        return Err(too_large(limit_bytes));
    }
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    let mut seen: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "request body read failed");
                return Err(Problem::bad_request(
                    "body_read_failed",
                    "the request body could not be read",
                ));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.remaining());
        if seen > limit_bytes {
            over = true;
        }
        if over {
            if seen > DRAIN_BYTES_MAX {
                break;
            }
            continue;
        }
        buf.put(data);
    }
    if over {
        return Err(too_large(limit_bytes));
    }
    Ok(buf.freeze())
}

fn too_large(limit_bytes: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "Payload too large",
        format!("the request body is larger than {limit_bytes} bytes"),
    )
}

/// Checks that the request declares a JSON body (`application/json` or any
/// `+json` type, parameters allowed).
///
/// # Errors
/// 415 `unsupported_media_type` otherwise.
pub fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "the request body must be application/json",
        ))
    }
}

/// Parses a JSON document into `T`.
///
/// A number with an integral value written with a fraction or an exponent
/// (`75.0`, `1e2`) is an integer, as JSON Schema counts it: it is accepted
/// where an integer is expected. (Only a document that fails to parse as
/// written is looked at again, so the usual request pays nothing for it.)
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Line { quantity: i64 }
/// let line: Line = service_kit::body::parse_json(br#"{"quantity": 75.0}"#).unwrap();
/// assert_eq!(line.quantity, 75);
/// assert!(service_kit::body::parse_json::<Line>(br#"{"quantity": 7.5}"#).is_err());
/// ```
///
/// # Errors
/// 400 `malformed_json` when the text is not JSON, 400 `invalid_request` when
/// it does not have the expected shape (missing field, wrong type, unknown
/// field); the detail names the problem and where.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::bad_request(
            "malformed_json",
            "the request body is empty",
        ));
    }
    let first = match serde_json::from_slice(bytes) {
        Ok(parsed) => return Ok(parsed),
        Err(e) => e,
    };
    if first.classify() == serde_json::error::Category::Data {
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) {
            if integral_floats_to_integers(&mut value) {
                // What is still wrong once the numbers are read as JSON
                // Schema reads them.
                return serde_json::from_value(value)
                    .map_err(|e| Problem::bad_request("invalid_request", e.to_string()));
            }
        }
    }
    let code = match first.classify() {
        serde_json::error::Category::Data => "invalid_request",
        _ => "malformed_json",
    };
    Err(Problem::bad_request(code, first.to_string()))
}

/// Rewrites every number of `value` that has an integral value but is held
/// as a float (`75.0`, `1e2`) as an integer; whether it changed any.
fn integral_floats_to_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Within i64's range, where every integral f64 converts exactly.
            if f.fract() == 0.0 && (-9.0e18..=9.0e18).contains(&f) {
                *value = Value::from(f as i64);
                true
            } else {
                false
            }
        }
        Value::Array(items) => {
            let mut changed = false;
            for v in items {
                changed |= integral_floats_to_integers(v);
            }
            changed
        }
        Value::Object(fields) => {
            let mut changed = false;
            for v in fields.values_mut() {
                changed |= integral_floats_to_integers(v);
            }
            changed
        }
        _ => false,
    }
}

/// [`require_json`], [`read_limited`] and [`parse_json`] in one step.
///
/// # Errors
/// As those three.
pub async fn read_json<T, B>(headers: &HeaderMap, body: B, limit_bytes: usize) -> Result<T, Problem>
where
    T: DeserializeOwned,
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    require_json(headers)?;
    let bytes = read_limited(headers, body, limit_bytes).await?;
    parse_json(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http_body_util::Full;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cmd {
        quantity: i64,
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h
    }

    /// Each kind of bad body maps to its own status and code.
    #[tokio::test]
    async fn bad_bodies_map_to_codes() {
        let cases: &[(&str, u16, &str)] = &[
            ("{", 400, "malformed_json"),
            ("", 400, "malformed_json"),
            ("{\"quantity\":\"x\"}", 400, "invalid_request"),
            ("{}", 400, "invalid_request"),
            ("{\"quantity\":1,\"extra\":2}", 400, "invalid_request"),
        ];
        for (text, status, code) in cases {
            let err = read_json::<Cmd, _>(&json_headers(), Full::new(Bytes::from(*text)), 1024)
                .await
                .unwrap_err();
            assert_eq!(
                (err.status().as_u16(), err.code()),
                (*status, *code),
                "{text}"
            );
        }
        let big = Full::new(Bytes::from(vec![b' '; 2048]));
        let err = read_json::<Cmd, _>(&json_headers(), big, 1024)
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let mut text = HeaderMap::new();
        text.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let err = read_json::<Cmd, _>(&text, Full::new(Bytes::from("{}")), 1024)
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    /// A number with an integral value is an integer however it is written;
    /// one with a fraction, or beyond i64, is still refused.
    #[test]
    fn integral_numbers_are_integers() {
        for text in [
            r#"{"quantity":75}"#,
            r#"{"quantity":75.0}"#,
            r#"{"quantity":7.5e1}"#,
            r#"{"quantity":75.000}"#,
        ] {
            let cmd: Cmd = parse_json(text.as_bytes()).unwrap();
            assert_eq!(cmd.quantity, 75, "{text}");
        }
        let negative: Cmd = parse_json(br#"{"quantity":-2.0}"#).unwrap();
        assert_eq!(negative.quantity, -2);
        for text in [r#"{"quantity":7.5}"#, r#"{"quantity":1e30}"#] {
            let err = parse_json::<Cmd>(text.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "invalid_request", "{text}");
        }
        // Other shape errors keep their own message, not the retry's.
        let err = parse_json::<Cmd>(br#"{"quantity":1.0,"extra":2}"#).unwrap_err();
        assert!(err.detail().contains("extra"), "{}", err.detail());
    }
}
