//! Integration tests of the event bus against a real RabbitMQ (and
//! PostgreSQL for the shared outbox): a scripted run end to end, 10,000
//! events across forced connection loss, poison messages, transient
//! failures retried until they apply, two relays on one
//! PostgreSQL outbox, the in-process bus, and a relay whose broker is down.
//!
//! Each test declares uniquely named exchanges and queues and deletes them
//! when it ends. Without a reachable server a test prints why it was
//! skipped, unless `REQUIRE_SERVICES=1`, which makes it fail.

mod broker_close;
mod broker_down;
mod common;
mod faults;
mod in_process;
mod lanes;
mod pg_relays;
mod poison;
mod restart;
mod scripted;
mod support;
mod tls;
mod transient;
