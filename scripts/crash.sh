#!/usr/bin/env bash
# The crash harness (docs/crash-testing.md): builds the Rust example handlers
# and `sluice`, then runs the real `sluice serve` under a mixed workload,
# SIGKILLs it at random moments, restarts it on the same data directory and
# checks the whole history. Prints the figures; exits 1 if a promise broke.
#
#   scripts/crash.sh                      200 kills (about 4 minutes)
#   scripts/crash.sh --kills 50 --seed 7  options of tests/src/bin/crash-harness.rs
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip1 >/dev/null
scripts/build-examples.sh rust >/dev/null
cargo build --quiet -p sluice --bin sluice -p sluice-tests --bin crash-harness
exec cargo run --quiet -p sluice-tests --bin crash-harness -- "$@"
