#!/bin/sh
# Builds {{name}}.wasm, a component, with componentize-py (`pip install componentize-py==0.25.1`).
set -eu
cd "$(dirname "$0")"
${COMPONENTIZE_PY:-componentize-py} -d wit -w job componentize app -p . -o {{name}}.wasm >/dev/null
