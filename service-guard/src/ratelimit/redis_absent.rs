//! The shared limiter in a build without the `redis` feature: there is none.
//! Starting it fails, so a [`super::Limiter`] given a Redis URL says so and
//! limits in-process; the servers refuse such a configuration at start.

use std::sync::Arc;
use std::time::Duration;

use super::RateDecision;
use crate::tls::TlsClient;

/// Why there is no Redis limiter in this build.
#[derive(Debug, thiserror::Error)]
#[error("service-guard was built without Redis support (cargo feature `redis`)")]
pub(crate) struct RedisNotBuilt;

/// Never constructed: the limiter's Redis side in a build without Redis.
pub(crate) enum RedisStore {}

impl RedisStore {
    /// Always [`RedisNotBuilt`].
    pub(crate) async fn start(
        _tls: &TlsClient,
        _url: &str,
        _prefix: String,
        _period: Duration,
        _limit: u32,
    ) -> Result<Arc<Self>, RedisNotBuilt> {
        Err(RedisNotBuilt)
    }

    pub(crate) async fn check(&self, _key: &str) -> Result<RateDecision, RedisNotBuilt> {
        match *self {}
    }

    pub(crate) async fn ping(&self) -> bool {
        match *self {}
    }
}
