//! The run's HTTP client: one pooled hyper client, JSON in and out, every
//! call bounded in time.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Longest a call may take before the client gives up on it (longer than
/// the gateway's own upstream timeouts, so those answer first).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a call got no HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NoAnswer {
    /// [`CALL_TIMEOUT`] passed.
    Timeout,
    /// The connection failed or was cut.
    Io(String),
}

/// A cheap-to-clone client.
#[derive(Clone)]
pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(10))
                .build(connector),
        }
    }

    /// Sends one request; the status and body, or why there was none.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Bytes), NoAnswer> {
        let mut builder = Request::builder().method(method).uri(url);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(key) = idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        let bytes = match body {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(bytes))
            .map_err(|e| NoAnswer::Io(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| NoAnswer::Io(e.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| NoAnswer::Io(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .unwrap_or(Err(NoAnswer::Timeout))
    }

    pub(crate) async fn get(
        &self,
        url: &str,
        token: Option<&str>,
    ) -> Result<(u16, Bytes), NoAnswer> {
        self.call(Method::GET, url, token, None, None).await
    }
}
