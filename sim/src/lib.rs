//! A seeded simulation of many clients against any
//! [`InventoryStore`](inventory_core::InventoryStore), with faults at the
//! store port, and a checker of the histories it records.
//!
//! - [`gen`]: what clients ask (every write, over few products with little
//!   stock).
//! - [`faults`]: [`faults::Faulty`], a store wrapper that fails writes before
//!   they commit, or commits them and loses the answer.
//! - [`history`]: the recorded calls and their projection onto each product.
//! - [`model`]: the rules of one product, written out again.
//! - [`check`]: linearizability per product (unknown outcomes may or may not
//!   have happened).
//! - [`pg`]: a PostgreSQL store in a schema of its own for a run.
//! - [`run`]: the deterministic scheduled run (same seed, same run on the
//!   memory store) and the concurrent run (for a real database), each
//!   followed by the checks and the store's invariants.
//!
//! ```
//! use sim::gen::Shape;
//! use sim::run::{run_scheduled, FAULTS_DEFAULT};
//!
//! let store = inventory_memory::MemoryStore::new();
//! let report = run_scheduled(store, 42, &Shape::default(), FAULTS_DEFAULT).unwrap();
//! assert!(report.anomalies.is_empty(), "{report:?}");
//! ```

pub mod check;
pub mod faults;
pub mod gen;
pub mod history;
pub mod model;
pub mod pg;
pub mod run;
