#!/usr/bin/env bash
# Runs every test. Installs what it needs (the wasm target, the example
# toolchains, PostgreSQL, chromium, zsh and fish) and builds the example
# handlers the tests run; starts a private PostgreSQL cluster for the run and
# stops it after; then runs schemathesis against a real server (about 2
# minutes). Ends with one summary line over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip1 >/dev/null
scripts/build-examples.sh
scripts/install-browser.sh
scripts/install-shells.sh   # zsh and fish: the completion tests load their scripts
# A private PostgreSQL server for the PostgreSQL suites (installed if missing).
scripts/pg.sh start
log=$(mktemp)
trap 'rm -f "$log"; scripts/pg.sh stop' EXIT
eval "$(scripts/pg.sh env)"
status=0
cargo test --workspace "$@" 2>&1 | tee "$log" || status=$?
# The API against its own OpenAPI document, bounded (scripts/schemathesis.sh;
# `make fuzz` runs it longer); its summary line is part of this output.
scripts/schemathesis.sh || status=$?
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
