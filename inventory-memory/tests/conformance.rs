//! The shared conformance kit of `inventory-core`, run against the memory
//! store with one OS thread per concurrent task.

use std::sync::{Arc, Barrier};
use std::thread;

use inventory_core::testkit::{run_all, Harness, KitConfig, Task};
use inventory_memory::MemoryStore;

/// Real threads, released together by a barrier, each driving its task to
/// completion (the store's futures never wait, so `block_on` is enough).
struct Threads;

impl Harness for Threads {
    type Store = MemoryStore;

    async fn store(&self) -> MemoryStore {
        MemoryStore::new()
    }

    async fn run_concurrently(&self, tasks: Vec<Task>) {
        let barrier = Arc::new(Barrier::new(tasks.len()));
        let threads: Vec<_> = tasks
            .into_iter()
            .map(|task| {
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    pollster::block_on(task);
                })
            })
            .collect();
        for thread in threads {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    fn config(&self) -> KitConfig {
        KitConfig {
            race_tasks: 100,
            race_rounds: 200,
            mix_tasks: 100,
            ..KitConfig::default()
        }
    }
}

/// The memory store passes every rule of the kit, including 200 rounds of 100
/// threads racing for the last unit.
#[test]
fn memory_store_passes_the_conformance_kit() {
    pollster::block_on(run_all(&Threads));
}
