#!/bin/sh
# Builds {{name}}.wasm with AssemblyScript and its WASI shim (npm installs them once).
set -eu
cd "$(dirname "$0")"
[ -d node_modules ] || npm install --no-audit --no-fund --loglevel=error
node_modules/.bin/asc index.ts --config asconfig.json --target release -o {{name}}.wasm
