#!/usr/bin/env bash
# What a new user gets from `cargo add inventory-core inventory-memory`: a
# project outside the workspace, depending on the crates by version as
# `cargo package` packed them (target/package, made by the packaging step),
# whose main is the quick start of inventory-memory's README, built and run.
#
#   cargo package -p inventory-core -p inventory-memory && bash scripts/new-user.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
packaged=$root/target/package
for crate in inventory-core inventory-memory; do
    [ -d "$packaged/$crate-0.1.0" ] || { echo "no $packaged/$crate-0.1.0: run cargo package first" >&2; exit 1; }
done
project=$(mktemp -d)
trap 'rm -rf "$project"' EXIT
mkdir -p "$project/src"
cat > "$project/Cargo.toml" <<TOML
[package]
name = "new-user"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
inventory-core = "0.1"
inventory-memory = { version = "0.1", features = ["maintenance"] }
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }

# The packed crates stand in for crates.io's.
[patch.crates-io]
inventory-core = { path = "$packaged/inventory-core-0.1.0" }
inventory-memory = { path = "$packaged/inventory-memory-0.1.0" }

[workspace]
TOML
# The README's first Rust block, as written there.
awk '/^```rust/{on=1; next} /^```/{if(on){exit}} on' "$root/inventory-memory/README.md" > "$project/src/main.rs"
lines=$(grep -cv '^\s*$' "$project/src/main.rs")
echo "the quick start: $lines lines of code (src/main.rs below)"
cat "$project/src/main.rs"
CARGO_TARGET_DIR=$root/target/new-user cargo run -q --manifest-path "$project/Cargo.toml"
