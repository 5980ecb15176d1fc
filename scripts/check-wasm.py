#!/usr/bin/env python3
"""Checks built handler modules against the guest ABI (SPEC §4, docs/guest-abi.md).

For each .wasm given: it must be a core module that exports a function `_start`
and a memory `memory`, and import only from `wasi_snapshot_preview1` and
`sluice`, where `sluice` offers exactly `publish`, `log` and `http_request`
with these types:

    publish(i32, i32, i32, i32, i32, i32, i64) -> i32
    log(i32, i32, i32)
    http_request(i32 x 11) -> i32

Prints each module's imports and exports with `-v`. Exits 1 if any module breaks
a rule, naming the module and the rule. Standard library only, so it runs
wherever the build does.
"""

import sys

ALLOWED_MODULES = {"wasi_snapshot_preview1", "sluice"}
SLUICE_IMPORTS = {
    "publish": ((0x7F,) * 6 + (0x7E,), (0x7F,)),
    "log": ((0x7F,) * 3, ()),
    "http_request": ((0x7F,) * 11, (0x7F,)),
}
VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128"}
KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}


class Reader:
    def __init__(self, data, pos=0, end=None):
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    def byte(self):
        if self.pos >= self.end:
            raise ValueError("unexpected end of section")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self):
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    def name(self):
        n = self.uleb()
        s = self.data[self.pos : self.pos + n]
        self.pos += n
        return s.decode("utf-8")

    def limits(self):
        flags = self.byte()
        self.uleb()
        if flags & 1:
            self.uleb()


def parse(data):
    if data[:4] != b"\0asm":
        raise ValueError("not a wasm module (bad magic)")
    if data[4:8] != b"\x01\0\0\0":
        raise ValueError("not a core module version 1 (a component?)")
    r = Reader(data, 8)
    types, imports, exports = [], [], []
    while r.pos < len(data):
        section = r.byte()
        size = r.uleb()
        s = Reader(data, r.pos, r.pos + size)
        r.pos += size
        if section == 1:  # type
            for _ in range(s.uleb()):
                if s.byte() != 0x60:
                    raise ValueError("unsupported type form")
                params = tuple(s.byte() for _ in range(s.uleb()))
                results = tuple(s.byte() for _ in range(s.uleb()))
                types.append((params, results))
        elif section == 2:  # import
            for _ in range(s.uleb()):
                module, field, kind = s.name(), s.name(), s.byte()
                desc = None
                if kind == 0:
                    desc = types[s.uleb()]
                elif kind == 1:
                    s.byte()
                    s.limits()
                elif kind == 2:
                    s.limits()
                elif kind == 3:
                    s.byte()
                    s.byte()
                elif kind == 4:
                    s.byte()
                    s.uleb()
                imports.append((module, field, KINDS.get(kind, kind), desc))
        elif section == 7:  # export
            for _ in range(s.uleb()):
                field, kind = s.name(), s.byte()
                s.uleb()
                exports.append((field, KINDS.get(kind, kind)))
    return imports, exports


def signature(desc):
    params, results = desc
    p = ", ".join(VALTYPES.get(t, hex(t)) for t in params)
    res = ", ".join(VALTYPES.get(t, hex(t)) for t in results)
    return f"({p})" + (f" -> {res}" if res else "")


def check(path, verbose):
    with open(path, "rb") as f:
        data = f.read()
    try:
        imports, exports = parse(data)
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        return [f"cannot parse: {e}"]
    problems = []
    if ("_start", "func") not in exports:
        problems.append("no exported function `_start` (not a WASI command)")
    if ("memory", "memory") not in exports:
        problems.append("no exported memory `memory`")
    for module, field, kind, desc in imports:
        if module not in ALLOWED_MODULES:
            problems.append(f"imports {module}.{field}: module {module!r} is not allowed")
        elif module == "sluice":
            want = SLUICE_IMPORTS.get(field)
            if want is None:
                problems.append(f"imports sluice.{field}: no such host function")
            elif kind != "func" or desc != want:
                got = signature(desc) if desc else kind
                problems.append(
                    f"imports sluice.{field} as {got}, the ABI says {signature(want)}"
                )
    if verbose:
        print(f"{path}: {len(data)} bytes")
        for module, field, kind, desc in imports:
            sig = signature(desc) if desc else ""
            print(f"  import {module}.{field} {kind}{sig}")
        for field, kind in exports:
            print(f"  export {field} {kind}")
    return problems


def main(argv):
    verbose = "-v" in argv
    paths = [a for a in argv if a != "-v"]
    if not paths:
        print("usage: check-wasm.py [-v] MODULE.wasm...", file=sys.stderr)
        return 2
    failed = False
    for path in paths:
        for problem in check(path, verbose):
            print(f"check-wasm: {path}: {problem}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
