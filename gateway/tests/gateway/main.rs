//! Integration tests of the gateway over real sockets, in one binary: the real
//! inventory server behind it, and a recording upstream where a test needs
//! to see exactly which headers arrive.

// A test binary exports nothing; `pub` here only shares items between modules.
#![allow(unreachable_pub)]

mod auth;
mod failures;
mod helpers;
mod routing;
mod tls;
