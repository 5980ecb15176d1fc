#!/usr/bin/env bash
# W1 on Graphile Worker, for the side-by-side with sluice's PostgreSQL backend
# (docs/benchmarks.md): installs graphile-worker and pg from npm under
# target/graphile-worker (not committed) when missing, then runs
# runtime/benches/peers/graphile-w1.cjs against the database named.
#
#   scripts/bench-graphile.sh postgres://user@host:port/db
#
# Environment: see the script's header (W1_N, W1_CONCURRENCY, GW_RUNNERS,
# GW_BATCHED, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:?usage: scripts/bench-graphile.sh postgres://user@host:port/db}
dir=target/graphile-worker
if [ ! -d "$dir/node_modules/graphile-worker" ]; then
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
        graphile-worker@0.18.0 pg@8.23.1 >/dev/null
fi
GW_MODULES="$(pwd)/$dir/node_modules" exec node runtime/benches/peers/graphile-w1.cjs "$url"
