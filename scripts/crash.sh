#!/usr/bin/env bash
# The crash harness (docs/crash-testing.md): builds the Rust example handlers
# and `sluice`, then runs the real `sluice serve` under a mixed workload,
# SIGKILLs it at random moments, restarts it on the same data directory and
# checks the whole history. Prints the figures; exits 1 if a promise broke.
#
# Then the multi-runner fault test on PostgreSQL (60 kills,
# SLUICE_PG_FAULT_KILLS), and the power-loss test with 10,000 cut points
# (SLUICE_POWERLOSS_CUTS).
#
#   scripts/crash.sh                      200 kills (about 4 minutes), then
#                                         the power cuts (about 10 minutes)
#   scripts/crash.sh --kills 50 --seed 7  options of tests/src/bin/crash-harness.rs
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip1 >/dev/null
scripts/build-examples.sh rust >/dev/null
cargo build --quiet -p sluice --bin sluice -p sluice-tests --bin crash-harness
cargo run --quiet -p sluice-tests --bin crash-harness -- "$@"
# The multi-runner fault test on a private PostgreSQL cluster, longer than in
# `make test` (SLUICE_PG_FAULT_KILLS; root for the network cut).
scripts/pg.sh start
trap 'scripts/pg.sh stop' EXIT
eval "$(scripts/pg.sh env)"
SLUICE_PG_FAULT_KILLS="${SLUICE_PG_FAULT_KILLS:-60}" \
    cargo test --quiet -p sluice-tests --test pg_fault -- --nocapture
SLUICE_POWERLOSS_CUTS="${SLUICE_POWERLOSS_CUTS:-10000}" \
    cargo test --quiet -p sluice --lib store::embedded::powerloss -- --nocapture
