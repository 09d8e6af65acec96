//! Runnable examples of the inventory library, in `examples/`:
//!
//! - `embedded`: a flash sale on real threads with the memory store's
//!   synchronous calls (`cargo run --release -p examples --example embedded`);
//! - `events`: consuming the events in process, through `Maintenance`;
//! - `postgres`: the PostgreSQL store behind group commit (`DATABASE_URL`);
//! - `custom_store`: a store of your own, proven by the conformance kit.
