//! The availability cache in a build without the `redis` feature: there is
//! none. The types exist so that the server reads the same either way, and
//! none of them can be made: every request goes to the store.

use std::sync::Arc;

use inventory_core::ProductId;
use service_guard::TlsClient;

use crate::app::StartError;
use crate::config::Config;
use crate::dto::Availability;

/// Never made: there is no Redis in this build.
#[derive(Debug)]
pub enum Redis {}

impl Redis {
    /// Unreachable: no value exists.
    pub async fn healthy(&self) -> bool {
        match *self {}
    }
}

/// Never made: there is no cache in this build.
#[derive(Debug)]
pub enum AvailabilityCache {}

impl AvailabilityCache {
    /// Unreachable: no [`Redis`] exists.
    pub fn new(redis: Arc<Redis>, _ttl_secs: u64) -> Self {
        match *redis {}
    }

    /// Unreachable: no value exists.
    pub async fn get_many(&self, _products: &[ProductId]) -> Vec<Option<Availability>> {
        match *self {}
    }

    /// Unreachable: no value exists.
    pub async fn put_many(&self, _items: &[Availability]) {
        match *self {}
    }

    /// Unreachable: no value exists.
    pub async fn invalidate(&self, _products: &[ProductId]) {
        match *self {}
    }

    /// Unreachable: no value exists.
    pub async fn invalidate_all(&self) {
        match *self {}
    }
}

/// No Redis: `None`, or [`StartError::NotBuilt`] when `REDIS_URL` is set.
///
/// # Errors
/// [`StartError::NotBuilt`], naming the cargo feature.
pub(crate) fn connect(config: &Config, _tls: &TlsClient) -> Result<Option<Arc<Redis>>, StartError> {
    config.check_backends()?;
    Ok(None)
}
