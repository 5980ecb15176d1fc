#!/usr/bin/env bash
# W2's peer (docs/benchmarks.md): Celery with Redis on W1's workload, native
# Python, one prefork process per core. Installs Celery into target/peers and
# Debian's redis-server if missing; starts a private Redis on a spare port and
# stops everything after. Prints one SYSTEM=celery line.
set -euo pipefail
cd "$(dirname "$0")/../.."
CELERY_VERSION="5.5.3"
REDIS_PY_VERSION="6.2.0"
VENV=target/peers/celery
if [ ! -x "$VENV/bin/celery" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "celery==$CELERY_VERSION" "redis==$REDIS_PY_VERSION"
fi
if ! command -v redis-server >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
n=${W1_N:-20000}
procs=${W2_PROCS:-$(nproc)}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --appendonly yes --save '' --daemonize no \
    >"$dir/redis.log" 2>&1 &
redis_pid=$!
worker_pid=
cleanup() {
    [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null
    kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
export W2_BROKER="redis://127.0.0.1:$port/0" W2_PROCS="$procs"
cd scripts/peers
until "../../$VENV/bin/python" -c "import redis; redis.Redis(port=$port).ping()" 2>/dev/null; do sleep 0.1; done
"../../$VENV/bin/celery" -A celery_w1 worker -Q idle --concurrency "$procs" --pool prefork \
    --loglevel warning >"$dir/worker.log" 2>&1 &
worker_pid=$!
until "../../$VENV/bin/celery" -A celery_w1 inspect ping --timeout 1 >/dev/null 2>&1; do sleep 0.5; done
"../../$VENV/bin/python" celery_w1.py "$n"
