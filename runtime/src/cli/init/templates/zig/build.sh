#!/bin/sh
# Builds {{name}}.wasm with Zig 0.14 (`pip install ziglang` and ZIG="python3 -m ziglang" work too).
set -eu
cd "$(dirname "$0")"
${ZIG:-zig} build-exe -target wasm32-wasi -O ReleaseSmall -fstrip --cache-dir .zig-cache \
    --name {{name}} -femit-bin={{name}}.wasm --dep sluice -Mroot=main.zig -Msluice=sluice.zig
