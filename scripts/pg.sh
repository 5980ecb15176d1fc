#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests: `scripts/pg.sh start|stop|env`.
#
#   start  installs Debian's postgresql-15 if missing (apt-get; needs root),
#          creates a fresh cluster under $SLUICE_PG_DIR (default
#          /tmp/sluice-pg-<hash of this checkout>, so checkouts side by side do
#          not share one) owned by user postgres, starts it on a spare
#          loopback port and writes the URL to $SLUICE_PG_DIR/url.
#          Idempotent: a running cluster is reused; a stopped one is replaced
#          (tests leave a schema each behind).
#   env    prints `export SLUICE_TEST_PG_URL=...` for a running cluster.
#   stop   stops the cluster (fast shutdown).
#   restart  restarts the running cluster (fast shutdown: connections are cut)
#          on the same port; the multi-runner fault test does it mid-run.
#
# SLUICE_PG_OPTIONS adds server options at start and restart, e.g.
# "-c shared_preload_libraries=pg_stat_statements" to profile statements.
# SLUICE_PG_LISTEN adds addresses (comma-separated) to listen on besides
# 127.0.0.1, at start and restart, and lets clients of their subnets in:
# the fault test restarts the cluster listening on its network namespace's
# host-side address.
#
# The cluster runs with the defaults that make a commit durable
# (fsync=on, synchronous_commit=on), so tests see the real commit cost.
set -euo pipefail
cd "$(dirname "$0")/.."
B=/usr/lib/postgresql/15/bin
DIR=${SLUICE_PG_DIR:-/tmp/sluice-pg-$(pwd -P | cksum | cut -d' ' -f1)}
PGUSER_OS=postgres

as_pg() {
    if [ "$(id -un)" = "$PGUSER_OS" ]; then sh -c "$1"; else su "$PGUSER_OS" -s /bin/sh -c "$1"; fi
}

install() {
    [ -x "$B/initdb" ] && return 0
    echo "pg.sh: installing postgresql-15 (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql-15 >/dev/null
}

# A free loopback TCP port, from the kernel.
spare_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running() {
    [ -f "$DIR/db/postmaster.pid" ] && as_pg "$B/pg_ctl -D '$DIR/db' status" >/dev/null 2>&1
}

start() {
    install
    mkdir -p "$DIR"
    chown "$PGUSER_OS" "$DIR"
    if ! running; then
        rm -rf "$DIR/db"
        as_pg "$B/initdb -D '$DIR/db' -A trust -U postgres >'$DIR/initdb.log'"
        port=$(spare_port)
        allow_extra
        as_pg "$B/pg_ctl -D '$DIR/db' -l '$DIR/log' -w -t 60 -o \"$(options "$port")\" start" >/dev/null
        echo "postgres://postgres@127.0.0.1:$port/postgres" >"$DIR/url"
    fi
    echo "pg.sh: PostgreSQL running at $(cat "$DIR/url")" >&2
}

# The server's options on `port`. Connections for concurrent test binaries
# (each case opens a pool).
options() {
    echo "-p $1 -k '$DIR' -c listen_addresses=127.0.0.1${SLUICE_PG_LISTEN:+,$SLUICE_PG_LISTEN} -c max_connections=400 -c fsync=on -c synchronous_commit=on ${SLUICE_PG_OPTIONS:-}"
}

# With SLUICE_PG_LISTEN, lets in clients of the server's own subnets (a
# test's veth pair); the server listens nowhere but there and on 127.0.0.1.
allow_extra() {
    if [ -n "${SLUICE_PG_LISTEN:-}" ] && ! grep -q '^host all all samenet trust' "$DIR/db/pg_hba.conf"; then
        as_pg "echo 'host all all samenet trust' >>'$DIR/db/pg_hba.conf'"
    fi
}

restart() {
    running || { echo "pg.sh: no cluster running; run scripts/pg.sh start" >&2; exit 1; }
    port=$(sed -E 's|.*:([0-9]+)/.*|\1|' "$DIR/url")
    allow_extra
    as_pg "$B/pg_ctl -D '$DIR/db' -l '$DIR/log' -m fast -w -t 60 -o \"$(options "$port")\" restart" >/dev/null
}

stop() {
    if running; then as_pg "$B/pg_ctl -D '$DIR/db' -m fast -w stop" >/dev/null; fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
restart) restart ;;
env)
    running || { echo "pg.sh: no cluster running; run scripts/pg.sh start" >&2; exit 1; }
    echo "export SLUICE_TEST_PG_URL=$(cat "$DIR/url")"
    ;;
*)
    echo "usage: scripts/pg.sh start|stop|restart|env" >&2
    exit 2
    ;;
esac
