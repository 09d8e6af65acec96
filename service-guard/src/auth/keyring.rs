//! The verification keys in use, swappable at run time: [`KeyRing::reload`]
//! re-reads the configured key file, [`KeyRing::refresh`] also fetches a JWKS
//! URL again; either replaces the keys in one atomic step, or keeps the
//! current ones when the new set is unusable.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::config::{Algorithm, AuthConfig, ConfigError, KeySource};
use super::keys::{FileStamp, Keys};
use super::remote::RemoteJwks;
use crate::tls::TlsClient;

/// What [`Authenticator::reload`](super::Authenticator::reload) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyReload {
    /// The key file was read again and its keys now verify every new request.
    Swapped {
        /// How many keys the new file yielded (1 for a PEM file).
        keys: usize,
    },
    /// Nothing to re-read: the key is a secret given at start, auth is
    /// disabled, or (for a synchronous reload) the keys come from a URL,
    /// which only [`Authenticator::refresh`](super::Authenticator::refresh) fetches.
    NoKeyFile,
}

/// Keys read from a file, with the file's stamp taken just before the read.
pub(crate) struct LoadedKeys {
    pub(crate) keys: Keys,
    /// `None` for a secret, or when the file could not be stamped.
    pub(crate) stamp: Option<FileStamp>,
}

/// The current keys of one authenticator and how to read them again.
pub(crate) struct KeyRing {
    algorithm: Algorithm,
    /// The key file (PEM or JWKS); `None` for a secret, which is never re-read
    /// (and never kept here).
    file: Option<KeySource>,
    /// The JWKS URL, when the keys come from one.
    remote: Option<RemoteJwks>,
    /// Readers take a snapshot without locking; a reload stores a whole new set.
    current: ArcSwap<LoadedKeys>,
    reloads_failed: AtomicU64,
}

impl KeyRing {
    /// Reads the keys of `source` for `algorithm`.
    pub(crate) fn load(source: &KeySource, algorithm: Algorithm) -> Result<KeyRing, ConfigError> {
        let file = match source {
            KeySource::Secret(_) | KeySource::JwksUrl(_) => None,
            KeySource::PublicKeyPem(_) | KeySource::JwksFile(_) => Some(source.clone()),
        };
        let loaded = read(source, algorithm)?;
        Ok(KeyRing {
            algorithm,
            file,
            remote: None,
            current: ArcSwap::from_pointee(loaded),
            reloads_failed: AtomicU64::new(0),
        })
    }

    /// Reads the keys `cfg` names, fetching them first when they come from a
    /// URL (reached with `tls`).
    pub(crate) async fn start(cfg: &AuthConfig, tls: &TlsClient) -> Result<KeyRing, ConfigError> {
        let KeySource::JwksUrl(url) = &cfg.key else {
            return KeyRing::load(&cfg.key, cfg.algorithm);
        };
        if cfg.algorithm == Algorithm::HS256 {
            return Err(ConfigError::KeyMismatch {
                algorithm: cfg.algorithm,
                key: "a jwks url",
            });
        }
        let remote = RemoteJwks::new(
            url,
            tls,
            cfg.jwks_refresh_interval_ms,
            cfg.jwks_unknown_kid_refetch_min_ms,
        )?;
        let keys = remote.fetch(cfg.algorithm).await?;
        tracing::info!(url = %remote.url(), keys = keys.len(), "verification keys fetched");
        Ok(KeyRing {
            algorithm: cfg.algorithm,
            file: None,
            remote: Some(remote),
            current: ArcSwap::from_pointee(LoadedKeys { keys, stamp: None }),
            reloads_failed: AtomicU64::new(0),
        })
    }

    /// The JWKS URL's fetcher, when the keys come from one.
    pub(crate) fn remote(&self) -> Option<&RemoteJwks> {
        self.remote.as_ref()
    }

    /// Fetches the JWKS URL again, or re-reads the key file; swaps the keys
    /// only when the new set has at least one usable key.
    pub(crate) async fn refresh(&self) -> Result<KeyReload, ConfigError> {
        let Some(remote) = &self.remote else {
            return self.reload();
        };
        match remote.fetch(self.algorithm).await {
            Ok(keys) => {
                let count = keys.len();
                self.current
                    .store(Arc::new(LoadedKeys { keys, stamp: None }));
                tracing::info!(url = %remote.url(), keys = count, "verification keys fetched");
                Ok(KeyReload::Swapped { keys: count })
            }
            Err(e) => {
                let failed = self.reloads_failed.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(
                    url = %remote.url(),
                    error = %e,
                    reloads_failed = failed,
                    "verification keys not fetched: keeping the current keys"
                );
                Err(e)
            }
        }
    }

    /// The keys in use now. Cheap; a concurrent reload does not change a snapshot.
    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<LoadedKeys>> {
        self.current.load()
    }

    /// The key file, `None` for a secret.
    pub(crate) fn file(&self) -> Option<&Path> {
        match &self.file {
            Some(KeySource::PublicKeyPem(path) | KeySource::JwksFile(path)) => Some(path),
            _ => None,
        }
    }

    /// Re-reads the key file; swaps the keys only when it yields at least one
    /// usable key, otherwise logs, counts the failure and keeps the current keys.
    pub(crate) fn reload(&self) -> Result<KeyReload, ConfigError> {
        let Some(source) = &self.file else {
            return Ok(KeyReload::NoKeyFile);
        };
        match read(source, self.algorithm) {
            Ok(loaded) => {
                let keys = loaded.keys.len();
                self.current.store(Arc::new(loaded));
                tracing::info!(file = ?self.file(), keys, "verification keys reloaded");
                Ok(KeyReload::Swapped { keys })
            }
            Err(e) => {
                let failed = self.reloads_failed.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(
                    file = ?self.file(),
                    error = %e,
                    reloads_failed = failed,
                    "verification keys not reloaded: keeping the current keys"
                );
                Err(e)
            }
        }
    }

    /// Reloads that failed since start.
    pub(crate) fn failed_reloads(&self) -> u64 {
        self.reloads_failed.load(Ordering::Relaxed)
    }
}

/// Stamps the file, then reads it: a change after the stamp is seen by the next
/// look at the file, never missed.
fn read(source: &KeySource, algorithm: Algorithm) -> Result<LoadedKeys, ConfigError> {
    let stamp = match source {
        KeySource::Secret(_) => None,
        KeySource::PublicKeyPem(path) | KeySource::JwksFile(path) => FileStamp::of(path),
        KeySource::JwksUrl(_) => None,
    };
    let keys = Keys::load(source, algorithm)?;
    Ok(LoadedKeys { keys, stamp })
}
