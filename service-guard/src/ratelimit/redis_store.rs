//! The shared limiter: one atomic Lua script on Redis, with its connection kept
//! alive in the background and a short timeout on every call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use super::{RateDecision, REDIS_CALL_TIMEOUT_MS, REDIS_CONNECT_TIMEOUT_MS, REDIS_RETRY_AFTER_MS};

/// GCRA in Redis. Times in microseconds, from the Redis server's clock, so all
/// instances share one clock. The key holds the theoretical arrival time (TAT) and
/// expires when the budget is full again.
///
/// KEYS[1] = the client's key; ARGV[1] = emission interval (window / limit) in µs;
/// ARGV[2] = limit. Returns {allowed, remaining, reset_after_us, retry_after_us}.
const GCRA_SCRIPT: &str = r"
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tau = period * (limit - 1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
if now < tat - tau then
  return {0, 0, tat - now, tat - tau - now}
end
local new_tat = tat + period
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
local remaining = math.floor((tau + period - (new_tat - now)) / period)
return {1, remaining, new_tat - now, 0}
";

/// Why a Redis check did not produce a decision.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisUnavailable {
    /// Still backing off after a recent failure.
    #[error("redis skipped after a recent failure")]
    BackingOff,
    /// No connection yet (one is being made in the background).
    #[error("redis not connected")]
    NotConnected,
    /// The call took longer than [`REDIS_CALL_TIMEOUT_MS`].
    #[error("redis call timed out")]
    Timeout,
    /// Redis answered with an error, or the connection broke.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// The script returned something unexpected.
    #[error("unexpected reply from the rate limit script")]
    BadReply,
}

/// A Redis connection that is made lazily and remade in the background.
pub(crate) struct RedisStore {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    connecting: AtomicBool,
    skip_until: Mutex<Option<Instant>>,
    script: redis::Script,
    prefix: String,
    period_us: u64,
    limit: u32,
}

impl RedisStore {
    /// Opens the client (URL parsing only) and tries one connection, bounded by
    /// [`REDIS_CONNECT_TIMEOUT_MS`]. Never fails: without a connection, the
    /// caller runs in-process until one is made.
    pub(crate) async fn start(
        tls: &crate::tls::TlsClient,
        url: &str,
        prefix: String,
        period: Duration,
        limit: u32,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let client = tls.redis_client(url)?;
        let store = Arc::new(RedisStore {
            client,
            conn: Mutex::new(None),
            connecting: AtomicBool::new(false),
            skip_until: Mutex::new(None),
            script: redis::Script::new(GCRA_SCRIPT),
            prefix,
            period_us: u64::try_from(period.as_micros()).unwrap_or(u64::MAX).max(1),
            limit,
        });
        store.connecting.store(true, Ordering::SeqCst);
        Self::connect(Arc::clone(&store)).await;
        Ok(store)
    }

    async fn connect(store: Arc<Self>) {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_millis(REDIS_CONNECT_TIMEOUT_MS))
            .set_response_timeout(Duration::from_millis(REDIS_CALL_TIMEOUT_MS))
            .set_number_of_retries(1);
        let attempt = tokio::time::timeout(
            Duration::from_millis(REDIS_CONNECT_TIMEOUT_MS),
            ConnectionManager::new_with_config(store.client.clone(), config),
        )
        .await;
        match attempt {
            Ok(Ok(manager)) => {
                *lock(&store.conn) = Some(manager);
                *lock(&store.skip_until) = None;
                tracing::info!("rate limiter connected to redis");
            }
            Ok(Err(e)) => {
                store.back_off();
                tracing::debug!(error = %e, "rate limiter cannot connect to redis");
            }
            Err(_) => {
                store.back_off();
                tracing::debug!("rate limiter connection to redis timed out");
            }
        }
        store.connecting.store(false, Ordering::SeqCst);
    }

    /// Starts a background connection attempt unless one is running or backing off.
    fn ensure_connecting(self: &Arc<Self>) {
        if self.backing_off() {
            return;
        }
        if self
            .connecting
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            tokio::spawn(Self::connect(Arc::clone(self)));
        }
    }

    fn backing_off(&self) -> bool {
        lock(&self.skip_until).is_some_and(|until| Instant::now() < until)
    }

    fn back_off(&self) {
        *lock(&self.skip_until) =
            Some(Instant::now() + Duration::from_millis(REDIS_RETRY_AFTER_MS));
    }

    fn connection(self: &Arc<Self>) -> Option<ConnectionManager> {
        let conn = lock(&self.conn).clone();
        if conn.is_none() {
            self.ensure_connecting();
        }
        conn
    }

    /// Runs the script for `key`.
    pub(crate) async fn check(
        self: &Arc<Self>,
        key: &str,
    ) -> Result<RateDecision, RedisUnavailable> {
        if self.backing_off() {
            return Err(RedisUnavailable::BackingOff);
        }
        let mut conn = self.connection().ok_or(RedisUnavailable::NotConnected)?;
        let full_key = format!("{}:{key}", self.prefix);
        let mut invocation = self.script.key(full_key);
        invocation.arg(self.period_us).arg(self.limit);
        let call = invocation.invoke_async::<Vec<i64>>(&mut conn);
        let reply =
            match tokio::time::timeout(Duration::from_millis(REDIS_CALL_TIMEOUT_MS), call).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => {
                    self.back_off();
                    return Err(e.into());
                }
                Err(_) => {
                    self.back_off();
                    return Err(RedisUnavailable::Timeout);
                }
            };
        self.decision(&reply)
    }

    fn decision(&self, reply: &[i64]) -> Result<RateDecision, RedisUnavailable> {
        let [allowed, remaining, reset_us, retry_us] = reply else {
            return Err(RedisUnavailable::BadReply);
        };
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(RateDecision {
            allowed: *allowed == 1,
            limit: self.limit,
            remaining: u32::try_from(*remaining).unwrap_or(0).min(self.limit),
            reset_after: micros(*reset_us),
            retry_after: (*allowed != 1).then(|| micros(*retry_us)),
        })
    }

    /// PING with [`REDIS_CALL_TIMEOUT_MS`]; `false` when not connected.
    pub(crate) async fn ping(self: &Arc<Self>) -> bool {
        let Some(mut conn) = self.connection() else {
            return false;
        };
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(Duration::from_millis(REDIS_CALL_TIMEOUT_MS), ping).await {
            Ok(Ok(reply)) if reply == "PONG" => {
                *lock(&self.skip_until) = None;
                true
            }
            _ => false,
        }
    }
}

/// Locks a mutex, ignoring poisoning: the guarded values stay consistent (plain
/// replacements), so a panic elsewhere must not disable rate limiting.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
