#!/usr/bin/env bash
# Flash sale: inventory-http on PostgreSQL under a hot product, next to its
# baselines from the same run: plain-SQL pgbench on the same database, and the
# same server with batching off (BATCH_MAX=1). Prints markdown tables for
# docs/benchmarks.md:
#   1. hot product (huge stock, every answer a 201): reservations/s, p50, p99,
#      non-2xx, CPU per request of the server and of PostgreSQL; batching on,
#      batching off, and pgbench (UPDATE + INSERT per transaction)
#   2. random products (1,000), 32 connections, vs pgbench on 1,000 rows
#   3. finite stock S, sold-out answers (409): 201s must equal S and the item's
#      reserved must be S (zero oversell), with one server and with two servers
#      on one database; PASS/FAIL (the script exits 1 on FAIL)
#   4. single client (wrk -c1): batching on vs BATCH_MAX=1
#   5. isolation: p99 of uniform traffic alone and during a flash sale
#   (6. CPU per request: columns of tables 1, 2 and 4)
#
# Usage: scripts/flash-sale.sh [duration_secs=10] [rounds=3] [connections=100]
#        scripts/flash-sale.sh quick [duration_secs=3] [rounds=1] [connections=100]
#          (short form for a functional check: 3 s runs, 1 s warm-up, 1 round)
# Env (defaults in brackets; "quick" changes the marked ones):
#   DURATION_SECS [10, quick 3]  ROUNDS [3, quick 1]  CONNECTIONS [100] (hot product)
#   WARMUP_SECS [2, quick 1]     FINITE_SECS [5, quick 3] (each sold-out run)
#   FINITE_STOCK [2000]  PRODUCTS [1000]  RANDOM_CONNECTIONS [32]  UNIFORM_CONNECTIONS [16]
#   CLIENT_THREADS [1] (wrk -t and pgbench -j)   SERVER_LOG [warn] (RUST_LOG of the servers)
#   PG_URL [postgres://postgres@127.0.0.1:5432]  DB_NAME [flash_sale] (dropped and re-created)
#   SKIP_BUILD=1 uses the release binary already built; KEEP_LOGS=1 keeps the work directory
#   TIME_LIMIT_SECS [see Time below]: the watchdog's limit, counted after the build
#   SETTLE_SECS [60]: before each measured run, the longest wait for the outbox to drain
#   BATCH_MAX, BATCH_QUEUE_MAX, BATCH_COMMITTERS, DB_POOL_SIZE: passed to the "batching on"
#   servers as set (unset = the server's defaults); the "batching off" server gets BATCH_MAX=1.
#
# Time: about ROUNDS * (9 * (WARMUP_SECS + DURATION_SECS) + 2 * FINITE_SECS + 45) s plus
# ~15 s of setup after the build (~8 min at the defaults, ~1.5 min for "quick"), counting a
# few seconds per run to settle; a watchdog stops the script (and everything it started) at
# 1.5 times that plus 60 s.
#
# Runs take turns in each round (product, baseline, ...; reversed every other round)
# and the tables show medians over the rounds. With taskset and 2+ cores the servers
# run on CPU 0 and wrk/pgbench on CPU 1; PostgreSQL is not pinned. PostgreSQL CPU is
# utime+stime (plus reaped children's, for backends that exit) of every postgres
# process on the machine, from /proc/<pid>/stat around each measured run.
set -euo pipefail

QUICK=0
if [ "${1:-}" = quick ] || [ "${1:-}" = --quick ]; then
  QUICK=1
  shift
fi
if [ "$QUICK" = 1 ]; then d_def=3 r_def=1 w_def=1 f_def=3; else d_def=10 r_def=3 w_def=2 f_def=5; fi
DURATION_SECS="${1:-${DURATION_SECS:-$d_def}}"
ROUNDS="${2:-${ROUNDS:-$r_def}}"
CONNECTIONS="${3:-${CONNECTIONS:-100}}"
WARMUP_SECS="${WARMUP_SECS:-$w_def}"
FINITE_SECS="${FINITE_SECS:-$f_def}"
FINITE_STOCK="${FINITE_STOCK:-2000}"
SETTLE_SECS="${SETTLE_SECS:-60}"
PRODUCTS="${PRODUCTS:-1000}"
RANDOM_CONNECTIONS="${RANDOM_CONNECTIONS:-32}"
UNIFORM_CONNECTIONS="${UNIFORM_CONNECTIONS:-16}"
CLIENT_THREADS="${CLIENT_THREADS:-1}"
SERVER_LOG="${SERVER_LOG:-warn}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
DB_NAME="${DB_NAME:-flash_sale}"
DB_URL="$PG_URL/$DB_NAME"
PORT_A=18301
PORT_B=18302
HUGE_STOCK=1000000 # the API's largest quantity; every hot run gets a fresh product
TTL_SECS=3600      # reservations outlive the run: the expiry sweep gives nothing back
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
ROOT="$PWD"
LUA="$ROOT/scripts/wrk/reserve.lua"

for v in DURATION_SECS ROUNDS CONNECTIONS WARMUP_SECS FINITE_SECS FINITE_STOCK PRODUCTS \
  RANDOM_CONNECTIONS UNIFORM_CONNECTIONS CLIENT_THREADS; do
  if ! [[ "${!v}" =~ ^[1-9][0-9]*$ ]]; then echo "$v must be a positive integer, got '${!v}'" >&2; exit 2; fi
done
if [ "$CONNECTIONS" -lt 2 ]; then echo "CONNECTIONS must be at least 2 (two servers get half each)" >&2; exit 2; fi
if [ "$FINITE_STOCK" -gt 1000000 ]; then echo "FINITE_STOCK must be at most 1000000" >&2; exit 2; fi

need_wrk
for tool in pgbench psql curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (PostgreSQL client tools, curl)" >&2; exit 1; }
done

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p inventory-http --bin inventory-http
fi
TARGET_DIR="$(target_dir)"
TMP="$(mktemp -d /tmp/flash-sale.XXXXXX)"
# A copy, so a rebuild during the run cannot change the server between rounds.
SERVER_BIN="$TMP/inventory-http"
cp "$TARGET_DIR/release/inventory-http" "$SERVER_BIN"
REVISION="$(git describe --always --dirty 2>/dev/null || echo unknown)"

pin_cpus

# Every background process this script starts, so the exit trap can stop it.
pids=()
WATCHDOG=""
track() { pids+=("$1"); }
untrack() {
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null || true
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
    for f in "$TMP"/server-*.log; do
      [ -s "$f" ] && { echo "--- last lines of $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  if [ "${KEEP_LOGS:-0}" = 1 ] || { [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; }; then
    echo "work directory (logs, raw results) kept: $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "flash-sale: $*" >&2; exit 2; }
psql_db() { psql -X -q -At -v ON_ERROR_STOP=1 "$DB_URL" "$@"; }

# --- processes ---------------------------------------------------------------

# start_server PORT [NAME=VALUE...]: one inventory-http on 127.0.0.1:PORT, open
# (no JWT key, no Redis, no RabbitMQ), rate limit off; sets SERVER_PID.
start_server() {
  local port=$1
  shift
  env -u JWT_SECRET -u JWT_PUBLIC_KEY_FILE -u JWT_JWKS_FILE -u REDIS_URL -u AMQP_URL \
    RUST_LOG="$SERVER_LOG" RATE_LIMIT_PER_MINUTE=0 LISTEN_ADDR="127.0.0.1:$port" \
    DATABASE_URL="$DB_URL" "$@" \
    "${SERVER_PIN[@]}" "$SERVER_BIN" >>"$TMP/server-$port.log" 2>&1 &
  SERVER_PID=$!
  track "$SERVER_PID"
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || die "inventory-http on port $port exited at start (log: $TMP/server-$port.log)"
    sleep 0.1
  done
  die "inventory-http on port $port not ready after 30 s"
}

stop_server() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  untrack "$1"
}

# bg OUT CMD...: CMD in the background, output in OUT; sets BG_PID. await PID: its status.
bg() {
  local out=$1
  shift
  "$@" >"$out" 2>&1 &
  BG_PID=$!
  track "$BG_PID"
}
await() {
  local rc=0
  wait "$1" || rc=$?
  untrack "$1"
  return "$rc"
}

# wrk_cmd CONNECTIONS SECS PORT TARGET: sets WRK_CMD to the wrk command line
# (TARGET: a product uuid or random:N, see scripts/wrk/reserve.lua), bounded by `timeout`.
wrk_cmd() {
  local threads=$CLIENT_THREADS
  [ "$threads" -gt "$1" ] && threads=$1
  WRK_CMD=(timeout -s KILL $(($2 + 30)) "${CLIENT_PIN[@]}" wrk -t"$threads" -c"$1" -d"$2s" --timeout 10s
    -s "$LUA" "http://127.0.0.1:$3" -- "$4" "$TTL_SECS")
}

# wrk_run OUT CONNECTIONS SECS PORT TARGET: runs wrk to the end (interruptible).
wrk_run() {
  local out=$1
  shift
  wrk_cmd "$@"
  bg "$out" "${WRK_CMD[@]}"
  await "$BG_PID" || { cat "$out" >&2; die "wrk failed"; }
  grep -q '^FS ' "$out" || { cat "$out" >&2; die "wrk printed no summary"; }
}

# fs FILE KEY: a value of wrk's FS summary line.
fs() { awk -v k="$2" '/^FS / { for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == k) print a[2] } }' "$1"; }

# --- CPU time ----------------------------------------------------------------

CLK_TCK="$(getconf CLK_TCK)"
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Every postgres process; cutime/cstime hold what exited backends used (the
# postmaster reaps them), so pgbench's backends, gone after its run, count too.
pg_ticks() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
    awk '$2 == "(postgres)" { t += $14 + $15 + $16 + $17 } END { print t + 0 }'
}
# us_per TICKS COUNT: CPU microseconds per unit.
us_per() { awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.0f", t * 1e6 / hz / n; else print "nan" }'; }

# --- data --------------------------------------------------------------------

RUN_NO=0
# fresh_product PORT PREFIX QUANTITY: creates a new product through the API; sets FRESH_ID.
fresh_product() {
  local code
  RUN_NO=$((RUN_NO + 1))
  FRESH_ID="$(printf '%s-0000-4000-8000-%012d' "$2" "$RUN_NO")"
  code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$1/api/inventory/items" \
    -H 'content-type: application/json' -d "{\"product_id\":\"$FRESH_ID\",\"quantity\":$3}")"
  [ "$code" = 201 ] || die "creating product $FRESH_ID answered $code"
}
# fresh_bench_row: a new pgbench hot row; sets FRESH_ID.
fresh_bench_row() {
  RUN_NO=$((RUN_NO + 1))
  FRESH_ID="$(printf 'b0b00000-0000-4000-8000-%012d' "$RUN_NO")"
  psql_db -c "INSERT INTO bench_items VALUES ('$FRESH_ID', 1000000000000, 0)"
}

# --- runs --------------------------------------------------------------------
# Each appends one line of numbers to $TMP/<name>.

# settle: every measured run starts from the same state: the running server's
# relay has sent what earlier runs left in the outbox (waiting at most
# SETTLE_SECS), and a checkpoint has written out their dirty pages, so neither
# a backlog nor a checkpoint of an earlier run lands in this one.
settle() {
  local i
  for ((i = 0; i < SETTLE_SECS * 10; i++)); do
    [ "$(psql_db -c 'SELECT count(*) FROM outbox WHERE published_at IS NULL')" = 0 ] && break
    sleep 0.1
  done
  psql_db -c CHECKPOINT
}

# wrk_measured NAME SERVER_PID CONNECTIONS PORT TARGET: warm-up, then a measured
# run with CPU samples; appends "rps reserved_rps p50 p99 mean non2xx server_us pg_us".
wrk_measured() {
  local name=$1 pid=$2 conns=$3 port=$4 target=$5 out="$TMP/$1.out" s0 p0 s1 p1 n
  settle
  wrk_run "$TMP/warmup.out" "$conns" "$WARMUP_SECS" "$port" "$target"
  s0="$(proc_ticks "$pid")"
  p0="$(pg_ticks)"
  wrk_run "$out" "$conns" "$DURATION_SECS" "$port" "$target"
  s1="$(proc_ticks "$pid")"
  p1="$(pg_ticks)"
  n="$(fs "$out" requests)"
  echo "$(fs "$out" rps) $(fs "$out" reserved_rps) $(fs "$out" p50_ms) $(fs "$out" p99_ms)" \
    "$(fs "$out" mean_ms) $(fs "$out" non2xx) $(us_per $((s1 - s0)) "$n") $(us_per $((p1 - p0)) "$n")" >>"$TMP/$name"
  echo "  $name: $(tail -n 1 "$TMP/$name")  (rps reserved/s p50 p99 mean non-2xx server-us pg-us)" >&2
}

# server_hot NAME CONNECTIONS [NAME=VALUE...]: one server, a fresh hot product.
server_hot() {
  local name=$1 conns=$2 pid product
  shift 2
  start_server "$PORT_A" "$@"
  pid=$SERVER_PID
  fresh_product "$PORT_A" f1a50000 "$HUGE_STOCK"
  product=$FRESH_ID
  wrk_measured "$name" "$pid" "$conns" "$PORT_A" "$product"
  stop_server "$pid"
}

server_random() {
  local name=$1 conns=$2 pid
  shift 2
  start_server "$PORT_A" "$@"
  pid=$SERVER_PID
  wrk_measured "$name" "$pid" "$conns" "$PORT_A" "random:$PRODUCTS"
  stop_server "$pid"
}

PG_CLIENTS_NOTE=""
# pgbench_measured NAME CLIENTS SCRIPT [pgbench options...]: warm-up, measured run;
# appends "tps mean_ms failed pg_us clients".
pgbench_measured() {
  local name=$1 clients=$2 script=$3 out="$TMP/$1.out" free p0 p1 n rc tries=0
  shift 3
  free="$(psql_db -c "SELECT current_setting('max_connections')::int - count(*) + 1
                      FROM pg_stat_activity WHERE backend_type = 'client backend'")"
  if [ "$clients" -gt "$free" ]; then
    PG_CLIENTS_NOTE="pgbench ran with $free clients instead of $clients (max_connections)"
    clients=$free
  fi
  while :; do
    local cmd=(timeout -s KILL $((WARMUP_SECS + DURATION_SECS + 90)) "${CLIENT_PIN[@]}" pgbench -n -M prepared
      -c "$clients" -j "$((CLIENT_THREADS < clients ? CLIENT_THREADS : clients))" "$@" -f "$script")
    rc=0
    settle
    bg "$TMP/warmup.out" "${cmd[@]}" -T "$WARMUP_SECS" "$DB_URL"
    await "$BG_PID" || rc=$?
    if [ "$rc" -eq 0 ]; then
      p0="$(pg_ticks)"
      bg "$out" "${cmd[@]}" -T "$DURATION_SECS" "$DB_URL"
      await "$BG_PID" || rc=$?
      sleep 0.2 # let the postmaster reap the backends
      p1="$(pg_ticks)"
    fi
    [ "$rc" -eq 0 ] && break
    tries=$((tries + 1))
    if grep -qs 'too many clients' "$TMP/warmup.out" "$out" && [ "$tries" -lt 4 ] && [ "$clients" -gt 5 ]; then
      clients=$((clients - 5))
      PG_CLIENTS_NOTE="pgbench ran with $clients clients (max_connections)"
      continue
    fi
    cat "$TMP/warmup.out" "$out" >&2 2>/dev/null || true
    die "pgbench failed"
  done
  n="$(awk '/^number of transactions actually processed:/ { print $NF }' "$out")"
  echo "$(awk '/^tps = / { print $3; exit }' "$out")" \
    "$(awk '/^latency average = / { print $4; exit }' "$out")" \
    "$(awk '/^number of failed transactions:/ { print $5; exit }' "$out" | grep . || echo 0)" \
    "$(us_per $((p1 - p0)) "$n") $clients" >>"$TMP/$name"
  echo "  $name: $(tail -n 1 "$TMP/$name")  (tps mean-ms failed pg-us clients)" >&2
}

pgbench_hot() {
  local product
  fresh_bench_row
  product=$FRESH_ID
  pgbench_measured pg_hot "$CONNECTIONS" "$TMP/hot.sql" -D "p=$product"
}
pgbench_random() { pgbench_measured pg_random "$RANDOM_CONNECTIONS" "$TMP/random.sql"; }

# item_check PRODUCT PORT: prints "quantity reserved pending_count pending_sum".
item_check() {
  local body q r
  body="$(curl -fs "http://127.0.0.1:$2/api/inventory/$1")" || die "GET item $1 failed"
  q="$(echo "$body" | sed -n 's/.*"quantity":\([0-9]*\).*/\1/p')"
  r="$(echo "$body" | sed -n 's/.*"reserved":\([0-9]*\).*/\1/p')"
  echo "$q $r $(psql_db -F ' ' -c "SELECT count(*), coalesce(sum(quantity), 0) FROM reservations
                                   WHERE product_id = '$1' AND status = 'pending'")"
}

# finite_one: one server, stock S, CONNECTIONS for FINITE_SECS. Appends
# "s201 s409 other quantity reserved pending_count p50 p99 pass".
finite_one() {
  local pid product out="$TMP/finite_one.out" check pass=PASS s201
  start_server "$PORT_A"
  pid=$SERVER_PID
  fresh_product "$PORT_A" 5a1e0000 "$FINITE_STOCK"
  product=$FRESH_ID
  settle
  wrk_run "$out" "$CONNECTIONS" "$FINITE_SECS" "$PORT_A" "$product"
  check="$(item_check "$product" "$PORT_A")"
  stop_server "$pid"
  s201="$(fs "$out" s201)"
  read -r q r pc ps <<<"$check"
  [ "$s201" = "$FINITE_STOCK" ] && [ "$q" = "$FINITE_STOCK" ] && [ "$r" = "$FINITE_STOCK" ] &&
    [ "$pc" = "$FINITE_STOCK" ] && [ "$ps" = "$FINITE_STOCK" ] || pass=FAIL
  echo "$s201 $(fs "$out" s409) $(($(fs "$out" requests) - s201 - $(fs "$out" s409))) $q $r $pc" \
    "$(fs "$out" p50_ms) $(fs "$out" p99_ms) $pass" >>"$TMP/finite_one"
  echo "  finite_one: $(tail -n 1 "$TMP/finite_one")  (201 409 other quantity reserved pending p50 p99)" >&2
}

# finite_two: two servers on one database, CONNECTIONS/2 each, run at once.
finite_two() {
  local pid_a pid_b product wa wb half=$((CONNECTIONS / 2)) check pass=PASS s201 s409 req p50 p99
  start_server "$PORT_A"
  pid_a=$SERVER_PID
  start_server "$PORT_B"
  pid_b=$SERVER_PID
  fresh_product "$PORT_A" 5a2e0000 "$FINITE_STOCK"
  product=$FRESH_ID
  settle
  wrk_cmd "$half" "$FINITE_SECS" "$PORT_A" "$product"
  bg "$TMP/finite_a.out" "${WRK_CMD[@]}"
  wa=$BG_PID
  wrk_cmd "$half" "$FINITE_SECS" "$PORT_B" "$product"
  bg "$TMP/finite_b.out" "${WRK_CMD[@]}"
  wb=$BG_PID
  await "$wa" || { cat "$TMP/finite_a.out" >&2; die "wrk failed"; }
  await "$wb" || { cat "$TMP/finite_b.out" >&2; die "wrk failed"; }
  check="$(item_check "$product" "$PORT_B")"
  stop_server "$pid_a"
  stop_server "$pid_b"
  s201=$(($(fs "$TMP/finite_a.out" s201) + $(fs "$TMP/finite_b.out" s201)))
  s409=$(($(fs "$TMP/finite_a.out" s409) + $(fs "$TMP/finite_b.out" s409)))
  req=$(($(fs "$TMP/finite_a.out" requests) + $(fs "$TMP/finite_b.out" requests)))
  p50="$(printf '%s\n' "$(fs "$TMP/finite_a.out" p50_ms)" "$(fs "$TMP/finite_b.out" p50_ms)" | sort -g | tail -n 1)"
  p99="$(printf '%s\n' "$(fs "$TMP/finite_a.out" p99_ms)" "$(fs "$TMP/finite_b.out" p99_ms)" | sort -g | tail -n 1)"
  read -r q r pc ps <<<"$check"
  [ "$s201" = "$FINITE_STOCK" ] && [ "$q" = "$FINITE_STOCK" ] && [ "$r" = "$FINITE_STOCK" ] &&
    [ "$pc" = "$FINITE_STOCK" ] && [ "$ps" = "$FINITE_STOCK" ] || pass=FAIL
  echo "$s201 $s409 $((req - s201 - s409)) $q $r $pc $p50 $p99 $pass" >>"$TMP/finite_two"
  echo "  finite_two: $(tail -n 1 "$TMP/finite_two")  (201 409 other quantity reserved pending p50 p99)" >&2
}

# uniform_alone / uniform_flash: UNIFORM_CONNECTIONS over the random products,
# alone or while CONNECTIONS buy one hot product. Appends
# "rps p50 p99 non2xx flash_reserved_rps flash_non2xx".
uniform_alone() {
  local pid out="$TMP/uniform.out"
  start_server "$PORT_A"
  pid=$SERVER_PID
  settle
  wrk_run "$TMP/warmup.out" "$UNIFORM_CONNECTIONS" "$WARMUP_SECS" "$PORT_A" "random:$PRODUCTS"
  wrk_run "$out" "$UNIFORM_CONNECTIONS" "$DURATION_SECS" "$PORT_A" "random:$PRODUCTS"
  stop_server "$pid"
  echo "$(fs "$out" rps) $(fs "$out" p50_ms) $(fs "$out" p99_ms) $(fs "$out" non2xx) - -" >>"$TMP/uniform_alone"
  echo "  uniform_alone: $(tail -n 1 "$TMP/uniform_alone")  (rps p50 p99 non-2xx)" >&2
}
uniform_flash() {
  local pid product out="$TMP/uniform.out" flash wf
  flash="$TMP/flash.out"
  start_server "$PORT_A"
  pid=$SERVER_PID
  fresh_product "$PORT_A" f1a50000 "$HUGE_STOCK"
  product=$FRESH_ID
  settle
  wrk_run "$TMP/warmup.out" "$UNIFORM_CONNECTIONS" "$WARMUP_SECS" "$PORT_A" "random:$PRODUCTS"
  wrk_cmd "$CONNECTIONS" $((DURATION_SECS + 2)) "$PORT_A" "$product"
  bg "$flash" "${WRK_CMD[@]}"
  wf=$BG_PID
  sleep 1
  wrk_run "$out" "$UNIFORM_CONNECTIONS" "$DURATION_SECS" "$PORT_A" "random:$PRODUCTS"
  await "$wf" || { cat "$flash" >&2; die "wrk (flash sale) failed"; }
  stop_server "$pid"
  echo "$(fs "$out" rps) $(fs "$out" p50_ms) $(fs "$out" p99_ms) $(fs "$out" non2xx)" \
    "$(fs "$flash" reserved_rps) $(fs "$flash" non2xx)" >>"$TMP/uniform_flash"
  echo "  uniform_flash: $(tail -n 1 "$TMP/uniform_flash")  (rps p50 p99 non-2xx flash-reserved/s flash-non-2xx)" >&2
}

# runs_in_turn RUN...: the runs in order, or in reverse order on even rounds.
runs_in_turn() {
  local runs=("$@") i
  if [ $((ROUND % 2)) -eq 0 ]; then
    for ((i = ${#runs[@]} - 1; i >= 0; i--)); do eval "${runs[$i]}"; done
  else
    for i in "${!runs[@]}"; do eval "${runs[$i]}"; done
  fi
}

# --- setup -------------------------------------------------------------------

PER_ROUND=$((9 * (WARMUP_SECS + DURATION_SECS) + 2 * FINITE_SECS + 45))
EXPECTED=$((ROUNDS * PER_ROUND + 15))
BOUND="${TIME_LIMIT_SECS:-$((EXPECTED * 3 / 2 + 60))}"
echo "flash-sale: about ${EXPECTED} s (${ROUNDS} rounds); stops itself after ${BOUND} s at most" >&2
# The watchdog: TERM to this script (whose exit trap stops everything) at the bound.
(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "$BOUND" &
  sp=$!
  wait "$sp"
  echo "flash-sale: time limit of ${BOUND} s reached, stopping" >&2
  kill -TERM $$
) &
WATCHDOG=$!

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
psql -X -q -v ON_ERROR_STOP=1 "$PG_URL/postgres" \
  -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" -c "CREATE DATABASE $DB_NAME" >/dev/null

cat >"$TMP/hot.sql" <<'SQL'
BEGIN;
UPDATE bench_items SET reserved = reserved + 1 WHERE product_id = :p AND quantity - reserved >= 1;
INSERT INTO bench_reservations (product_id, quantity, order_id) VALUES (:p, 1, gen_random_uuid());
END;
SQL
cat >"$TMP/random.sql" <<SQL
\\set p random(1, $PRODUCTS)
BEGIN;
UPDATE bench_items SET reserved = reserved + 1
  WHERE product_id = ('00000000-0000-4000-8000-' || lpad(:p::text, 12, '0'))::uuid AND quantity - reserved >= 1;
INSERT INTO bench_reservations (product_id, quantity, order_id)
  VALUES (('00000000-0000-4000-8000-' || lpad(:p::text, 12, '0'))::uuid, 1, gen_random_uuid());
END;
SQL
psql_db >/dev/null <<SQL
CREATE TABLE bench_items(product_id uuid primary key, quantity bigint, reserved bigint);
CREATE TABLE bench_reservations(id uuid default gen_random_uuid() primary key, product_id uuid,
                                quantity bigint, order_id uuid);
INSERT INTO bench_items
  SELECT ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 1000000000000, 0
  FROM generate_series(1, $PRODUCTS) AS i;
SQL

# The server migrates the database at its first start; then the random products.
start_server "$PORT_A"
SETUP_PID=$SERVER_PID
{
  for i in $(seq 1 "$PRODUCTS"); do
    [ "$i" -gt 1 ] && echo "next"
    echo "silent"
    echo "url = \"http://127.0.0.1:$PORT_A/api/inventory/items\""
    echo "header = \"content-type: application/json\""
    printf -v id '00000000-0000-4000-8000-%012d' "$i"
    echo "data = \"{\\\"product_id\\\":\\\"$id\\\",\\\"quantity\\\":$HUGE_STOCK}\""
    echo "output = \"/dev/null\""
    echo "write-out = \"%{http_code}\\n\""
  done
} >"$TMP/products.curl"
created="$(curl -s --parallel --parallel-max 16 -K "$TMP/products.curl" 2>"$TMP/products.err" | grep -c '^201$' || true)"
[ "$created" = "$PRODUCTS" ] || die "created $created of $PRODUCTS products"
stop_server "$SETUP_PID"
psql_db -c "VACUUM ANALYZE" >/dev/null
BATCH_KNOWN=yes
"$SERVER_BIN" --help 2>/dev/null | grep -q 'BATCH_MAX' || BATCH_KNOWN=no

# --- rounds ------------------------------------------------------------------

for ROUND in $(seq 1 "$ROUNDS"); do
  echo "round $ROUND of $ROUNDS" >&2
  runs_in_turn 'server_hot hot_batch "$CONNECTIONS"' 'pgbench_hot' 'server_hot hot_nobatch "$CONNECTIONS" BATCH_MAX=1'
  runs_in_turn 'server_random random_batch "$RANDOM_CONNECTIONS"' 'pgbench_random'
  runs_in_turn finite_one finite_two
  runs_in_turn 'server_hot single_batch 1' 'server_hot single_nobatch 1 BATCH_MAX=1'
  runs_in_turn uniform_alone uniform_flash
done

# --- report ------------------------------------------------------------------

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else print a[int((NR + 1) / 2)] }'; }
col() { awk -v c="$2" '{ print $c }' "$TMP/$1" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
f0() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
f2() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }
# all FILE COLUMN: the column's values over the rounds, "a" if all equal, else "a / b / c".
all() { awk -v c="$2" '{ v[NR] = $c } END { s = v[1]; d = 0; for (i = 2; i <= NR; i++) { if (v[i] != v[1]) d = 1; s = s " / " v[i] }; print d ? s : v[1] }' "$TMP/$1"; }
verdict() { if grep -q FAIL "$TMP/$1"; then echo FAIL; else echo PASS; fi; }

pg_hot_tps="$(col pg_hot 1)"
pg_random_tps="$(col pg_random 1)"
single_nobatch_rps="$(col single_nobatch 1)"
pinning="unpinned"
[ "${#SERVER_PIN[@]}" -gt 0 ] && pinning="servers on CPU 0, wrk and pgbench on CPU 1, PostgreSQL unpinned"
batch_env="BATCH_MAX=${BATCH_MAX:-default} BATCH_QUEUE_MAX=${BATCH_QUEUE_MAX:-default} BATCH_COMMITTERS=${BATCH_COMMITTERS:-default} DB_POOL_SIZE=${DB_POOL_SIZE:-default}"

echo "inventory-http $REVISION (PostgreSQL store, database $DB_NAME, synchronous_commit $(psql_db -c 'SHOW synchronous_commit')), median of $ROUNDS alternating rounds of ${DURATION_SECS}s runs after ${WARMUP_SECS}s warm-up; $(nproc) cores ($pinning); load average before: $LOAD_BEFORE; $(date -u +%Y-%m-%dT%H:%MZ); batching on = $batch_env; wrk -t$CLIENT_THREADS, one unit per reservation, a new random order id per request"
[ "$BATCH_KNOWN" = no ] && echo "Note: this build has no BATCH_MAX setting, so \"batching on\" and \"BATCH_MAX=1\" run the same server."
[ -n "$PG_CLIENTS_NOTE" ] && echo "Note: $PG_CLIENTS_NOTE."
echo
echo "**1. Hot product** (one product, stock $HUGE_STOCK, $CONNECTIONS connections; pgbench: one transaction = UPDATE bench_items + INSERT bench_reservations)"
echo
echo "| run | reservations/s | p50 (ms) | p99 (ms) | mean (ms) | non-2xx | server CPU/req (µs) | PostgreSQL CPU/req (µs) | vs pgbench |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "hot_batch|inventory-http, batching on" "hot_nobatch|inventory-http, BATCH_MAX=1 (batching off)"; do
  n="${r%%|*}"
  echo "| ${r#*|} | $(f0 "$(col "$n" 2)") | $(col "$n" 3) | $(col "$n" 4) | $(col "$n" 5) | $(col "$n" 6) | $(col "$n" 7) | $(col "$n" 8) | $(ratio "$(col "$n" 2)" "$pg_hot_tps") |"
done
echo "| pgbench -M prepared -c $(col pg_hot 5), plain SQL | $(f0 "$pg_hot_tps") | – | – | $(f2 "$(col pg_hot 2)") | $(col pg_hot 3) failed | – | $(col pg_hot 4) | 1.00 |"
echo
echo "Batching on vs off (BATCH_MAX=1): $(ratio "$(col hot_batch 2)" "$(col hot_nobatch 2)") times the reservations/s."
echo
echo "**2. Random products** ($PRODUCTS products, $RANDOM_CONNECTIONS connections, each request a product drawn uniformly)"
echo
echo "| run | reservations/s | p50 (ms) | p99 (ms) | mean (ms) | non-2xx | server CPU/req (µs) | PostgreSQL CPU/req (µs) | vs pgbench |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
n=random_batch
echo "| inventory-http, batching on | $(f0 "$(col "$n" 2)") | $(col "$n" 3) | $(col "$n" 4) | $(col "$n" 5) | $(col "$n" 6) | $(col "$n" 7) | $(col "$n" 8) | $(ratio "$(col "$n" 2)" "$pg_random_tps") |"
echo "| pgbench -M prepared -c $(col pg_random 5), plain SQL | $(f0 "$pg_random_tps") | – | – | $(f2 "$(col pg_random 2)") | $(col pg_random 3) failed | – | $(col pg_random 4) | 1.00 |"
echo
echo "**3. Finite stock, sold out** (stock S = $FINITE_STOCK, ${FINITE_SECS}s of $CONNECTIONS connections; latency of all answers, 201 and 409 alike; every round must sell exactly S)"
echo
echo "| run | 201 | 409 | other | item quantity / reserved | pending reservations | p50 (ms) | p99 (ms) | zero oversell |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
echo "| one server | $(all finite_one 1) | $(col finite_one 2) | $(all finite_one 3) | $(all finite_one 4) / $(all finite_one 5) | $(all finite_one 6) | $(col finite_one 7) | $(col finite_one 8) | $(verdict finite_one) |"
echo "| two servers, one database, $((CONNECTIONS / 2)) connections each (latency: the worse server) | $(all finite_two 1) | $(col finite_two 2) | $(all finite_two 3) | $(all finite_two 4) / $(all finite_two 5) | $(all finite_two 6) | $(col finite_two 7) | $(col finite_two 8) | $(verdict finite_two) |"
echo
echo "**4. Single client** (wrk -c1 -t1 on one product)"
echo
echo "| run | req/s | p50 (ms) | p99 (ms) | mean (ms) | non-2xx | server CPU/req (µs) | PostgreSQL CPU/req (µs) | req/s vs BATCH_MAX=1 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "single_batch|batching on" "single_nobatch|BATCH_MAX=1 (batching off)"; do
  n="${r%%|*}"
  echo "| ${r#*|} | $(f0 "$(col "$n" 1)") | $(col "$n" 3) | $(col "$n" 4) | $(col "$n" 5) | $(col "$n" 6) | $(col "$n" 7) | $(col "$n" 8) | $(ratio "$(col "$n" 1)" "$single_nobatch_rps") |"
done
echo
echo "**5. Isolation** (uniform traffic: $UNIFORM_CONNECTIONS connections over the $PRODUCTS products, batching on; flash sale: $CONNECTIONS connections on one hot product, same server)"
echo
echo "| uniform traffic | req/s | p50 (ms) | p99 (ms) | non-2xx | p99 vs alone | flash sale reservations/s | flash sale non-2xx |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
echo "| alone | $(f0 "$(col uniform_alone 1)") | $(col uniform_alone 2) | $(col uniform_alone 3) | $(col uniform_alone 4) | 1.00 | – | – |"
echo "| during a flash sale | $(f0 "$(col uniform_flash 1)") | $(col uniform_flash 2) | $(col uniform_flash 3) | $(col uniform_flash 4) | $(ratio "$(col uniform_flash 3)" "$(col uniform_alone 3)") | $(f0 "$(col uniform_flash 5)") | $(col uniform_flash 6) |"

if [ "$(verdict finite_one)" = FAIL ] || [ "$(verdict finite_two)" = FAIL ]; then
  echo
  echo "FAIL: sold units differ from the stock (raw results in $TMP)" >&2
  KEEP_LOGS=1
  exit 1
fi
