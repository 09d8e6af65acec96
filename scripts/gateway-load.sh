#!/usr/bin/env bash
# Gateway overhead: GET availability through the gateway next to the same
# request straight to inventory-http, same machine, same run, with wrk.
# Both servers are the release `shop` binary (`shop inventory`, `shop gateway`),
# each in its own process, with a JWT key configured (availability reads are
# public routes, so requests carry no token) and rate limits off.
# Prints a markdown table for docs/benchmarks.md.
#
# Usage: scripts/gateway-load.sh [connections=64] [duration_secs=15] [threads=2]
# Env:   SERVER_LOG (RUST_LOG of both servers during the run, default "warn")
set -euo pipefail

CONNECTIONS="${1:-64}"
DURATION_SECS="${2:-15}"
THREADS="${3:-2}"
WARMUP_SECS=3
INVENTORY_ADDR=127.0.0.1:18180
GATEWAY_ADDR=127.0.0.1:18100
SERVER_LOG="${SERVER_LOG:-warn}"
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get install -y wrk >/dev/null
fi

cargo build --release -q -p stack
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
SHOP="$TARGET_DIR/release/shop"
JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export JWT_SECRET

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

RUST_LOG="$SERVER_LOG" RATE_LIMIT_PER_MINUTE=0 LISTEN_ADDR="$INVENTORY_ADDR" \
  "$SHOP" inventory >/dev/null 2>&1 &
pids+=($!)
RUST_LOG="$SERVER_LOG" RATE_LIMIT_IP_PER_MINUTE=0 RATE_LIMIT_USER_PER_MINUTE=0 \
  LISTEN_ADDR="$GATEWAY_ADDR" INVENTORY_URL="http://$INVENTORY_ADDR" ORDERS_URL="http://127.0.0.1:9" \
  "$SHOP" gateway >/dev/null 2>&1 &
pids+=($!)

wait_up() { for _ in $(seq 1 100); do curl -fs "http://$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "server $1 did not start" >&2; exit 1; }
wait_up "$INVENTORY_ADDR" /health
wait_up "$GATEWAY_ADDR" /health/ready

PRODUCT=3b0f6f52-7f0e-4c39-9a55-6d1c2b8e4f10
ADMIN="$("$SHOP" gateway token --sub load-admin --role admin)"
curl -fs -X POST "http://$GATEWAY_ADDR/api/inventory/items" -H 'content-type: application/json' \
  -H "authorization: Bearer $ADMIN" -d "{\"product_id\":\"$PRODUCT\",\"quantity\":1000}" >/dev/null

# Prints "req/s p50 p99" for one URL at $1 connections.
measure() {
  local conns=$1 url=$2
  wrk -t"$THREADS" -c"$conns" -d"${WARMUP_SECS}s" "$url" >/dev/null
  local out
  out="$(wrk -t"$THREADS" -c"$conns" -d"${DURATION_SECS}s" --latency "$url")"
  if echo "$out" | grep -q "Non-2xx"; then echo "non-2xx answers from $url" >&2; echo "$out" >&2; exit 1; fi
  local rps p50 p99
  rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
  p50="$(echo "$out" | awk '$1=="50%" {print $2}')"
  p99="$(echo "$out" | awk '$1=="99%" {print $2}')"
  echo "$rps $p50 $p99"
}

DIRECT="http://$INVENTORY_ADDR/api/inventory/$PRODUCT"
VIA="http://$GATEWAY_ADDR/api/inventory/$PRODUCT"
echo "| connections | target | req/s | p50 | p99 |"
echo "|---|---|---|---|---|"
for conns in "$CONNECTIONS" 1; do
  t=$THREADS
  [ "$conns" -lt "$t" ] && t=$conns
  read -r d_rps d_p50 d_p99 < <(THREADS=$t measure "$conns" "$DIRECT")
  read -r g_rps g_p50 g_p99 < <(THREADS=$t measure "$conns" "$VIA")
  echo "| $conns | inventory direct | $d_rps | $d_p50 | $d_p99 |"
  echo "| $conns | through the gateway | $g_rps | $g_p50 | $g_p99 |"
  awk -v d="$d_rps" -v g="$g_rps" -v c="$conns" \
    'BEGIN {printf "| %s | gateway cost | %.1f%% less throughput | +%.1f µs per request | |\n", c, (1 - g / d) * 100, (1e6 / g - 1e6 / d)}'
done
echo
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION_SECS}s (and -c1), ${WARMUP_SECS}s warm-up each; $(nproc) CPUs shared by wrk and both servers; RUST_LOG=$SERVER_LOG"
