#!/usr/bin/env bash
# The schema fuzzer: Schemathesis against the served OpenAPI documents of
# inventory, orders and the gateway (merged), with an admin token, checking
# that no answer is a 5xx, every status and header is documented, every body
# fits its schema, and every schema-valid request is accepted; coverage,
# fuzzing and stateful phases (the documents' links: item -> reserve ->
# confirm/release, order -> status/cancel, product -> read/update).
#
#   scripts/schema-fuzz.sh            # CI form: 50 examples per operation
#   EXAMPLES=1000 scripts/schema-fuzz.sh   # long form
#   SERVICES="inventory gateway" scripts/schema-fuzz.sh   # some of them
#
# Runs the debug `shop` (PROFILE=release for the release build) on its own
# ports, installs Schemathesis into target/schema-fuzz/venv (PyPI), and writes
# each service's report to target/schema-fuzz/. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES=${EXAMPLES:-50}
SERVICES=${SERVICES:-inventory orders gateway}
PROFILE=${PROFILE:-debug}
SCHEMATHESIS_VERSION=4.32.5
OUT=target/schema-fuzz
INVENTORY=127.0.0.1:18380
ORDERS=127.0.0.1:18381
GATEWAY=127.0.0.1:18382
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,positive_data_acceptance
mkdir -p "$OUT"

if ! "$OUT/venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$OUT/venv"
    "$OUT/venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ "$PROFILE" = release ]; then cargo build -q --release -p stack; else cargo build -q -p stack; fi
# The edge's rate limits are off: the fuzzer sends thousands of requests a
# minute from one address and user.
"target/$PROFILE/shop" all --inventory-listen "$INVENTORY" --orders-listen "$ORDERS" \
    --gateway-listen "$GATEWAY" --rate-limit-ip-per-minute 0 --rate-limit-user-per-minute 0 \
    >"$OUT/shop.log" 2>&1 &
SHOP=$!
trap 'kill $SHOP 2>/dev/null || true; wait $SHOP 2>/dev/null || true' EXIT
for _ in $(seq 60); do
    grep -q "export ADMIN=" "$OUT/shop.log" && break
    kill -0 $SHOP 2>/dev/null || { cat "$OUT/shop.log"; exit 1; }
    sleep 1
done
ADMIN=$(sed -n "s/^export ADMIN='\(.*\)'$/\1/p" "$OUT/shop.log")
[ -n "$ADMIN" ] || { echo "the stack printed no admin token" >&2; cat "$OUT/shop.log"; exit 1; }

status=0
for name in $SERVICES; do
    case $name in
        inventory) addr=$INVENTORY ;;
        orders) addr=$ORDERS ;;
        gateway) addr=$GATEWAY ;;
        *) echo "unknown service $name (inventory, orders, gateway)" >&2; exit 2 ;;
    esac
    echo "== schema fuzz: $name ($EXAMPLES examples per operation)"
    if "$OUT/venv/bin/schemathesis" --config-file scripts/schemathesis.toml run \
        "http://$addr/openapi.json" --url "http://$addr" \
        -H "Authorization: Bearer $ADMIN" --checks "$CHECKS" \
        --max-examples "$EXAMPLES" --no-color >"$OUT/$name.log" 2>&1; then
        rc=0
    else
        rc=$?
    fi
    # The summary: operations, phases, links, cases and failures.
    sed -n '/^API Operations:/,$p' "$OUT/$name.log" | grep -v '^\s*$' || true
    if [ $rc -ne 0 ]; then
        status=1
        cat "$OUT/$name.log"
    fi
done
exit $status
