#!/usr/bin/env bash
# Runs schemathesis against a real `sluice serve` with every check on (no 5xx,
# every response matching docs' OpenAPI document, every status documented,
# auth not ignored, ...), reading the schema the server itself serves at
# /v1/openapi.json. Installs schemathesis (pinned, from PyPI) into
# target/schemathesis/venv; builds sluice (debug) and the example modules it
# seeds the server with. Prints schemathesis' summary line; exits non-zero on
# any failure.
#
#   scripts/schemathesis.sh              bounded (make test): SCHEMATHESIS_MAX_TIME=120 s
#   SCHEMATHESIS_MAX_TIME=900 scripts/schemathesis.sh     (make fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VERSION="4.32.5"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-120}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-50}"

venv="$REPO/target/schemathesis/venv"
stamp="$venv/.sluice-version"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$VERSION" ]; then
    echo "schemathesis: installing schemathesis==$VERSION into ${venv#"$REPO"/}"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
    echo "$VERSION" >"$stamp"
fi

scripts/build-examples.sh rust >/dev/null
cargo build -q -p sluice --bin sluice
target_dir="${CARGO_TARGET_DIR:-target}"
sluice="$target_dir/debug/sluice"

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token="schemathesis-$RANDOM$RANDOM"
export SLUICE_URL="http://127.0.0.1:$port" SLUICE_TOKEN="$token"
"$sluice" serve --data-dir "$data/store" --listen "127.0.0.1:$port" --token "$token" \
    --no-ui >"$data/server.log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 100); do "$sluice" stats >/dev/null 2>&1 && break; sleep 0.1; done

# Something to find: handlers, a message with a success and a dead delivery.
ex=target/examples/rust
"$sluice" register ack --topic jobs --module "$ex/ack.wasm" >/dev/null
"$sluice" register validate --topic jobs --module "$ex/validate.wasm" --retries 0 >/dev/null
"$sluice" enqueue jobs 'not json' >/dev/null
"$sluice" enqueue jobs '{"email":"ada@example.com"}' --key k >/dev/null

# One worker: with two, hypothesis' source inspection crashed under Python
# 3.11.7 ("AST constructor recursion depth mismatch", a CPython race).
status=0
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "$SLUICE_URL/v1/openapi.json" \
    -H "Authorization: Bearer $token" \
    --checks all \
    --max-time "$MAX_TIME" --max-examples "$MAX_EXAMPLES" \
    --workers 1 --seed "${SCHEMATHESIS_SEED:-1}" \
    --request-timeout 30 \
    --report junit --report-dir "$data/report" \
    >"$data/schemathesis.log" 2>&1 || status=$?
cat "$data/schemathesis.log"
if [ "$status" -ne 0 ]; then
    echo "schemathesis: failed (exit $status); the server's log:" >&2
    tail -n 50 "$data/server.log" >&2
fi
exit "$status"
