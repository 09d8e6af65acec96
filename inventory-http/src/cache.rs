//! The read-through availability cache in Redis.
//!
//! Reads try Redis first and fall back to the store; a miss is filled from the
//! store with a TTL. Every committed change deletes the keys of the products
//! it touched, after the commit, so a read after a change never shows the old
//! figure (see docs/adr/0003-http-stack.md for the remaining race and why the
//! TTL bounds it). Every Redis call has a short timeout; any Redis failure
//! makes the read go to the store. Nothing here ever fails a request.

use std::time::{Duration, Instant};

use inventory_core::ProductId;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use service_guard::TlsClient;

use crate::app::StartError;
use crate::config::Config;
use crate::dto::Availability;

/// Prefix of every availability key (versioned with the JSON shape).
pub const KEY_PREFIX: &str = "inventory:availability:v1:";

/// Pause between two attempts to connect to an unreachable Redis.
pub const RECONNECT_BACKOFF_MS: u64 = 2_000;

/// Keys deleted per `SCAN` step when the whole cache is dropped, and most steps.
const SCAN_COUNT: usize = 500;
const SCAN_STEPS_MAX: usize = 200;

/// A lazily connected Redis handle with short timeouts, shared by the cache
/// and the readiness check.
pub struct Redis {
    client: redis::Client,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    last_attempt: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// A handle for `client` (`service_guard::TlsClient::redis_client`
    /// makes one for a `redis://` or `rediss://` URL); connects on first use.
    pub fn new(client: redis::Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            conn: tokio::sync::Mutex::new(None),
            last_attempt: Mutex::new(None),
        }
    }

    /// A connection, or `None` when Redis cannot be reached now.
    pub async fn connection(&self) -> Option<ConnectionManager> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Some(c.clone());
        }
        {
            let mut last = self.last_attempt.lock();
            let recent =
                last.is_some_and(|t| t.elapsed() < Duration::from_millis(RECONNECT_BACKOFF_MS));
            if recent {
                return None;
            }
            *last = Some(Instant::now());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        let connect = ConnectionManager::new_with_config(self.client.clone(), config);
        match tokio::time::timeout(self.timeout * 5, connect).await {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis unreachable");
                None
            }
            Err(_) => {
                tracing::warn!("redis connect timed out");
                None
            }
        }
    }

    /// Runs one command under the timeout; `None` on any failure.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let mut conn = self.connection().await?;
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis command failed");
                None
            }
            Err(_) => {
                tracing::warn!("redis command timed out");
                None
            }
        }
    }

    /// True when Redis answers `PING`.
    pub async fn healthy(&self) -> bool {
        self.query::<String>(&redis::cmd("PING")).await.is_some()
    }
}

/// The Redis handle `config` asks for (`REDIS_URL`), with its command
/// timeout; `None` without a URL.
///
/// # Errors
/// [`StartError::RedisUrl`] when the URL does not parse.
pub(crate) fn connect(
    config: &Config,
    tls: &TlsClient,
) -> Result<Option<std::sync::Arc<Redis>>, StartError> {
    let Some(url) = &config.redis_url else {
        return Ok(None);
    };
    Ok(Some(std::sync::Arc::new(Redis::new(
        tls.redis_client(url)?,
        Duration::from_millis(config.redis_timeout_ms.max(1)),
    ))))
}

/// Availability cached in Redis.
#[derive(Debug)]
pub struct AvailabilityCache {
    redis: std::sync::Arc<Redis>,
    ttl_secs: u64,
}

fn key(product: ProductId) -> String {
    format!("{KEY_PREFIX}{product}")
}

impl AvailabilityCache {
    /// A cache over `redis` whose entries live `ttl_secs`.
    pub fn new(redis: std::sync::Arc<Redis>, ttl_secs: u64) -> Self {
        Self {
            redis,
            ttl_secs: ttl_secs.max(1),
        }
    }

    /// The cached figures of several products, `None` per miss (all `None`
    /// when Redis fails).
    pub async fn get_many(&self, products: &[ProductId]) -> Vec<Option<Availability>> {
        if products.is_empty() {
            return Vec::new();
        }
        let mut cmd = redis::cmd("MGET");
        for p in products {
            cmd.arg(key(*p));
        }
        let raw: Vec<Option<Vec<u8>>> = self.redis.query(&cmd).await.unwrap_or_default();
        if raw.len() != products.len() {
            return vec![None; products.len()];
        }
        raw.into_iter()
            .map(|v| v.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
            .collect()
    }

    /// Caches figures read from the store.
    pub async fn put_many(&self, items: &[Availability]) {
        if items.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for a in items {
            let Ok(json) = serde_json::to_vec(a) else {
                continue;
            };
            pipe.cmd("SET")
                .arg(key(ProductId::from_uuid(a.product_id)))
                .arg(json)
                .arg("EX")
                .arg(self.ttl_secs)
                .ignore();
        }
        let Some(mut conn) = self.redis.connection().await else {
            return;
        };
        let done =
            tokio::time::timeout(self.redis.timeout, pipe.query_async::<()>(&mut conn)).await;
        if !matches!(done, Ok(Ok(()))) {
            tracing::warn!("redis cache fill failed");
        }
    }

    /// Drops the cached figures of products a committed change touched.
    pub async fn invalidate(&self, products: &[ProductId]) {
        if products.is_empty() {
            return;
        }
        let mut cmd = redis::cmd("DEL");
        for p in products {
            cmd.arg(key(*p));
        }
        if self.redis.query::<i64>(&cmd).await.is_none() {
            tracing::warn!(
                products = products.len(),
                "redis cache invalidation failed; entries expire with their TTL"
            );
        }
    }

    /// Drops every cached figure (after a sweep, which does not say which
    /// products it touched), in bounded `SCAN` steps.
    pub async fn invalidate_all(&self) {
        let mut cursor: u64 = 0;
        for _ in 0..SCAN_STEPS_MAX {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(format!("{KEY_PREFIX}*"))
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let Some((next, keys)) = self.redis.query::<(u64, Vec<String>)>(&scan).await else {
                return;
            };
            if !keys.is_empty() {
                let mut del = redis::cmd("DEL");
                del.arg(keys);
                let _ = self.redis.query::<i64>(&del).await;
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}
