//! Integration tests of the PostgreSQL store against a real server: the
//! conformance kit of inventory-core, races for the last unit, a random mix
//! checked in SQL, concurrent sweepers, and error mapping.
//!
//! Each test works in a schema of its own that it drops afterwards. Without a
//! reachable server the tests print why they were skipped, unless
//! `REQUIRE_SERVICES=1`, which makes them fail.

mod conformance;
mod errors;
mod mix;
mod races;
mod support;
mod sweep;
