#!/usr/bin/env bash
# Installs the shells whose completion scripts runtime/tests/install.rs loads
# and completes from (bash is there already; zsh and fish from Debian).
# Idempotent and quick when they are there. Under CI=true the test fails
# rather than skips when one is missing.
set -euo pipefail
missing=()
for shell in zsh fish; do
    command -v "$shell" >/dev/null || missing+=("$shell")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
