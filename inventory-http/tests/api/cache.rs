//! The Redis availability cache: read-through, invalidated by every committed
//! change, and never a reason for a failed request.

use inventory_http::Config;
use serde_json::json;
use test_support::redis::redis_url;
use uuid::Uuid;

use crate::helpers::spawn_app;
use crate::stores;

async fn redis_get(url: &str, key: &str) -> Option<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn redis_set(url: &str, key: &str, value: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("EX")
        .arg(60)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

/// Reads are served from Redis once filled, and a read right after reserve
/// and after confirm shows the new figures (on both stores).
async fn read_after_confirm_is_fresh(store: inventory_http::AnyStore) {
    let Some(url) = redis_url().await else {
        return;
    };
    let config = Config {
        redis_url: Some(url.clone()),
        ..crate::helpers::test_config()
    };
    let t = spawn_app(store, config).await;
    let product = t.create_item(10).await;
    let key = format!("{}{product}", inventory_http::cache::KEY_PREFIX);
    assert_eq!(t.availability(product).await["available"], 10);
    let cached = redis_get(&url, &key).await.expect("filled on read");
    assert!(cached.contains("\"available\":10"), "{cached}");

    // Prove reads come from the cache: a doctored entry is what clients see.
    let doctored = cached.replace("\"available\":10", "\"available\":9");
    redis_set(&url, &key, &doctored).await;
    assert_eq!(t.availability(product).await["available"], 9);

    let r = t.reserve(product, 4).await;
    assert_eq!(r.status, 201);
    assert!(
        redis_get(&url, &key).await.is_none(),
        "reserve drops the entry"
    );
    let a = t.availability(product).await;
    assert_eq!(
        (a["available"].as_u64(), a["reserved"].as_u64()),
        (Some(6), Some(4))
    );

    let id = r.json()["reservation_id"].as_str().unwrap().to_owned();
    assert_eq!(
        t.availability(product).await["available"],
        6,
        "cached again"
    );
    let c = t
        .post("/api/inventory/confirm", &json!({"reservation_id": id}))
        .await;
    assert_eq!(c.status, 200);
    let a = t.availability(product).await;
    assert_eq!(
        (
            a["quantity"].as_u64(),
            a["reserved"].as_u64(),
            a["available"].as_u64()
        ),
        (Some(6), Some(0), Some(6)),
        "a read right after confirm shows the new figure"
    );
    let bulk = t
        .get(&format!("/api/inventory?product_ids={product}"))
        .await;
    assert_eq!(bulk.json()["items"][0]["quantity"], 6);
    t.shutdown().await;
}

#[tokio::test]
async fn cache_is_fresh_after_confirm_on_memory() {
    let (store, _) = stores::memory().await.unwrap();
    read_after_confirm_is_fresh(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_is_fresh_after_confirm_on_postgres() {
    let Some((store, _schema)) = stores::postgres().await else {
        return;
    };
    read_after_confirm_is_fresh(store).await;
}

/// With Redis unreachable, reads and writes still work (from the store and
/// the in-process limiter) and readiness names Redis.
#[tokio::test]
async fn redis_down_falls_back_to_the_store() {
    let (store, _) = stores::memory().await.unwrap();
    let config = Config {
        redis_url: Some("redis://127.0.0.1:1".to_owned()),
        ..crate::helpers::test_config()
    };
    let t = spawn_app(store, config).await;
    let product = t.create_item(3).await;
    assert_eq!(t.availability(product).await["available"], 3);
    assert_eq!(t.reserve(product, 1).await.status, 201);
    assert_eq!(t.availability(product).await["available"], 2);
    let ready = t.get("/health/ready").await;
    assert_eq!((ready.status, ready.code().as_str()), (503, "not_ready"));
    assert!(ready.json()["detail"].as_str().unwrap().contains("redis"));
    assert_eq!(t.get("/health").await.status, 200);
    let _ = Uuid::nil();
    t.shutdown().await;
}
