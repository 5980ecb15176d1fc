/*
 * json_scan.h — the little JSON the C examples need, without a library:
 * a strict RFC 8259 validator (UTF-8 checked, surrogate escapes paired, 127
 * levels of nesting at most, like serde_json), a lookup of a top-level object member as a raw
 * token, and string decoding/encoding. Not part of the SDK; copy it freely.
 */
#ifndef JSON_SCAN_H
#define JSON_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Containers may nest 127 deep, as in serde_json (the Rust examples). */
#define JSON_MAX_NESTING 127

typedef enum { JSON_NONE, JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_NUMBER, JSON_LITERAL } json_kind;

/** A token: `len` bytes at `p`, exactly as written (strings keep their quotes). */
typedef struct {
    const uint8_t *p;
    size_t len;
    json_kind kind;
} json_tok;

static inline const uint8_t *json_ws_(const uint8_t *p, const uint8_t *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* One UTF-8 sequence (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
static inline const uint8_t *json_utf8_(const uint8_t *p, const uint8_t *e) {
    uint8_t c = *p;
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) return p + 1;
    if (c >= 0xC2 && c <= 0xDF) n = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return NULL;
    if ((size_t)(e - p) <= n) return NULL;
    if (p[1] < lo || p[1] > hi) return NULL;
    for (size_t i = 2; i <= n; i++)
        if ((p[i] & 0xC0) != 0x80) return NULL;
    return p + n + 1;
}

static inline int json_hex_(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static inline const uint8_t *json_string_(const uint8_t *p, const uint8_t *e) {
    p++; /* opening quote */
    while (p < e) {
        uint8_t c = *p;
        if (c == '"') return p + 1;
        if (c < 0x20) return NULL;
        if (c == '\\') {
            if (++p >= e) return NULL;
            if (*p == 'u') {
                uint32_t cp = 0;
                if (e - p < 5) return NULL;
                for (int i = 1; i <= 4; i++) {
                    if (json_hex_(p[i]) < 0) return NULL;
                    cp = cp << 4 | (uint32_t)json_hex_(p[i]);
                }
                p += 5;
                /* A surrogate escape must be a high one followed by a low one. */
                if (cp >= 0xDC00 && cp <= 0xDFFF) return NULL;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo = 0;
                    if (e - p < 6 || p[0] != '\\' || p[1] != 'u') return NULL;
                    for (int i = 2; i < 6; i++) {
                        if (json_hex_(p[i]) < 0) return NULL;
                        lo = lo << 4 | (uint32_t)json_hex_(p[i]);
                    }
                    if (lo < 0xDC00 || lo > 0xDFFF) return NULL;
                    p += 6;
                }
            } else if (strchr("\"\\/bfnrt", *p) != NULL && *p != 0) {
                p++;
            } else return NULL;
        } else if ((p = json_utf8_(p, e)) == NULL) return NULL;
    }
    return NULL;
}

static inline const uint8_t *json_number_(const uint8_t *p, const uint8_t *e) {
    if (p < e && *p == '-') p++;
    if (p >= e) return NULL;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < e && *p >= '0' && *p <= '9') p++;
    else return NULL;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

/* Skips one value starting at p (no leading whitespace) inside `depth`
 * containers; NULL if invalid. */
static inline const uint8_t *json_value_(const uint8_t *p, const uint8_t *e, int depth) {
    if (p >= e) return NULL;
    if ((*p == '[' || *p == '{') && depth >= JSON_MAX_NESTING) return NULL;
    switch (*p) {
    case '"': return json_string_(p, e);
    case 't': return (e - p >= 4 && memcmp(p, "true", 4) == 0) ? p + 4 : NULL;
    case 'f': return (e - p >= 5 && memcmp(p, "false", 5) == 0) ? p + 5 : NULL;
    case 'n': return (e - p >= 4 && memcmp(p, "null", 4) == 0) ? p + 4 : NULL;
    case '[':
        p = json_ws_(p + 1, e);
        if (p < e && *p == ']') return p + 1;
        for (;;) {
            if ((p = json_value_(p, e, depth + 1)) == NULL) return NULL;
            p = json_ws_(p, e);
            if (p >= e) return NULL;
            if (*p == ']') return p + 1;
            if (*p != ',') return NULL;
            p = json_ws_(p + 1, e);
        }
    case '{':
        p = json_ws_(p + 1, e);
        if (p < e && *p == '}') return p + 1;
        for (;;) {
            if (p >= e || *p != '"' || (p = json_string_(p, e)) == NULL) return NULL;
            p = json_ws_(p, e);
            if (p >= e || *p != ':') return NULL;
            p = json_ws_(p + 1, e);
            if ((p = json_value_(p, e, depth + 1)) == NULL) return NULL;
            p = json_ws_(p, e);
            if (p >= e) return NULL;
            if (*p == '}') return p + 1;
            if (*p != ',') return NULL;
            p = json_ws_(p + 1, e);
        }
    default: return json_number_(p, e);
    }
}

/** 1 if `buf` is exactly one JSON value with optional surrounding whitespace. */
static inline int json_valid(const uint8_t *buf, size_t len) {
    const uint8_t *e = buf + len;
    const uint8_t *p = json_value_(json_ws_(buf, e), e, 0);
    return p != NULL && json_ws_(p, e) == e;
}

/**
 * Finds member `name` of the top-level object in `buf` (which must be valid:
 * check with json_valid first). Keys are compared as written, so a key spelled
 * with escapes does not match. Returns 1 and fills `out`, or 0.
 */
static inline int json_member(const uint8_t *buf, size_t len, const char *name, json_tok *out) {
    const uint8_t *e = buf + len, *p = json_ws_(buf, e);
    size_t name_len = strlen(name);
    if (p >= e || *p != '{') return 0;
    p = json_ws_(p + 1, e);
    while (p < e && *p == '"') {
        const uint8_t *key = p + 1, *key_end = json_string_(p, e) - 1;
        const uint8_t *v = json_ws_(json_ws_(key_end + 1, e) + 1, e); /* past ':' */
        const uint8_t *v_end = json_value_(v, e, 1);
        if ((size_t)(key_end - key) == name_len && memcmp(key, name, name_len) == 0) {
            out->p = v;
            out->len = (size_t)(v_end - v);
            out->kind = *v == '{' ? JSON_OBJECT : *v == '[' ? JSON_ARRAY : *v == '"' ? JSON_STRING
                      : (*v == 't' || *v == 'f' || *v == 'n') ? JSON_LITERAL : JSON_NUMBER;
            return 1;
        }
        p = json_ws_(v_end, e);
        if (p < e && *p == ',') p = json_ws_(p + 1, e);
    }
    return 0;
}

static inline size_t json_put_utf8_(uint8_t *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { out[0] = (uint8_t)(0xC0 | cp >> 6); out[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12); out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18); out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (uint8_t)(0x80 | (cp & 0x3F)); return 4;
}

/**
 * Decodes a valid string token into `out` (capacity tok->len + 1 always
 * suffices) as UTF-8, NUL-terminated; returns the decoded length.
 */
static inline size_t json_decode_string(const json_tok *tok, uint8_t *out) {
    const uint8_t *p = tok->p + 1, *e = tok->p + tok->len - 1;
    size_t n = 0;
    while (p < e) {
        if (*p != '\\') { out[n++] = *p++; continue; }
        p++;
        switch (*p++) {
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            for (int i = 0; i < 4; i++) cp = cp << 4 | (uint32_t)json_hex_(*p++);
            if (cp >= 0xD800 && cp <= 0xDBFF && e - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                uint32_t lo = 0;
                for (int i = 2; i < 6; i++) lo = lo << 4 | (uint32_t)json_hex_(p[i]);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            n += json_put_utf8_(out + n, cp);
            break;
        }
        default: out[n++] = p[-1]; break; /* \" \\ \/ */
        }
    }
    out[n] = 0;
    return n;
}

/**
 * Writes `s` as a JSON string literal into `out` (capacity 6 * len + 3 always
 * suffices): `"` and `\` escaped, control characters as \b \f \n \r \t or
 * \u00XX, everything else as is. Returns the length written.
 */
static inline size_t json_encode_string(const uint8_t *s, size_t len, uint8_t *out) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    out[n++] = '"';
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        const char *short_esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b"
                              : c == '\f' ? "\\f" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                              : c == '\t' ? "\\t" : NULL;
        if (short_esc != NULL) {
            out[n++] = (uint8_t)short_esc[0];
            out[n++] = (uint8_t)short_esc[1];
        } else if (c < 0x20) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = (uint8_t)hex[c >> 4];
            out[n + 5] = (uint8_t)hex[c & 0xF];
            n += 6;
        } else out[n++] = c;
    }
    out[n++] = '"';
    return n;
}

#endif /* JSON_SCAN_H */
