//! The server's clients over TLS, with certificates of CAs made for the
//! test: PostgreSQL (`sslmode=verify-full`) and Redis (`rediss://`).

use std::str::FromStr;

use inventory_http::{AnyStore, Config};
use inventory_sqlx::{PgOptions, PgStore};
use serde_json::json;
use service_guard::TlsClient;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use test_support::postgres::TestSchema;
use test_support::tls::{postgres_tls, TempDir, TestCa, TlsRedis};

use crate::helpers::{spawn_app, test_config};

/// Whether the session of `conn` is encrypted, as the server sees it.
async fn encrypted(conn: &mut PgConnection) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(conn)
        .await
        .expect("read pg_stat_ssl")
}

/// `url` working in `schema`.
fn in_schema(url: &str, schema: &TestSchema) -> PgConnectOptions {
    PgConnectOptions::from_str(url)
        .expect("valid url")
        .options([("search_path", schema.name())])
}

/// Goal: the PostgreSQL store runs over TLS verified with
/// `sslmode=verify-full` and the test CA as `sslrootcert`: the server sees
/// encrypted sessions, and creating, reserving, confirming and reading stock
/// all work through the server; a CA that did not sign the server's
/// certificate is refused.
#[tokio::test]
async fn postgres_store_over_verified_tls() {
    let Some(pg) = postgres_tls().await else {
        return;
    };
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let mut probe = PgConnection::connect_with(&in_schema(&pg.url, &schema))
        .await
        .expect("verify-full with the test ca");
    let store = PgStore::connect_with(in_schema(&pg.url, &schema), PgOptions::default())
        .await
        .expect("store over tls");
    store.migrate().await.expect("migrate over tls");
    let mut pooled = store.pool().acquire().await.expect("a pooled connection");
    let pooled_encrypted = encrypted(&mut pooled).await;
    drop(pooled);
    let app = spawn_app(AnyStore::Postgres(store), test_config()).await;
    let dir = TempDir::new("pg-wrong-ca");
    let wrong_ca = TestCa::new("not the server's ca").write(&dir, "wrong.pem");
    let wrong_url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.plain_url,
        wrong_ca.display()
    );

    let product = app.create_item(10).await;
    let reserved = app.reserve(product, 3).await;
    let reservation = reserved.json()["reservation_id"].clone();
    let confirmed = app
        .post(
            "/api/inventory/confirm",
            &json!({ "reservation_id": reservation }),
        )
        .await;
    let after = app.availability(product).await;
    let refused = PgConnection::connect(&wrong_url).await;

    assert!(
        encrypted(&mut probe).await,
        "the probe session is encrypted"
    );
    assert!(pooled_encrypted, "the store's sessions are encrypted");
    assert_eq!(reserved.status, 201, "{:?}", reserved.json());
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.json());
    assert_eq!(
        (after["quantity"].as_i64(), after["available"].as_i64()),
        (Some(7), Some(7))
    );
    let err = refused.expect_err("a certificate of another ca must be refused");
    assert!(err.to_string().contains("certificate"), "{err}");
    app.shutdown().await;
    let _ = probe.close().await;
}

/// Goal: the extra CA setting (`TLS_CA_FILE`) verifies PostgreSQL when the
/// URL asks for `verify-full` without naming an `sslrootcert`; the system's
/// roots alone refuse the same server.
#[tokio::test]
async fn the_tls_ca_file_setting_verifies_postgres() {
    let Some(pg) = postgres_tls().await else {
        return;
    };
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let url = format!(
        "{}?sslmode=verify-full&options=-c%20search_path%3D{}",
        pg.plain_url,
        schema.name()
    );
    let config = Config {
        database_url: Some(url),
        ..test_config()
    };
    let trusting = TlsClient::new(Some(&pg.ca_file)).expect("the ca file");

    let opened = AnyStore::open(&config, &trusting).await;
    let refused = AnyStore::open(&config, &TlsClient::system()).await;

    assert_eq!(
        opened.expect("verified with the extra ca").kind(),
        "postgres"
    );
    assert!(
        refused.is_err(),
        "the system's roots do not know the test ca"
    );
}

/// Goal: the availability cache and the shared rate limiter work over
/// `rediss://` against a TLS-only Redis whose certificate the extra CA
/// signed: a read fills the cache (seen through a TLS client of the test),
/// and the limiter's budget is shared through that Redis, not in-process.
#[tokio::test]
async fn cache_and_rate_limit_over_rediss() {
    let ca = TestCa::new("redis test ca");
    let Some(redis) = TlsRedis::start(&ca).await else {
        return;
    };
    let dir = TempDir::new("rediss");
    let mut config = test_config();
    config.redis_url = Some(redis.url());
    config.tls.tls_ca_file = Some(ca.write(&dir, "ca.pem"));
    // A budget of 3 a minute: its Redis key lives for 20 s after each
    // request (a larger budget's key expires within milliseconds).
    config.rate_limit.rate_limit_per_minute = 3;
    let tls = config.tls.client().expect("the ca file");
    let app = spawn_app(inventory_memory::MemoryStore::new(), config).await;

    let product = app.create_item(4).await;
    let read = app.availability(product).await;
    let client = tls.redis_client(&redis.url()).expect("rediss url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("a tls connection to the test redis");
    let key = format!("{}{product}", inventory_http::cache::KEY_PREFIX);
    let cached: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    let limiter_keys: Vec<String> = redis::cmd("KEYS")
        .arg("inventory-http:ratelimit:*")
        .query_async(&mut conn)
        .await
        .expect("KEYS");

    assert_eq!(read["available"].as_i64(), Some(4));
    assert!(
        cached.is_some_and(|c| c.contains("\"available\":4")),
        "the read filled the cache over tls"
    );
    assert!(
        !limiter_keys.is_empty(),
        "the limiter counted in redis over tls"
    );
    app.shutdown().await;
}
