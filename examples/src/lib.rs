//! Runnable examples live in `examples/`: `cargo run --release --example embedded`.
