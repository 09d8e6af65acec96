#!/usr/bin/env bash
# Load run: GET availability on inventory-http (memory store) next to a bare
# hyper server returning a fixed JSON body, same machine, same run, with wrk.
# Prints a markdown table (req/s, p50, p99) for docs/benchmarks.md.
#
# Usage: scripts/load-run.sh [connections=64] [duration_secs=15] [threads=1] [rounds=3]
# Env:   INVENTORY_LOG (RUST_LOG of the server during the run, default "warn")
#
# The two servers take turns (bare, inventory, bare, ...) for `rounds` rounds
# and the table shows the median of each column, so a burst of other work on
# the machine hits both alike. With taskset and 2+ cores, servers run on CPU 0
# and wrk on CPU 1, so the load generator does not steal the server's core.
set -euo pipefail

CONNECTIONS="${1:-64}"
DURATION_SECS="${2:-15}"
THREADS="${3:-1}"
ROUNDS="${4:-3}"
WARMUP_SECS=3
INVENTORY_ADDR=127.0.0.1:18090
BARE_ADDR=127.0.0.1:18091
INVENTORY_LOG="${INVENTORY_LOG:-warn}"
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

need_wrk

cargo build --release -q -p inventory-http --bin inventory-http
cargo build --release -q -p benches --example bare_server
TARGET_DIR="$(target_dir)"

pin_cpus

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

RUST_LOG="$INVENTORY_LOG" RATE_LIMIT_PER_MINUTE=0 LISTEN_ADDR="$INVENTORY_ADDR" \
  "${SERVER_PIN[@]}" "$TARGET_DIR/release/inventory-http" >/dev/null 2>&1 &
INVENTORY_PID=$!
pids+=($!)
"${SERVER_PIN[@]}" "$TARGET_DIR/release/examples/bare_server" "$BARE_ADDR" >/dev/null 2>&1 &
BARE_PID=$!
pids+=($!)

wait_up() { for _ in $(seq 1 100); do curl -fs "http://$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "server $1 did not start" >&2; exit 1; }
wait_up "$INVENTORY_ADDR" /health
wait_up "$BARE_ADDR" /

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
PRODUCT=6f1c2a8e-2b7d-4a1e-9c3f-0d5e8b7a6c41
curl -fs -X POST "http://$INVENTORY_ADDR/api/inventory/items" -H 'content-type: application/json' \
  -d "{\"product_id\":\"$PRODUCT\",\"quantity\":1000}" >/dev/null

# CPU time (user + system) a process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK="$(getconf CLK_TCK)"

# Prints "req/s p50 p99 cpu_us_per_request" for one URL served by process $2.
# CPU time per request is what the server spent, whatever else the machine did.
measure() {
  "${CLIENT_PIN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP_SECS}s" "$1" >/dev/null
  local out before after
  before="$(cpu_ticks "$2")"
  out="$("${CLIENT_PIN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION_SECS}s" --latency "$1")"
  after="$(cpu_ticks "$2")"
  if echo "$out" | grep -q "Non-2xx"; then echo "non-2xx answers from $1" >&2; echo "$out" >&2; exit 1; fi
  local rps p50 p99 requests cpu
  rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
  p50="$(echo "$out" | awk '$1=="50%" {print $2}')"
  p99="$(echo "$out" | awk '$1=="99%" {print $2}')"
  requests="$(echo "$out" | awk '/requests in/ {print $1}')"
  cpu="$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')"
  echo "$rps $p50 $p99 $cpu"
}

# Latency text (e.g. 850.00us, 1.20ms, 2.00s) to milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

: > /tmp/load-run.bare
: > /tmp/load-run.inventory
for round in $(seq 1 "$ROUNDS"); do
  read -r rps p50 p99 cpu < <(measure "http://$BARE_ADDR/" "$BARE_PID")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $cpu" >> /tmp/load-run.bare
  read -r rps p50 p99 cpu < <(measure "http://$INVENTORY_ADDR/api/inventory/$PRODUCT" "$INVENTORY_PID")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $cpu" >> /tmp/load-run.inventory
  echo "round $round: bare $(tail -1 /tmp/load-run.bare) | inventory $(tail -1 /tmp/load-run.inventory)" >&2
done
col() { awk -v c="$2" '{ print $c }' "$1" | median; }
bare_rps="$(col /tmp/load-run.bare 1)"; bare_p50="$(col /tmp/load-run.bare 2)"; bare_p99="$(col /tmp/load-run.bare 3)"; bare_cpu="$(col /tmp/load-run.bare 4)"
inv_rps="$(col /tmp/load-run.inventory 1)"; inv_p50="$(col /tmp/load-run.inventory 2)"; inv_p99="$(col /tmp/load-run.inventory 3)"; inv_cpu="$(col /tmp/load-run.inventory 4)"
ratio="$(awk -v a="$inv_rps" -v b="$bare_rps" 'BEGIN {printf "%.2f", a / b}')"

pinning="unpinned"
[ "${#SERVER_PIN[@]}" -gt 0 ] && pinning="server on CPU 0, wrk on CPU 1"
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION_SECS}s --latency, ${WARMUP_SECS}s warm-up, median of $ROUNDS alternating rounds; $(nproc) cores ($pinning); load average before: $LOAD_BEFORE; $(date -u +%Y-%m-%dT%H:%MZ); server RUST_LOG=$INVENTORY_LOG"
echo
echo "| server | req/s | p50 (ms) | p99 (ms) | server CPU per request (µs) | req/s vs bare |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| bare hyper, fixed JSON | $bare_rps | $bare_p50 | $bare_p99 | $bare_cpu | 1.00 |"
echo "| inventory-http GET /api/inventory/{id}, memory store | $inv_rps | $inv_p50 | $inv_p99 | $inv_cpu | $ratio |"
