// The little JSON the AssemblyScript examples need (AssemblyScript has no
// JSON.parse): a strict RFC 8259 validator with serde_json's rules (UTF-8,
// paired surrogate escapes, at most 127 levels of nesting), a lookup of a
// top-level object member as a raw token, and string decoding/encoding that
// match the other languages' examples byte for byte. Not part of the SDK.

/** Containers may nest 127 deep, as in serde_json (the Rust examples). */
const MAX_NESTING: i32 = 127;

export const KIND_OBJECT = 1, KIND_ARRAY = 2, KIND_STRING = 3, KIND_NUMBER = 4, KIND_LITERAL = 5;

/** A token: bytes [start, end) of the input, exactly as written. */
export class Token {
  constructor(public start: i32, public end: i32, public kind: i32) {}
}

function ws(b: Uint8Array, p: i32): i32 {
  while (p < b.length) {
    const c = b[p];
    if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
    p++;
  }
  return p;
}

function hex(c: u8): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

function hex4(b: Uint8Array, p: i32): i32 {
  if (b.length - p < 4) return -1;
  let v = 0;
  for (let i = 0; i < 4; i++) {
    const h = hex(b[p + i]);
    if (h < 0) return -1;
    v = (v << 4) | h;
  }
  return v;
}

// One UTF-8 sequence (RFC 3629); returns the end, or -1.
function utf8(b: Uint8Array, p: i32): i32 {
  const c = b[p];
  if (c < 0x80) return p + 1;
  let n = 0, lo: u8 = 0x80, hi: u8 = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) n = 1;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 2;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 3;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else return -1;
  if (b.length - p <= n) return -1;
  if (b[p + 1] < lo || b[p + 1] > hi) return -1;
  for (let i = 2; i <= n; i++) if ((b[p + i] & 0xc0) != 0x80) return -1;
  return p + n + 1;
}

function str(b: Uint8Array, p: i32): i32 {
  p++;
  while (p < b.length) {
    const c = b[p];
    if (c == 0x22) return p + 1;
    if (c < 0x20) return -1;
    if (c == 0x5c) {
      if (++p >= b.length) return -1;
      const e = b[p];
      if (e == 0x75) { // \u
        const cp = hex4(b, p + 1);
        if (cp < 0) return -1;
        p += 5;
        if (cp >= 0xdc00 && cp <= 0xdfff) return -1;
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (b.length - p < 6 || b[p] != 0x5c || b[p + 1] != 0x75) return -1;
          const low = hex4(b, p + 2);
          if (low < 0xdc00 || low > 0xdfff) return -1;
          p += 6;
        }
      } else if (e == 0x22 || e == 0x5c || e == 0x2f || e == 0x62 || e == 0x66 || e == 0x6e || e == 0x72 || e == 0x74) {
        p++;
      } else return -1;
    } else {
      p = utf8(b, p);
      if (p < 0) return -1;
    }
  }
  return -1;
}

function isDigit(b: Uint8Array, p: i32): bool {
  return p < b.length && b[p] >= 0x30 && b[p] <= 0x39;
}

function num(b: Uint8Array, p: i32): i32 {
  if (p < b.length && b[p] == 0x2d) p++;
  if (!isDigit(b, p)) return -1;
  if (b[p] == 0x30) p++;
  else while (isDigit(b, p)) p++;
  if (p < b.length && b[p] == 0x2e) {
    p++;
    if (!isDigit(b, p)) return -1;
    while (isDigit(b, p)) p++;
  }
  if (p < b.length && (b[p] == 0x65 || b[p] == 0x45)) {
    p++;
    if (p < b.length && (b[p] == 0x2b || b[p] == 0x2d)) p++;
    if (!isDigit(b, p)) return -1;
    while (isDigit(b, p)) p++;
  }
  return p;
}

function literal(b: Uint8Array, p: i32, word: string): i32 {
  if (b.length - p < word.length) return -1;
  for (let i = 0; i < word.length; i++) if (<i32>b[p + i] != word.charCodeAt(i)) return -1;
  return p + word.length;
}

// Skips one value at p inside `depth` containers; returns its end, or -1.
function value(b: Uint8Array, p: i32, depth: i32): i32 {
  if (p >= b.length) return -1;
  const c = b[p];
  if ((c == 0x5b || c == 0x7b) && depth >= MAX_NESTING) return -1;
  if (c == 0x22) return str(b, p);
  if (c == 0x74) return literal(b, p, "true");
  if (c == 0x66) return literal(b, p, "false");
  if (c == 0x6e) return literal(b, p, "null");
  if (c == 0x5b) { // [
    p = ws(b, p + 1);
    if (p < b.length && b[p] == 0x5d) return p + 1;
    for (;;) {
      p = value(b, p, depth + 1);
      if (p < 0) return -1;
      p = ws(b, p);
      if (p >= b.length) return -1;
      if (b[p] == 0x5d) return p + 1;
      if (b[p] != 0x2c) return -1;
      p = ws(b, p + 1);
    }
  }
  if (c == 0x7b) { // {
    p = ws(b, p + 1);
    if (p < b.length && b[p] == 0x7d) return p + 1;
    for (;;) {
      if (p >= b.length || b[p] != 0x22) return -1;
      p = str(b, p);
      if (p < 0) return -1;
      p = ws(b, p);
      if (p >= b.length || b[p] != 0x3a) return -1;
      p = value(b, ws(b, p + 1), depth + 1);
      if (p < 0) return -1;
      p = ws(b, p);
      if (p >= b.length) return -1;
      if (b[p] == 0x7d) return p + 1;
      if (b[p] != 0x2c) return -1;
      p = ws(b, p + 1);
    }
  }
  return num(b, p);
}

/** True if `b` is exactly one JSON value with optional surrounding whitespace. */
export function valid(b: Uint8Array): bool {
  const end = value(b, ws(b, 0), 0);
  return end >= 0 && ws(b, end) == b.length;
}

/**
 * Member `name` of the top-level object in `b` (which must be valid: check
 * with `valid` first), or null. Keys are compared as written.
 */
export function member(b: Uint8Array, name: string): Token | null {
  const want = Uint8Array.wrap(String.UTF8.encode(name));
  let p = ws(b, 0);
  if (p >= b.length || b[p] != 0x7b) return null;
  p = ws(b, p + 1);
  while (p < b.length && b[p] == 0x22) {
    const keyStart = p + 1;
    const keyEnd = str(b, p) - 1;
    const v = ws(b, ws(b, keyEnd + 1) + 1);
    const vEnd = value(b, v, 1);
    if (keyEnd - keyStart == want.length) {
      let same = true;
      for (let i = 0; i < want.length; i++) if (b[keyStart + i] != want[i]) { same = false; break; }
      if (same) {
        const c = b[v];
        const kind = c == 0x7b ? KIND_OBJECT : c == 0x5b ? KIND_ARRAY : c == 0x22 ? KIND_STRING
          : (c == 0x74 || c == 0x66 || c == 0x6e) ? KIND_LITERAL : KIND_NUMBER;
        return new Token(v, vEnd, kind);
      }
    }
    p = ws(b, vEnd);
    if (p < b.length && b[p] == 0x2c) p = ws(b, p + 1);
  }
  return null;
}

/** A growable byte buffer. */
export class Bytes {
  buf: Uint8Array = new Uint8Array(256);
  length: i32 = 0;

  push(c: u8): void {
    if (this.length == this.buf.length) {
      const bigger = new Uint8Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf[this.length++] = c;
  }

  pushBytes(b: Uint8Array, start: i32 = 0, end: i32 = -1): void {
    if (end < 0) end = b.length;
    for (let i = start; i < end; i++) this.push(b[i]);
  }

  pushAscii(s: string): void {
    for (let i = 0; i < s.length; i++) this.push(<u8>s.charCodeAt(i));
  }

  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function pushCodePoint(out: Bytes, cp: i32): void {
  if (cp < 0x80) out.push(<u8>cp);
  else if (cp < 0x800) {
    out.push(<u8>(0xc0 | (cp >> 6)));
    out.push(<u8>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push(<u8>(0xe0 | (cp >> 12)));
    out.push(<u8>(0x80 | ((cp >> 6) & 0x3f)));
    out.push(<u8>(0x80 | (cp & 0x3f)));
  } else {
    out.push(<u8>(0xf0 | (cp >> 18)));
    out.push(<u8>(0x80 | ((cp >> 12) & 0x3f)));
    out.push(<u8>(0x80 | ((cp >> 6) & 0x3f)));
    out.push(<u8>(0x80 | (cp & 0x3f)));
  }
}

/** Decodes a valid string token to its UTF-8 bytes. */
export function decodeString(b: Uint8Array, t: Token): Uint8Array {
  const out = new Bytes();
  let p = t.start + 1;
  const end = t.end - 1;
  while (p < end) {
    const c = b[p];
    if (c != 0x5c) { out.push(c); p++; continue; }
    const e = b[p + 1];
    p += 2;
    if (e == 0x62) out.push(0x08);
    else if (e == 0x66) out.push(0x0c);
    else if (e == 0x6e) out.push(0x0a);
    else if (e == 0x72) out.push(0x0d);
    else if (e == 0x74) out.push(0x09);
    else if (e == 0x75) {
      let cp = hex4(b, p);
      p += 4;
      if (cp >= 0xd800 && cp <= 0xdbff) { // valid input: a low surrogate follows
        cp = 0x10000 + ((cp - 0xd800) << 10) + (hex4(b, p + 2) - 0xdc00);
        p += 6;
      }
      pushCodePoint(out, cp);
    } else out.push(e); // \" \\ \/
  }
  return out.view();
}

/**
 * Appends `s` (UTF-8) as a JSON string literal: `"` and `\` escaped, control
 * characters as \b \f \n \r \t or \u00XX, everything else as is.
 */
export function encodeString(out: Bytes, s: Uint8Array): void {
  const digits = "0123456789abcdef";
  out.push(0x22);
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c == 0x22) out.pushAscii("\\\"");
    else if (c == 0x5c) out.pushAscii("\\\\");
    else if (c == 0x08) out.pushAscii("\\b");
    else if (c == 0x0c) out.pushAscii("\\f");
    else if (c == 0x0a) out.pushAscii("\\n");
    else if (c == 0x0d) out.pushAscii("\\r");
    else if (c == 0x09) out.pushAscii("\\t");
    else if (c < 0x20) {
      out.pushAscii("\\u00");
      out.push(<u8>digits.charCodeAt(c >> 4));
      out.push(<u8>digits.charCodeAt(c & 0xf));
    } else out.push(c);
  }
  out.push(0x22);
}
