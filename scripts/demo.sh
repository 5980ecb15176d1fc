#!/usr/bin/env bash
# The quick start: build the example handlers and sluice, start an embedded
# server in a temporary directory, apply the manifest (handlers, a schedule),
# enqueue events, and show a success, a fan-out through the outbox, a retry
# and a DLQ entry. Stops the server and removes its data at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip1 >/dev/null
scripts/build-examples.sh rust c zig as   # the languages the demo registers
cargo build -q -p sluice --bin sluice
target_dir="${CARGO_TARGET_DIR:-target}"
sluice="$target_dir/debug/sluice"

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export SLUICE_URL="http://127.0.0.1:$port"
"$sluice" serve --data-dir "$data" --listen "127.0.0.1:$port" >"$data/server.log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 100); do "$sluice" stats >/dev/null 2>&1 && break; sleep 0.1; done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_settled() { # message id: wait until no delivery is pending
  for _ in $(seq 200); do
    local status
    status=$("$sluice" status "$1" --json)
    if ! grep -qE '"state": ?"(scheduled|ready|leased|retrying)"' <<<"$status"; then return 0; fi
    sleep 0.1
  done
  echo "message $1 did not settle" >&2; return 1
}

step "register handlers and a schedule as code (Rust, C, Zig and AssemblyScript modules): sluice apply -f examples/sluice.toml"
"$sluice" apply -f examples/sluice.toml
"$sluice" handlers list
"$sluice" schedules list
step "apply again: nothing differs, nothing is registered again"
"$sluice" apply -f examples/sluice.toml

step "enqueue: a greeting, an order that fans out, a flaky job, a malformed signup"
hello=$("$sluice" enqueue greetings '{"name":"Ada"}')
order=$("$sluice" enqueue orders '{"order_id":"o-1001","email":"ada@example.com","total":42.5}' --key o-1001)
job=$("$sluice" enqueue jobs '{"job":"resize"}' --idempotency-key job-1)
again=$("$sluice" enqueue jobs '{"job":"resize"}' --idempotency-key job-1)
bad=$("$sluice" enqueue signups 'this is not json')
echo "greeting $hello, order $order, job $job (re-enqueued with the same key: $again), signup $bad"
for m in "$hello" "$order" "$job" "$bad"; do wait_settled "$m"; done

step "the greeting: acknowledged on the first attempt"
"$sluice" status "$hello"
step "the order: published to email and analytics through the outbox, each handled once"
"$sluice" status "$order"
"$sluice" handlers show mailer | head -3
step "the flaky job: failed twice, succeeded on attempt 3"
"$sluice" status "$job"
step "the malformed signup: rejected (exit 65) and dead-lettered after one attempt"
"$sluice" dlq list
dead=$("$sluice" status "$bad" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["deliveries"][0]["id"])')
"$sluice" dlq show "$dead"
step "stats: the three signals per handler (DLQ size, depth, lag)"
"$sluice" stats

step "the dashboard"
echo "dashboard: $SLUICE_URL/ui  (the DLQ entry above is at $SLUICE_URL/ui/deliveries/$dead)"
# On a terminal the server stays up for a look in the browser; without one
# (CI, a pipe) the demo ends here as before.
if [ -t 0 ] && [ -t 1 ]; then
  read -r -p "press Enter to stop the server " _
fi
