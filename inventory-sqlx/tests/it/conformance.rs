//! The conformance kit of inventory-core, unchanged, against PostgreSQL in
//! both concurrency modes.

use std::sync::Mutex;

use inventory_core::testkit::{run_all, Harness, Task};
use inventory_sqlx::{Concurrency, PgOptions, PgStore};

use crate::support::TestDb;

/// Connections per store: the kit's races run 100 tasks through one pool.
const KIT_POOL_SIZE: u32 = 10;

/// Every store in a schema of its own; the schemas go when the harness does.
struct PgHarness {
    options: PgOptions,
    schemas: Mutex<Vec<TestDb>>,
}

impl Harness for PgHarness {
    type Store = PgStore;

    async fn store(&self) -> PgStore {
        let db = TestDb::create().await.expect("server checked at start");
        let store = db.store(KIT_POOL_SIZE, self.options.clone()).await;
        self.schemas.lock().expect("schemas").push(db);
        store
    }

    async fn run_concurrently(&self, tasks: Vec<Task>) {
        let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
        for handle in handles {
            handle.await.expect("a concurrent task panicked");
        }
    }
}

async fn run_kit(options: PgOptions) {
    let Some(probe) = TestDb::create().await else {
        return;
    };
    drop(probe);
    let harness = PgHarness {
        options,
        schemas: Mutex::new(Vec::new()),
    };
    run_all(&harness).await;
}

/// The row-locking store passes every rule of the kit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_kit_with_row_locks() {
    run_kit(PgOptions::default()).await;
}

/// The optimistic store passes every rule of the kit too, given retries
/// enough for the kit's 100-task races on a 10-connection pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_kit_optimistic() {
    run_kit(PgOptions {
        concurrency: Concurrency::Optimistic,
        retries_max: 64,
        ..PgOptions::default()
    })
    .await;
}
