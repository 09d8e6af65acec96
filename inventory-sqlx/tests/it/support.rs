//! Test databases: a fresh schema per test on the server named by
//! `TEST_DATABASE_URL` (from `test_support::postgres`), dropped when the test
//! ends (also when it fails), with the store on it; and command builders.

use inventory_core::{
    Actor, Command, InventoryStore, OrderId, ProductId, Quantity, ReservationId, Reserve,
    ReserveLine, StockLevel, Timestamp, Ttl,
};
use inventory_sqlx::{PgOptions, PgStore};
use test_support::postgres::TestSchema;
use uuid::Uuid;

/// An instant well after the epoch, where the tests' clocks start.
pub(crate) const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

/// A schema of its own on the test server (see [`TestSchema`]), with this
/// crate's store on it; dropped (with everything in it) when this value is
/// dropped.
pub(crate) struct TestDb(TestSchema);

impl TestDb {
    /// Creates a fresh schema, or returns `None` (after printing why) when the
    /// server cannot be reached and `REQUIRE_SERVICES` is not `1`.
    pub(crate) async fn create() -> Option<TestDb> {
        TestSchema::create().await.map(TestDb)
    }

    /// A store with a pool of its own (at most `pool_size` connections) on
    /// this schema, migrated.
    pub(crate) async fn store(&self, pool_size: u32, options: PgOptions) -> PgStore {
        let store = PgStore::connect_with(
            self.0.connect_options(),
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
        self.0.pool(2).await
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
pub(crate) fn create_cmd(product_id: ProductId, quantity: u64) -> Command {
    Command::CreateItem {
        product_id,
        quantity: StockLevel::new(quantity).expect("valid stock"),
        actor: Actor::system(),
    }
}

/// Creates an item with `quantity` units at `T0`.
pub(crate) async fn create(store: &PgStore, quantity: u64) -> ProductId {
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
    quantity: u64,
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
