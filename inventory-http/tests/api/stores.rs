//! The stores the tests run on: the memory store, and PostgreSQL in a schema
//! of its own per test (dropped afterwards). Without a reachable server the
//! PostgreSQL tests print `skipped: <reason>` and pass, unless
//! `REQUIRE_SERVICES=1`.

use std::str::FromStr;
use std::time::Duration;

use inventory_http::AnyStore;
use inventory_memory::MemoryStore;
use inventory_sqlx::{PgOptions, PgStore};
use rand::Rng;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// The server used when `TEST_DATABASE_URL` is not set.
const DATABASE_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long the reachability check waits.
const CONNECT_TIMEOUT_MS: u64 = 3_000;

/// Connections of one test's pool: enough for 100 racing clients to queue on.
const TEST_POOL_SIZE: u32 = 16;

/// Prints why a test is skipped, or panics under `REQUIRE_SERVICES=1`.
pub fn skip(reason: &str) {
    if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("REQUIRE_SERVICES=1 but {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// A schema of its own, dropped with this value.
pub struct Schema {
    url: String,
    name: String,
}

/// Runs `cleanup` to completion on a runtime of its own, from a `Drop`
/// (which may run inside a test's runtime, where blocking is not allowed).
pub fn clean_up<F>(cleanup: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let worker = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cleanup runtime")
            .block_on(cleanup);
    });
    let _ = worker.join();
}

impl Schema {
    /// A connection of its own to this schema.
    pub async fn connect(&self) -> PgConnection {
        let options = PgConnectOptions::from_str(&self.url)
            .expect("valid TEST_DATABASE_URL")
            .options([("search_path", self.name.as_str())]);
        PgConnection::connect_with(&options).await.expect("connect")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        clean_up(async move {
            if let Ok(mut conn) = PgConnection::connect(&url).await {
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        });
    }
}

/// The memory store.
pub async fn memory() -> Option<(AnyStore, Option<Schema>)> {
    Some((AnyStore::Memory(Box::new(MemoryStore::new())), None))
}

/// A migrated PostgreSQL store in a fresh schema, or `None` when skipped.
pub async fn postgres() -> Option<(AnyStore, Option<Schema>)> {
    let url =
        std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DATABASE_URL_DEFAULT.to_owned());
    let connected = tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        PgConnection::connect(&url),
    )
    .await;
    let mut conn = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            skip(&format!("PostgreSQL at {url} is unreachable: {e}"));
            return None;
        }
        Err(_) => {
            skip(&format!("PostgreSQL at {url} did not answer in time"));
            return None;
        }
    };
    let name = format!("http_{:016x}", rand::rng().random::<u64>());
    sqlx::query(&format!("CREATE SCHEMA {name}"))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let _ = conn.close().await;
    let schema = Schema {
        url: url.clone(),
        name: name.clone(),
    };
    let options = PgConnectOptions::from_str(&url)
        .expect("valid TEST_DATABASE_URL")
        .options([("search_path", name.as_str())]);
    let store = PgStore::connect_with(
        options,
        PgOptions {
            pool_size_max: TEST_POOL_SIZE,
            ..PgOptions::default()
        },
    )
    .await
    .expect("connect to the test schema");
    store.migrate().await.expect("migrate the test schema");
    Some((AnyStore::Postgres(store), Some(schema)))
}

/// The Redis server used when neither `TEST_REDIS_URL` nor `REDIS_URL` is set.
const REDIS_URL_DEFAULT: &str = "redis://127.0.0.1:6379";

/// The test Redis URL if it answers `PING`, else `None` (after `skip`).
pub async fn redis_url() -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL")
        .or_else(|_| std::env::var("REDIS_URL"))
        .unwrap_or_else(|_| REDIS_URL_DEFAULT.to_owned());
    let ping = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), ping).await {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => {
            skip(&format!("Redis at {url} is unreachable: {e}"));
            None
        }
        Err(_) => {
            skip(&format!("Redis at {url} did not answer in time"));
            None
        }
    }
}
