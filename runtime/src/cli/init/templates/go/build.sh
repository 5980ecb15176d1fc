#!/bin/sh
# Builds {{name}}.wasm with Go's wasip1 port (Go 1.24 or later; GO may name the go binary).
set -eu
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm GOPROXY=off GOFLAGS=-mod=mod ${GO:-go} build -trimpath -ldflags=-s -o {{name}}.wasm .
