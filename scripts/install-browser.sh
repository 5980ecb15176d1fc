#!/usr/bin/env bash
# Installs what the dashboard's browser test needs (runtime/tests/browser.rs):
# Debian's chromium and playwright-core (npm, into tests/browser/). Idempotent
# and quick when both are there; playwright never downloads a browser of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null; then
    echo "install-browser: node is needed (scripts/install-toolchains.sh installs it)" >&2
    exit 1
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
