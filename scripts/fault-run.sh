#!/usr/bin/env bash
# Fault runs of the whole system on this machine's PostgreSQL, Redis and
# RabbitMQ: `shop inventory`, `shop orders` and `shop gateway` as separate
# processes, a mixed load through the gateway, faults one after another
# (PostgreSQL, RabbitMQ and Redis stopped and started, kill -9 of each
# service, the orders -> inventory link dropped and blackholed), then every
# invariant checked in SQL and through the APIs. See docs/operations.md.
#
# It stops and starts the shared services: run it only where nothing else
# uses them. Whatever it stopped it starts again, even when it fails.
#
# Usage: scripts/fault-run.sh [short|full|soak] [fault-run flags...]
#   short  five faults, short holds, 40 req/s (about 1.5 minutes; CI)
#   full   every fault, longer holds
#   soak   no faults: 10 minutes of load, memory of each process every 10 s
# Env:   PROFILE=release (default) or debug: which build of shop to run.
# Writes the report, the history of every request and the services' logs
# to <target>/fault-run/<plan>/.
set -euo pipefail
PLAN="${1:-short}"
shift || true
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

PROFILE="${PROFILE:-release}"
BUILD=()
[ "$PROFILE" = release ] && BUILD=(--release)
cargo build -q "${BUILD[@]}" -p stack -p faults
TARGET_DIR="$(target_dir)"
BIN="$TARGET_DIR/$PROFILE"
exec "$BIN/fault-run" --plan "$PLAN" --shop "$BIN/shop" --out "$TARGET_DIR/fault-run/$PLAN" "$@"
