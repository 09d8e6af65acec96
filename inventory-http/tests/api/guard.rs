//! Authentication, authorization and rate limiting over the socket.

use std::time::Duration;

use http::Method;
use inventory_http::Config;
use serde_json::json;
use service_guard::Role;
use test_support::redis::redis_url;
use test_support::tokens;
use uuid::Uuid;

use crate::helpers::spawn_app;
use crate::stores;

const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

fn token(subject: &str, roles: &[Role]) -> String {
    tokens::hs256(SECRET, subject, roles, Duration::from_secs(300))
}

/// Writes need admin, reserve needs service or admin, reads need nothing;
/// 401 carries a challenge, 403 does not.
#[tokio::test]
async fn roles_gate_the_routes() {
    let (store, _) = stores::memory().await.unwrap();
    let mut config = crate::helpers::test_config();
    config.auth.jwt_secret = Some(SECRET.to_owned());
    let mut t = spawn_app(store, config).await;
    let product = Uuid::new_v4();
    let create = json!({"product_id": product, "quantity": 5});

    let anonymous = t.post("/api/inventory/items", &create).await;
    assert_eq!(
        (anonymous.status, anonymous.code().as_str()),
        (401, "missing_token")
    );
    assert!(anonymous
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));

    t.token = Some("not.a.jwt".to_owned());
    assert_eq!(t.post("/api/inventory/items", &create).await.status, 401);

    t.token = Some(token("svc-orders", &[Role::Service]));
    let service = t.post("/api/inventory/items", &create).await;
    assert_eq!(
        (service.status, service.code().as_str()),
        (403, "forbidden")
    );

    t.token = Some(token("alice-admin", &[Role::Admin]));
    assert_eq!(t.post("/api/inventory/items", &create).await.status, 201);
    let ledger = t
        .get(&format!("/api/inventory/{product}/adjustments"))
        .await;
    assert_eq!(ledger.json()["adjustments"][0]["actor"], "alice-admin");

    t.token = Some(token("bob", &[Role::Customer]));
    let customer = t.reserve(product, 1).await;
    assert_eq!(
        (customer.status, customer.code().as_str()),
        (403, "forbidden")
    );

    t.token = Some(token("svc-orders", &[Role::Service]));
    assert_eq!(t.reserve(product, 1).await.status, 201);

    t.token = None;
    assert_eq!(
        t.get(&format!("/api/inventory/{product}")).await.status,
        200,
        "reads are public"
    );
    t.shutdown().await;
}

/// The 101st API request within a minute from one client is refused with
/// 429, `Retry-After` and rate-limit headers; operations routes are not limited.
async fn hundred_and_first_is_refused(config: Config) {
    let (store, _) = stores::memory().await.unwrap();
    let t = spawn_app(store, config).await;
    let path = format!("/api/inventory/{}", Uuid::new_v4());
    for i in 0..100 {
        let r = t.get(&path).await;
        assert_eq!(r.status, 404, "request {i}");
        assert!(r.header("ratelimit-remaining").is_some());
    }
    let refused = t.get(&path).await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (429, "rate_limited")
    );
    assert!(
        refused
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(refused.header("ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(t.send(Method::GET, "/health", &[], b"").await.status, 200);
    t.shutdown().await;
}

#[tokio::test]
async fn rate_limit_in_process() {
    hundred_and_first_is_refused(Config::embedded()).await;
}

#[tokio::test]
async fn rate_limit_shared_in_redis() {
    let Some(url) = redis_url().await else {
        return;
    };
    hundred_and_first_is_refused(Config {
        redis_url: Some(url),
        rate_limit: service_kit::settings::RateLimitSettings {
            rate_limit_key_prefix: Some(format!("test-ratelimit-{}", Uuid::new_v4())),
            ..Default::default()
        },
        ..Config::embedded()
    })
    .await;
}
