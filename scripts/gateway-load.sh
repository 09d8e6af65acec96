#!/usr/bin/env bash
# Gateway overhead: GET availability through the gateway next to the same
# request straight to inventory-http, same machine, same run, with wrk.
# Both servers are the release `shop` binary (`shop inventory`, `shop gateway`),
# each in its own process, with a JWT key configured (availability reads are
# public routes, so requests carry no token) and rate limits off.
# Prints a markdown table for docs/benchmarks.md.
#
# Usage: scripts/gateway-load.sh [connections=64] [duration_secs=5] [threads=2] [rounds=5]
# Env:   SERVER_LOG (RUST_LOG of both servers during the run, default "warn")
set -euo pipefail

CONNECTIONS="${1:-64}"
DURATION_SECS="${2:-5}"
THREADS="${3:-2}"
ROUNDS="${4:-5}"
WARMUP_SECS=3
INVENTORY_ADDR=127.0.0.1:18180
GATEWAY_ADDR=127.0.0.1:18100
SERVER_LOG="${SERVER_LOG:-warn}"
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

need_wrk

cargo build --release -q -p stack
TARGET_DIR="$(target_dir)"
SHOP="$TARGET_DIR/release/shop"
JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export JWT_SECRET

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

RUST_LOG="$SERVER_LOG" RATE_LIMIT_PER_MINUTE=0 LISTEN_ADDR="$INVENTORY_ADDR" \
  "$SHOP" inventory >/dev/null 2>&1 &
INVENTORY_PID=$!
pids+=($!)
RUST_LOG="$SERVER_LOG" RATE_LIMIT_IP_PER_MINUTE=0 RATE_LIMIT_USER_PER_MINUTE=0 \
  LISTEN_ADDR="$GATEWAY_ADDR" INVENTORY_URL="http://$INVENTORY_ADDR" ORDERS_URL="http://127.0.0.1:9" \
  "$SHOP" gateway >/dev/null 2>&1 &
GATEWAY_PID=$!
pids+=($!)

wait_up() { for _ in $(seq 1 100); do curl -fs "http://$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "server $1 did not start" >&2; exit 1; }
wait_up "$INVENTORY_ADDR" /health
wait_up "$GATEWAY_ADDR" /health/ready

PRODUCT=3b0f6f52-7f0e-4c39-9a55-6d1c2b8e4f10
ADMIN="$("$SHOP" gateway token --sub load-admin --role admin)"
curl -fs -X POST "http://$GATEWAY_ADDR/api/inventory/items" -H 'content-type: application/json' \
  -H "authorization: Bearer $ADMIN" -d "{\"product_id\":\"$PRODUCT\",\"quantity\":1000}" >/dev/null

# wrk latency ("19.00us", "1.06ms", "1.20s") in microseconds.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1000000 }'; }

# CPU time (user + system) a process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# Prints "req/s p50_us p99_us inventory_cpu_us_per_req gateway_cpu_us_per_req"
# for one run of $2 at $1 connections.
measure() {
  local conns=$1 url=$2
  local out inv0 gw0 inv1 gw1
  inv0=$(cpu_ticks "$INVENTORY_PID"); gw0=$(cpu_ticks "$GATEWAY_PID")
  out="$(wrk -t"$THREADS" -c"$conns" -d"${DURATION_SECS}s" --latency "$url")"
  inv1=$(cpu_ticks "$INVENTORY_PID"); gw1=$(cpu_ticks "$GATEWAY_PID")
  if echo "$out" | grep -q "Non-2xx"; then echo "non-2xx answers from $url" >&2; echo "$out" >&2; exit 1; fi
  local rps p50 p99 requests
  rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
  requests="$(echo "$out" | awk '/requests in/ {print $1}')"
  p50="$(to_us "$(echo "$out" | awk '$1=="50%" {print $2}')")"
  p99="$(to_us "$(echo "$out" | awk '$1=="99%" {print $2}')")"
  awk -v r="$rps" -v a="$p50" -v b="$p99" -v n="$requests" -v t="$TICK_US" \
    -v i="$((inv1 - inv0))" -v g="$((gw1 - gw0))" \
    'BEGIN { printf "%s %s %s %.1f %.1f\n", r, a, b, i * t / n, g * t / n }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

DIRECT="http://$INVENTORY_ADDR/api/inventory/$PRODUCT"
VIA="http://$GATEWAY_ADDR/api/inventory/$PRODUCT"
echo "| connections | target | req/s (median of $ROUNDS) | p50 µs | p99 µs | inventory CPU µs/req | gateway CPU µs/req |"
echo "|---|---|---|---|---|---|---|"
for conns in "$CONNECTIONS" 1; do
  t=$THREADS
  [ "$conns" -lt "$t" ] && t=$conns
  wrk -t"$t" -c"$conns" -d"${WARMUP_SECS}s" "$DIRECT" >/dev/null
  wrk -t"$t" -c"$conns" -d"${WARMUP_SECS}s" "$VIA" >/dev/null
  : >/tmp/gateway-load.direct
  : >/tmp/gateway-load.via
  # Alternate the two targets so background load drifts hit both alike.
  for _ in $(seq 1 "$ROUNDS"); do
    THREADS=$t measure "$conns" "$DIRECT" >>/tmp/gateway-load.direct
    THREADS=$t measure "$conns" "$VIA" >>/tmp/gateway-load.via
  done
  for target in direct via; do
    f=/tmp/gateway-load.$target
    rps="$(cut -d' ' -f1 "$f" | median)"
    p50="$(cut -d' ' -f2 "$f" | median)"
    p99="$(cut -d' ' -f3 "$f" | median)"
    icpu="$(cut -d' ' -f4 "$f" | median)"
    gcpu="$(cut -d' ' -f5 "$f" | median)"
    label="inventory direct"; [ "$target" = via ] && label="through the gateway"
    [ "$target" = direct ] && gcpu="-"
    echo "| $conns | $label | $rps | $p50 | $p99 | $icpu | $gcpu |"
    eval "${target}_rps=$rps; ${target}_p50=$p50; ${target}_icpu=$icpu; ${target}_gcpu=$gcpu"
  done
  awk -v d="$direct_rps" -v g="$via_rps" -v dl="$direct_p50" -v gl="$via_p50" -v c="$conns" \
    -v ic="$direct_icpu" -v gc="$via_gcpu" \
    'BEGIN {printf "| %s | gateway cost | %.1f%% less throughput | +%.0f µs p50 | | | %.1f µs CPU per request (%.0f%% of inventory CPU per request) |\n", c, (1 - g / d) * 100, gl - dl, gc, gc / ic * 100}'
  echo "raw runs ($conns connections): direct [$(cut -d' ' -f1 /tmp/gateway-load.direct | tr '\n' ' ')] via [$(cut -d' ' -f1 /tmp/gateway-load.via | tr '\n' ' ')]" >&2
done
echo
echo "wrk -t$THREADS -c$CONNECTIONS (and -c1) -d${DURATION_SECS}s, $ROUNDS alternating rounds after ${WARMUP_SECS}s warm-up; $(nproc) CPUs shared by wrk and both servers; RUST_LOG=$SERVER_LOG; load average before: $LOAD_BEFORE"
