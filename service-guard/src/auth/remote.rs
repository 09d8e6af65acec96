//! Verification keys served at a JWKS URL (an issuer's `jwks_uri`), fetched
//! over https with the process's [`TlsClient`]: at start, on a schedule
//! ([`KeyWatcher`](super::KeyWatcher), every
//! [`JWKS_REFRESH_INTERVAL_MS_DEFAULT`](super::JWKS_REFRESH_INTERVAL_MS_DEFAULT)),
//! and when a token names a `kid` the current set lacks, at most once per
//! [`JWKS_UNKNOWN_KID_REFETCH_MIN_MS`](super::JWKS_UNKNOWN_KID_REFETCH_MIN_MS).
//! A fetch that fails keeps the keys in use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::config::{Algorithm, ConfigError};
use super::keys::{parse_jwks, Keys, MAX_KEY_FILE_BYTES};
use crate::tls::TlsClient;

/// Longest a JWKS fetch may take (connect, TLS, answer, body), in
/// milliseconds; past it the fetch failed and the current keys stay.
pub const JWKS_FETCH_TIMEOUT_MS: u64 = 5_000;

/// Where the keys come from and when an unknown `kid` last fetched them.
pub(crate) struct RemoteJwks {
    url: Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    refresh_interval: Option<Duration>,
    refetch_min: Duration,
    /// When an unknown `kid` last caused a fetch. Held across that fetch, so
    /// requests with unknown ids arriving meanwhile wait for its result
    /// instead of fetching again.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

impl RemoteJwks {
    /// A fetcher of `url` (which must be `https://`); fetches nothing yet.
    pub(crate) fn new(
        url: &str,
        tls: &TlsClient,
        refresh_interval_ms: u64,
        refetch_min_ms: u64,
    ) -> Result<Self, ConfigError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ConfigError::JwksUrl(format!("{url:?}: {e}")))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(ConfigError::JwksUrl(format!(
                "{url:?}: keys are fetched over https only"
            )));
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_millis(JWKS_FETCH_TIMEOUT_MS)));
        let client = Client::builder(TokioExecutor::new()).build(tls.https_connector(http));
        Ok(Self {
            url: uri,
            client,
            refresh_interval: (refresh_interval_ms > 0)
                .then(|| Duration::from_millis(refresh_interval_ms)),
            refetch_min: Duration::from_millis(refetch_min_ms),
            last_refetch: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        })
    }

    pub(crate) fn url(&self) -> &Uri {
        &self.url
    }

    /// The pause between scheduled fetches, `None` for none.
    pub(crate) fn refresh_interval(&self) -> Option<Duration> {
        self.refresh_interval
    }

    /// Fetches made since start, successful or not.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// GETs the set and keeps its keys for `alg`, within [`JWKS_FETCH_TIMEOUT_MS`].
    pub(crate) async fn fetch(&self, alg: Algorithm) -> Result<Keys, ConfigError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let body = tokio::time::timeout(Duration::from_millis(JWKS_FETCH_TIMEOUT_MS), self.get())
            .await
            .map_err(|_| {
                ConfigError::JwksFetch(format!(
                    "{}: no answer within {JWKS_FETCH_TIMEOUT_MS} ms",
                    self.url
                ))
            })??;
        parse_jwks(&body, &self.url.to_string(), alg)
    }

    async fn get(&self) -> Result<Bytes, ConfigError> {
        let failed =
            |e: &dyn std::fmt::Display| ConfigError::JwksFetch(format!("{}: {e}", self.url));
        let request = Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| failed(&e))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| failed(&error_chain(&e)))?;
        if response.status() != StatusCode::OK {
            return Err(failed(&format!("answered {}", response.status())));
        }
        let limit = usize::try_from(MAX_KEY_FILE_BYTES).unwrap_or(usize::MAX);
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| failed(&e))?;
        Ok(body.to_bytes())
    }

    /// Runs `fetch` for a token whose `kid` is unknown, unless such a fetch
    /// ran less than the minimum interval ago. Callers arriving while one
    /// runs wait for it. Returns whether this call fetched.
    pub(crate) async fn refetch_for_unknown_kid<F>(&self, fetch: F) -> bool
    where
        F: std::future::Future<Output = ()>,
    {
        let mut last = self.last_refetch.lock().await;
        let now = Instant::now();
        if !refetch_due(*last, now, self.refetch_min) {
            return false;
        }
        // A failed fetch counts too: an issuer that is down is not asked
        // again for every request.
        *last = Some(now);
        fetch.await;
        true
    }
}

/// Whether an unknown `kid` may fetch at `now`, the last such fetch having
/// started at `last`.
pub(crate) fn refetch_due(last: Option<Instant>, now: Instant, min: Duration) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= min)
}

/// `error` and its causes, joined: hyper's top-level message alone ("client
/// error (Connect)") does not say that a certificate was refused.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_kid_fetches_at_most_once_per_interval() {
        let min = Duration::from_millis(JWKS_FETCH_TIMEOUT_MS);
        let start = Instant::now();
        assert!(refetch_due(None, start, min), "the first one fetches");
        assert!(!refetch_due(Some(start), start, min));
        assert!(!refetch_due(
            Some(start),
            start + min - Duration::from_millis(1),
            min
        ));
        assert!(refetch_due(Some(start), start + min, min));
    }

    #[test]
    fn only_https_urls_are_fetched() {
        let tls = TlsClient::system();
        for bad in [
            "http://issuer/jwks",
            "issuer/jwks",
            "https:///jwks",
            "ftp://x/y",
        ] {
            assert!(RemoteJwks::new(bad, &tls, 0, 0).is_err(), "{bad}");
        }
        assert!(
            RemoteJwks::new("https://issuer.example/.well-known/jwks.json", &tls, 0, 0).is_ok()
        );
    }
}
