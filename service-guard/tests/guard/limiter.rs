//! Rate limiter tests in-process, with tokio's paused clock (against a
//! real Redis: `limiter_redis`).

use std::time::Duration;

use service_guard::ratelimit::RETAIN_EVERY_CHECKS;
use service_guard::{Limiter, RateDecision, RateLimitConfig};

pub(crate) fn local_config(limit: u32, window: Duration) -> RateLimitConfig {
    RateLimitConfig {
        requests_per_window: limit,
        window,
        redis_url: None,
        key_prefix: "test".into(),
        ..RateLimitConfig::default()
    }
}

pub(crate) async fn drain(limiter: &Limiter, key: &str, n: u32) -> Vec<RateDecision> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(limiter.check(key).await);
    }
    out
}

pub(crate) fn header(d: &RateDecision, name: &str) -> Option<String> {
    d.headers()
        .into_iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, v)| v.to_str().unwrap().to_owned())
}

/// The (limit+1)th request within a window is denied with Retry-After; the budget
/// comes back as time passes, one request per window/limit.
#[tokio::test(start_paused = true)]
async fn in_process_denies_the_request_after_the_limit() {
    let limiter = Limiter::new(local_config(5, Duration::from_secs(60))).await;
    assert!(!limiter.redis_configured());

    let allowed = drain(&limiter, "ip:10.0.0.1", 5).await;
    assert!(allowed.iter().all(|d| d.allowed));
    let remaining: Vec<u32> = allowed.iter().map(|d| d.remaining).collect();
    assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
    assert_eq!(allowed[0].limit, 5);
    assert_eq!(allowed[0].retry_after, None);

    let denied = limiter.check("ip:10.0.0.1").await;
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    assert_eq!(denied.retry_after, Some(Duration::from_secs(12)));
    assert_eq!(header(&denied, "retry-after").as_deref(), Some("12"));
    assert_eq!(header(&denied, "ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(header(&denied, "ratelimit-reset").as_deref(), Some("60"));

    // Other clients are not affected.
    assert!(limiter.check("ip:10.0.0.2").await.allowed);

    // Just before the retry time: still denied. At it: one request, then denied again.
    tokio::time::advance(Duration::from_millis(11_999)).await;
    assert!(!limiter.check("ip:10.0.0.1").await.allowed);
    tokio::time::advance(Duration::from_millis(1)).await;
    let after = limiter.check("ip:10.0.0.1").await;
    assert!(after.allowed);
    assert_eq!(after.remaining, 0);
    assert!(!limiter.check("ip:10.0.0.1").await.allowed);

    // A full window later the whole budget is back.
    tokio::time::advance(Duration::from_secs(60)).await;
    let fresh = drain(&limiter, "ip:10.0.0.1", 6).await;
    assert_eq!(fresh.iter().filter(|d| d.allowed).count(), 5);
}

/// Over a long run, a client sending as fast as it can gets the budget per window
/// and no more.
#[tokio::test(start_paused = true)]
async fn in_process_never_exceeds_the_budget_per_window_in_steady_state() {
    let limiter = Limiter::new(local_config(10, Duration::from_secs(1))).await;
    let mut allowed = 0;
    // 5 s in 10 ms steps, 3 tries per step: far more than the budget.
    for _ in 0..500 {
        for d in drain(&limiter, "user:abc", 3).await {
            allowed += u32::from(d.allowed);
        }
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    // Checks run from 0 to 4.99 s: the burst of 10 at 0, then one every 100 ms
    // from 0.1 s to 4.9 s.
    assert_eq!(allowed, 10 + 49);
}

/// The defaults are the documented ones: 100 requests per 60 s.
#[tokio::test(start_paused = true)]
async fn default_config_allows_100_per_minute() {
    let limiter = Limiter::new(RateLimitConfig::default()).await;
    let decisions = drain(&limiter, "ip:1.2.3.4", 101).await;
    assert!(decisions[..100].iter().all(|d| d.allowed));
    assert!(!decisions[100].allowed);
    assert_eq!(decisions[100].retry_after, Some(Duration::from_millis(600)));
    assert_eq!(header(&decisions[100], "retry-after").as_deref(), Some("1"));
}

/// Keys whose budget is full again are forgotten, so memory follows the clients
/// active within one window, not every client ever seen.
#[tokio::test(start_paused = true)]
async fn in_process_forgets_idle_clients() {
    let limiter = Limiter::new(local_config(2, Duration::from_secs(1))).await;
    let clients = RETAIN_EVERY_CHECKS / 2;
    for i in 0..clients {
        limiter
            .check(&format!("ip:10.1.{}.{}", i / 256, i % 256))
            .await;
    }
    assert_eq!(limiter.local_tracked_keys() as u64, clients);

    tokio::time::advance(Duration::from_secs(2)).await;
    for _ in 0..RETAIN_EVERY_CHECKS - clients {
        limiter.check("ip:10.9.9.9").await;
    }
    assert!(
        limiter.local_tracked_keys() <= 1,
        "{}",
        limiter.local_tracked_keys()
    );
}

// ---------------------------------------------------------------- Redis

/// A key prefix no other test (or earlier run) uses.
/// Without the `redis` feature a Redis URL cannot be used: the limiter says
/// Redis is configured but degraded, and limits in-process.
#[cfg(not(feature = "redis"))]
#[tokio::test(start_paused = true)]
async fn a_build_without_redis_limits_in_process() {
    let limiter = Limiter::new(RateLimitConfig {
        redis_url: Some("redis://127.0.0.1:6379".to_owned()),
        ..local_config(2, Duration::from_secs(60))
    })
    .await;
    assert!(limiter.redis_configured());
    assert!(!limiter.redis_healthy().await);
    let decisions = drain(&limiter, "ip:1", 3).await;
    assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 2);
    assert!(limiter.is_degraded());
}
