#!/usr/bin/env bash
# Workload W1 against the real server (docs/benchmarks.md); W1_HANDLER=python|js|go
# runs W2 (the same workload, the handler in that language). Prints one
# SYSTEM=sluice line and a summary; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip1 >/dev/null
scripts/build-examples.sh "${W1_HANDLER:-rust}"
cargo bench -p sluice --bench w1 --profile "${SLUICE_BENCH_PROFILE:-dev}" -- "$@"
