//! The stores the tests run on: the memory store, and PostgreSQL in a schema
//! of its own per test (dropped afterwards). Without a reachable server the
//! PostgreSQL tests print `skipped: <reason>` and pass, unless
//! `REQUIRE_SERVICES=1`.

use inventory_http::AnyStore;
use inventory_memory::MemoryStore;
use inventory_sqlx::{PgOptions, PgStore};
use test_support::postgres::TestSchema;

/// Connections of one test's pool: enough for 100 racing clients to queue on.
const TEST_POOL_SIZE: u32 = 16;

/// The memory store.
pub async fn memory() -> Option<(AnyStore, Option<TestSchema>)> {
    Some((AnyStore::Memory(Box::new(MemoryStore::new())), None))
}

/// A migrated PostgreSQL store in a fresh schema, or `None` when skipped.
pub async fn postgres() -> Option<(AnyStore, Option<TestSchema>)> {
    let schema = TestSchema::create().await?;
    let store = PgStore::connect_with(
        schema.connect_options(),
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
