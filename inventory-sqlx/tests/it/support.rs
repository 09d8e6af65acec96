//! Test databases: a fresh schema per test on the server named by
//! `TEST_DATABASE_URL`, dropped when the test ends (also when it fails).

use std::str::FromStr;
use std::time::Duration;

use inventory_core::{
    Actor, Command, InventoryStore, OrderId, ProductId, Quantity, ReservationId, Reserve,
    ReserveLine, StockLevel, Timestamp, Ttl,
};
use inventory_sqlx::{PgOptions, PgStore};
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The server the tests use when `TEST_DATABASE_URL` is not set.
const DATABASE_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long the reachability check waits for the server.
const CONNECT_TIMEOUT_MS: u64 = 3_000;

/// An instant well after the epoch, where the tests' clocks start.
pub(crate) const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DATABASE_URL_DEFAULT.to_owned())
}

/// A schema of its own on the test server; dropped (with everything in it)
/// when this value is dropped.
pub(crate) struct TestDb {
    url: String,
    schema: String,
}

impl TestDb {
    /// Creates a fresh schema, or returns `None` (after printing why) when the
    /// server cannot be reached and `REQUIRE_SERVICES` is not `1`.
    pub(crate) async fn create() -> Option<TestDb> {
        let url = database_url();
        let connected = tokio::time::timeout(
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            PgConnection::connect(&url),
        )
        .await;
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return skip(&format!("PostgreSQL at {url} is unreachable: {e}")),
            Err(_) => return skip(&format!("PostgreSQL at {url} did not answer in time")),
        };
        let schema = format!("t_{:016x}", rand::rng().random::<u64>());
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("create test schema");
        let _ = conn.close().await;
        Some(TestDb { url, schema })
    }

    /// Connection options whose sessions work in this schema.
    pub(crate) fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .expect("valid TEST_DATABASE_URL")
            .options([("search_path", self.schema.as_str())])
    }

    /// A store with a pool of its own (at most `pool_size` connections) on
    /// this schema, migrated.
    pub(crate) async fn store(&self, pool_size: u32, options: PgOptions) -> PgStore {
        let store = PgStore::connect_with(
            self.connect_options(),
            PgOptions {
                pool_size_max: pool_size,
                ..options
            },
        )
        .await
        .expect("connect to the test schema");
        store.migrate().await.expect("migrate the test schema");
        store
    }

    /// A plain pool on this schema, for checks in SQL.
    pub(crate) async fn pool(&self) -> sqlx::PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(self.connect_options())
            .await
            .expect("connect to the test schema")
    }
}

fn skip(reason: &str) -> Option<TestDb> {
    if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("REQUIRE_SERVICES=1 but {reason}");
    }
    eprintln!("skipped: {reason}");
    None
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop may run inside the test's runtime, or while a failed test
        // unwinds: do the cleanup on a thread with a runtime of its own.
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let drop_schema = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                    if let Err(e) = sqlx::query(&drop_schema).execute(&mut conn).await {
                        eprintln!("could not drop test schema {schema}: {e}");
                    }
                    let _ = conn.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A fresh product id.
pub(crate) fn product() -> ProductId {
    ProductId::from_uuid(Uuid::new_v4())
}

/// A fresh order id.
pub(crate) fn order() -> OrderId {
    OrderId::from_uuid(Uuid::new_v4())
}

/// `T0` plus `ms` milliseconds.
pub(crate) fn at_ms(ms: i64) -> inventory_core::Meta {
    inventory_core::Meta::at(Timestamp::from_millis(T0.as_millis() + ms))
}

/// A create command.
pub(crate) fn create_cmd(product_id: ProductId, quantity: i64) -> Command {
    Command::CreateItem {
        product_id,
        quantity: StockLevel::new(quantity).expect("valid stock"),
        actor: Actor::system(),
    }
}

/// Creates an item with `quantity` units at `T0`.
pub(crate) async fn create(store: &PgStore, quantity: i64) -> ProductId {
    let product_id = product();
    store
        .execute(create_cmd(product_id, quantity), &at_ms(0))
        .await
        .expect("create item");
    product_id
}

/// A single-line reserve with a fresh reservation id.
pub(crate) fn reserve(
    order_id: OrderId,
    product_id: ProductId,
    quantity: i64,
    ttl_ms: u64,
) -> Command {
    let line = ReserveLine {
        product_id,
        quantity: Quantity::new(quantity).expect("valid quantity"),
        reservation_id: ReservationId::from_uuid(Uuid::new_v4()),
    };
    Command::Reserve(Reserve::single(
        order_id,
        line,
        Ttl::from_millis(ttl_ms).expect("valid ttl"),
    ))
}
