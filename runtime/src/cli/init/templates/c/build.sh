#!/bin/sh
# Builds {{name}}.wasm with zig cc (clang and wasi-libc in one download; `pip install ziglang`
# and ZIG="python3 -m ziglang" work too).
set -eu
cd "$(dirname "$0")"
${ZIG:-zig} cc --target=wasm32-wasi -O2 -s -Wall -Werror -I . -o {{name}}.wasm main.c
