//! Rate limiter tests against a real Redis (feature `redis`): the shared
//! budget, and falling back in-process while Redis is away or hung.

use std::time::Duration;

use service_guard::ratelimit::REDIS_CONNECT_TIMEOUT_MS;
use service_guard::{Limiter, RateLimitConfig, REDIS_CALL_TIMEOUT_MS, REDIS_RETRY_AFTER_MS};
use test_support::redis::redis_url;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::limiter::{drain, header};

fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test:service-guard:{test}:{}:{nanos}", std::process::id())
}

fn redis_config(url: &str, prefix: &str, limit: u32) -> RateLimitConfig {
    RateLimitConfig {
        requests_per_window: limit,
        window: Duration::from_secs(60),
        redis_url: Some(url.to_owned()),
        key_prefix: prefix.to_owned(),
        ..RateLimitConfig::default()
    }
}

async fn redis_key_exists(url: &str, key: &str) -> bool {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(&mut conn)
        .await
        .unwrap()
        == 1
}

/// Through Redis, the (limit+1)th request is denied with Retry-After.
#[tokio::test]
async fn redis_denies_the_request_after_the_limit() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("limit");
    let limiter = Limiter::new(redis_config(&url, &prefix, 5)).await;
    assert!(limiter.redis_configured());
    assert!(limiter.redis_healthy().await);

    let allowed = drain(&limiter, "ip:10.0.0.1", 5).await;
    assert!(!limiter.is_degraded(), "decisions came from redis");
    assert!(allowed.iter().all(|d| d.allowed));
    let remaining: Vec<u32> = allowed.iter().map(|d| d.remaining).collect();
    assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
    assert!(redis_key_exists(&url, &format!("{prefix}:ip:10.0.0.1")).await);

    let denied = limiter.check("ip:10.0.0.1").await;
    assert!(!limiter.is_degraded());
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    let retry = denied.retry_after.expect("denied carries retry_after");
    assert!(
        retry > Duration::from_secs(11) && retry <= Duration::from_secs(12),
        "{retry:?}"
    );
    assert_eq!(header(&denied, "retry-after").as_deref(), Some("12"));
    assert!(
        limiter.check("ip:10.0.0.2").await.allowed,
        "keys are independent"
    );
}

/// Two instances on one Redis share one budget per client.
#[tokio::test]
async fn two_limiters_on_one_redis_share_the_budget() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("shared");
    let a = Limiter::new(redis_config(&url, &prefix, 5)).await;
    let b = Limiter::new(redis_config(&url, &prefix, 5)).await;

    assert!(drain(&a, "user:abc", 3).await.iter().all(|d| d.allowed));
    let from_b = drain(&b, "user:abc", 2).await;
    assert!(from_b.iter().all(|d| d.allowed));
    assert_eq!(from_b[1].remaining, 0);
    assert!(!a.check("user:abc").await.allowed);
    assert!(!b.check("user:abc").await.allowed);
    assert!(!a.is_degraded() && !b.is_degraded());
}

/// With Redis unreachable, the limiter starts at once, limits in-process, and
/// reports Redis unhealthy.
#[tokio::test]
async fn unreachable_redis_falls_back_to_in_process() {
    let started = tokio::time::Instant::now();
    let limiter = Limiter::new(redis_config("redis://127.0.0.1:1", "test:unreachable", 5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "start is bounded"
    );
    assert!(limiter.redis_configured());
    assert!(!limiter.redis_healthy().await);

    let decisions = drain(&limiter, "ip:10.0.0.1", 6).await;
    assert!(limiter.is_degraded());
    assert!(decisions[..5].iter().all(|d| d.allowed));
    assert!(!decisions[5].allowed);
    let retry = decisions[5]
        .retry_after
        .expect("denied carries retry_after");
    assert!(
        retry > Duration::from_secs(11) && retry <= Duration::from_secs(12),
        "{retry:?}"
    );
}

/// A TCP forwarder to Redis that the test can cut and restore, standing in for
/// Redis going away and coming back.
struct Proxy {
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(listener: TcpListener, upstream: String) -> Proxy {
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy { tasks }
    }

    /// Drops the listener and every forwarded connection.
    async fn cut(mut self) {
        self.tasks.shutdown().await;
    }
}

fn redis_host_port(url: &str) -> String {
    let rest = url.trim_start_matches("redis://");
    let host_port = rest.split('/').next().unwrap_or(rest);
    host_port.rsplit('@').next().unwrap_or(host_port).to_owned()
}

/// Polls `check` until it is decided by Redis again, within a bounded time.
async fn until_shared(limiter: &Limiter, key: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(REDIS_RETRY_AFTER_MS * 5);
    while tokio::time::Instant::now() < deadline {
        limiter.check(key).await;
        if !limiter.is_degraded() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Redis going away mid-run: the limiter falls back without an error and returns
/// to Redis by itself when it is back. Redis down at start: it connects later.
#[tokio::test]
async fn limiter_returns_to_redis_after_an_outage() {
    let Some(url) = redis_url().await else { return };
    if url.contains('@') || url.starts_with("rediss://") {
        eprintln!("skipped: proxy test needs a plain redis:// url without credentials");
        return;
    }
    let upstream = redis_host_port(&url);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxied = format!("redis://{addr}");
    let prefix = unique_prefix("outage");

    // Down at start: the limiter starts in-process.
    drop(listener);
    let limiter = Limiter::new(redis_config(&proxied, &prefix, 1000)).await;
    assert!(limiter.check("k").await.allowed);
    assert!(limiter.is_degraded());
    assert!(!limiter.redis_healthy().await);

    // Redis appears: the limiter connects and shares its budget again.
    let proxy = Proxy::start(TcpListener::bind(addr).await.unwrap(), upstream.clone()).await;
    assert!(until_shared(&limiter, "k").await, "connected after start");
    assert!(limiter.redis_healthy().await);
    assert!(redis_key_exists(&url, &format!("{prefix}:k")).await);

    // Redis goes away: requests are still decided, in-process.
    proxy.cut().await;
    let during = limiter.check("k").await;
    assert!(during.allowed);
    assert!(limiter.is_degraded());
    assert!(!limiter.redis_healthy().await);

    // And comes back.
    let _proxy = Proxy::start(TcpListener::bind(addr).await.unwrap(), upstream).await;
    assert!(
        until_shared(&limiter, "k").await,
        "back on redis after the outage"
    );
}

/// A Redis that accepts connections but never answers stalls neither the start nor
/// any request beyond the call timeout.
#[tokio::test]
async fn hung_redis_never_stalls_a_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = JoinSet::new();
    held.spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });

    let started = tokio::time::Instant::now();
    let limiter = Limiter::new(redis_config(&format!("redis://{addr}"), "test:hung", 3)).await;
    assert!(started.elapsed() < Duration::from_millis(REDIS_CONNECT_TIMEOUT_MS + 500));

    let bound = Duration::from_millis(REDIS_CALL_TIMEOUT_MS + 200);
    let mut allowed = 0;
    for _ in 0..4 {
        let t = tokio::time::Instant::now();
        allowed += u32::from(limiter.check("ip:10.0.0.9").await.allowed);
        assert!(t.elapsed() < bound, "check took {:?}", t.elapsed());
    }
    assert_eq!(allowed, 3);
    assert!(limiter.is_degraded());
    let t = tokio::time::Instant::now();
    assert!(!limiter.redis_healthy().await);
    assert!(t.elapsed() < bound);
}
