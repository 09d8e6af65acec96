//! The simulation passes on the stores we ship: seeded runs on the memory
//! store (deterministic: a run is the same each time), and concurrent runs
//! on PostgreSQL when a server is reachable.

use std::sync::Arc;

use inventory_sqlx::PgOptions;
use sim::faults::Faulty;
use sim::gen::Shape;
use sim::run::{run_concurrent, run_scheduled, FAULTS_DEFAULT};
use test_support::services::skip;

/// Seeds of the memory run in the test suite (CI runs more through the binary).
const MEMORY_SEEDS: u64 = 100;

/// Seeds of the PostgreSQL run in the test suite.
const POSTGRES_SEEDS: u64 = 5;

/// Every memory seed passes every check, and a seed replays identically.
#[test]
fn memory_seeds_pass_and_replay() {
    let mut faults = 0;
    for seed in 0..MEMORY_SEEDS {
        let report = run_scheduled(
            inventory_memory::MemoryStore::new(),
            seed,
            &Shape::default(),
            FAULTS_DEFAULT,
        )
        .expect("run");
        assert!(report.anomalies.is_empty(), "{report:?}");
        faults += report.faults.after_commit + report.faults.before_commit;
    }
    assert!(faults > MEMORY_SEEDS, "faults were injected: {faults}");
    let once = run_scheduled(
        inventory_memory::MemoryStore::new(),
        7,
        &Shape::default(),
        FAULTS_DEFAULT,
    );
    let again = run_scheduled(
        inventory_memory::MemoryStore::new(),
        7,
        &Shape::default(),
        FAULTS_DEFAULT,
    );
    assert_eq!(
        once.expect("run"),
        again.expect("run"),
        "same seed, same run"
    );
}

/// Concurrent seeded runs on PostgreSQL pass every check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_seeds_pass() {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        skip("TEST_DATABASE_URL is not set");
        return;
    };
    let (store, schema) = match sim::pg::fresh_store(&url, PgOptions::default()).await {
        Ok(made) => made,
        Err(e) => {
            skip(&format!("PostgreSQL unreachable: {e}"));
            return;
        }
    };
    let shape = Shape {
        steps: 30,
        ..Shape::default()
    };
    for seed in 0..POSTGRES_SEEDS {
        let faulty = Arc::new(Faulty::new(store.clone(), FAULTS_DEFAULT, seed));
        let report = run_concurrent(faulty, seed, &shape).await.expect("run");
        assert!(report.anomalies.is_empty(), "{report:?}");
    }
    drop(store);
    sim::pg::drop_schema(&url, &schema)
        .await
        .expect("drop schema");
}
