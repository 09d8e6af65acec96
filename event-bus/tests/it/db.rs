//! A PostgreSQL schema of one's own per test.

use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use crate::support::skip;

/// The database the tests use when `TEST_DATABASE_URL` is not set.
const DATABASE_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long the reachability check waits.
const CONNECT_TIMEOUT_MS: u64 = 3_000;

/// A schema of its own on the test database, dropped with everything in it
/// when this value is dropped.
pub(crate) struct TestDb {
    url: String,
    schema: String,
}

impl TestDb {
    /// A fresh schema, or `None` (after printing why) when PostgreSQL is
    /// unreachable and `REQUIRE_SERVICES` is not `1`.
    pub(crate) async fn create() -> Option<TestDb> {
        let url =
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DATABASE_URL_DEFAULT.to_owned());
        let connected = tokio::time::timeout(
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            PgConnection::connect(&url),
        )
        .await;
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                skip(&format!("PostgreSQL at {url} is unreachable: {e}"));
                return None;
            }
            Err(_) => {
                skip(&format!("PostgreSQL at {url} did not answer in time"));
                return None;
            }
        };
        let schema = format!("eb_{:016x}", rand::rng().random::<u64>());
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("create test schema");
        let _ = conn.close().await;
        Some(TestDb { url, schema })
    }

    /// A pool of `size` connections working in this schema.
    pub(crate) async fn pool(&self, size: u32) -> sqlx::PgPool {
        let options = PgConnectOptions::from_str(&self.url)
            .expect("valid TEST_DATABASE_URL")
            .options([("search_path", self.schema.as_str())]);
        PgPoolOptions::new()
            .max_connections(size)
            .connect_with(options)
            .await
            .expect("connect to the test schema")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let drop_schema = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                    let _ = sqlx::query(&drop_schema).execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
