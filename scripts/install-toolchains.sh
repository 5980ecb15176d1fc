#!/usr/bin/env bash
# Installs the toolchains that build the example handlers, pinned, into places
# the repository ignores, so a fresh machine or CI needs no manual step:
#
#   rustup target wasm32-wasip1       (Rust examples)
#   .tools/zig                        Zig from the PyPI package `ziglang` (Zig and C examples)
#   examples/assemblyscript/node_modules   AssemblyScript from npm, per package-lock.json
#
# Idempotent and quick when everything is already there. Select a subset with
# arguments: `install-toolchains.sh rust zig as` (default: all).
set -euo pipefail

ZIG_VERSION="0.14.1"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"

selected=("$@")
is_selected() {
    [ ${#selected[@]} -eq 0 ] && return 0
    local s
    for s in "${selected[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}

install_rust() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
        echo "install-toolchains: rustup target add wasm32-wasip1"
        rustup target add wasm32-wasip1
    fi
}

install_zig() {
    local dir="$TOOLS/zig"
    local stamp="$dir/.sluice-version"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$ZIG_VERSION" ]; then
        return
    fi
    echo "install-toolchains: ziglang==$ZIG_VERSION into ${dir#"$REPO"/}"
    rm -rf "$dir"
    mkdir -p "$dir"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
        --target "$dir" "ziglang==$ZIG_VERSION"
    echo "$ZIG_VERSION" >"$stamp"
}

install_assemblyscript() {
    local dir="$REPO/examples/assemblyscript"
    local stamp="$dir/node_modules/.sluice-lock"
    [ -f "$dir/package-lock.json" ] || return 0
    # Reinstall only when package-lock.json changed since the last install.
    if [ -f "$stamp" ] && cmp -s "$stamp" "$dir/package-lock.json"; then
        return
    fi
    echo "install-toolchains: npm ci in ${dir#"$REPO"/}"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$stamp"
}

is_selected rust && install_rust
is_selected zig && install_zig
is_selected as && install_assemblyscript
exit 0
