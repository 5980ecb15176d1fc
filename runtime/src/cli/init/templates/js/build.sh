#!/bin/sh
# Builds {{name}}.wasm, a component, with componentize-js
# (`npm install @bytecodealliance/componentize-js@0.23.0`; COMPONENTIZE_JS may name its command).
set -eu
cd "$(dirname "$0")"
${COMPONENTIZE_JS:-npx componentize-js} app.js -w wit -n job -d http -d fetch-event -o {{name}}.wasm >/dev/null
