#!/usr/bin/env bash
# Runs every test. Installs what it needs (the wasm target, the example
# toolchains) and builds the example handlers the tests run.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip1 >/dev/null
scripts/build-examples.sh
cargo test --workspace "$@"
