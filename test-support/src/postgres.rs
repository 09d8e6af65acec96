//! A PostgreSQL schema of its own per test, on the server named by
//! `TEST_DATABASE_URL`, dropped with everything in it when the test ends
//! (also when it fails). Without a reachable server the test is skipped (see
//! [`crate::services`]).

use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::cleanup;
use crate::services::{skipped, url_from_env};

/// The server the tests use when `TEST_DATABASE_URL` is not set.
pub const DATABASE_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long the reachability check waits: a server that does not answer in
/// this time is absent.
const CONNECT_TIMEOUT_MS: u64 = 3_000;

/// `TEST_DATABASE_URL`, else [`DATABASE_URL_DEFAULT`].
pub fn database_url() -> String {
    url_from_env(&["TEST_DATABASE_URL"], DATABASE_URL_DEFAULT)
}

/// A connection to the test server and its URL, or `None` (after
/// [`skip`](crate::services::skip)) when it does not answer within 3 s.
///
/// # Panics
/// When the server is unreachable and `REQUIRE_SERVICES=1`.
pub async fn connect_or_skip() -> Option<(PgConnection, String)> {
    let url = database_url();
    let connected = tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        PgConnection::connect(&url),
    )
    .await;
    match connected {
        Ok(Ok(conn)) => Some((conn, url)),
        Ok(Err(e)) => skipped(&format!("PostgreSQL at {url} is unreachable: {e}")),
        Err(_) => skipped(&format!("PostgreSQL at {url} did not answer in time")),
    }
}

/// A schema of its own on the test server (`test_<random>`), dropped with
/// everything in it when this value is dropped.
#[derive(Debug)]
pub struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    /// Creates a fresh schema, or returns `None` (after printing why) when
    /// the server cannot be reached and `REQUIRE_SERVICES` is not `1`.
    ///
    /// # Panics
    /// When the server is unreachable and `REQUIRE_SERVICES=1`, or refuses
    /// to create the schema.
    pub async fn create() -> Option<Self> {
        let (mut conn, url) = connect_or_skip().await?;
        let name = format!("test_{:016x}", rand::rng().random::<u64>());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .expect("create test schema");
        let _ = conn.close().await;
        Some(Self { url, name })
    }

    /// The server's URL (sessions on it start outside this schema).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection options whose sessions work in this schema
    /// (`search_path`).
    ///
    /// # Panics
    /// When `TEST_DATABASE_URL` does not parse.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .expect("valid TEST_DATABASE_URL")
            .options([("search_path", self.name.as_str())])
    }

    /// A pool of at most `connections_max` connections working in this
    /// schema.
    ///
    /// # Panics
    /// When it cannot connect.
    pub async fn pool(&self, connections_max: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(connections_max)
            .connect_with(self.connect_options())
            .await
            .expect("connect to the test schema")
    }

    /// A connection of its own working in this schema.
    ///
    /// # Panics
    /// When it cannot connect.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect_with(&self.connect_options())
            .await
            .expect("connect to the test schema")
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        cleanup::block_on(async move {
            if let Ok(mut conn) = PgConnection::connect(&url).await {
                let drop_schema = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                if let Err(e) = sqlx::query(&drop_schema).execute(&mut conn).await {
                    eprintln!("could not drop test schema {name}: {e}");
                }
                let _ = conn.close().await;
            }
        });
    }
}
