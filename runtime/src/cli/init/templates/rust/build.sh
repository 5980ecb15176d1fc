#!/bin/sh
# Builds {{name}}.wasm (needs: rustup target add wasm32-wasip1).
set -eu
cd "$(dirname "$0")"
cargo build --quiet --release --target wasm32-wasip1 --target-dir target
cp target/wasm32-wasip1/release/{{name}}.wasm {{name}}.wasm
