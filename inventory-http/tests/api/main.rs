//! Integration tests of inventory-http over a real socket, in one binary.

// A test binary exports nothing; `pub` here only shares items between modules.
#![allow(unreachable_pub)]

mod bad_input;
mod batching;
mod cache;
mod events;
mod flows;
mod guard;
mod helpers;
mod stores;
mod tls;
