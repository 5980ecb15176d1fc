/*
 * sluice.h — write sluice handlers in C (or Zig, through @cImport with libc).
 *
 * A handler is a WASI command (wasm32-wasip1 / wasm32-wasi): the payload arrives
 * on stdin, the metadata in SLUICE_* environment variables, and the exit status
 * is the outcome: 0 acknowledges, 65 rejects (straight to the DLQ), anything
 * else fails the attempt for a retry (75 by convention). The host functions of
 * import module "sluice" publish messages to the attempt's outbox, write
 * structured log lines and send HTTP(S) requests under the handler's egress
 * policy. The exact contract is docs/guest-abi.md (ABI version 1).
 *
 *   #include "sluice.h"
 *
 *   int main(void) {
 *       sluice_payload p;
 *       sluice_meta m;
 *       if (sluice_read_payload(&p) != 0) return SLUICE_EXIT_RETRY;
 *       sluice_read_meta(&m);
 *       if (p.len == 0) return SLUICE_EXIT_REJECT;
 *       if (sluice_publish_str("audit", p.data, p.len, m.ordering_key, 0) != SLUICE_OK)
 *           return SLUICE_EXIT_RETRY;
 *       printf("handled %s attempt %u\n", m.message_id, m.attempt);
 *       return SLUICE_EXIT_OK;
 *   }
 *
 * Build: zig cc --target=wasm32-wasi -O2 -I guest-sdk/c -o handler.wasm handler.c
 * (or clang --target=wasm32-wasip1 with a wasi-libc sysroot).
 *
 * Everything here is static inline; there is nothing to link. On a target
 * other than wasm the imports are plain extern declarations, so a host
 * build of a handler can link its own test double for them.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Exit statuses (the outcome of the attempt) --------------------------- */

/** Acknowledge: the message is done; what the attempt published is committed. */
#define SLUICE_EXIT_OK 0
/** Reject (EX_DATAERR): the message is permanently bad; DLQ at once, no retry. */
#define SLUICE_EXIT_REJECT 65
/** Retryable failure (EX_TEMPFAIL); any status but 0 and 65 (up to 125) retries. */
#define SLUICE_EXIT_RETRY 75

/* ---- publish() status codes (docs/guest-abi.md §6.1) ---------------------- */

#define SLUICE_OK 0
#define SLUICE_ERR_INVALID_TOPIC (-1)     /* topic not [a-z0-9][a-z0-9._-]{0,127} */
#define SLUICE_ERR_PAYLOAD_TOO_LARGE (-2) /* payload over 1 MiB */
#define SLUICE_ERR_OUTBOX_FULL (-3)       /* 100 messages or 8 MiB this attempt */
#define SLUICE_ERR_BAD_POINTER (-4)       /* a range outside memory */
#define SLUICE_ERR_BAD_UTF8 (-5)          /* topic or key not UTF-8 */
#define SLUICE_ERR_INVALID_KEY (-6)       /* key over 256 bytes or with NUL */
#define SLUICE_ERR_INVALID_DELAY (-7)     /* negative delay */

/* ---- http_request() status codes (docs/guest-abi.md §6.3) ------------------ */

#define SLUICE_ERR_HTTP_INVALID (-10)   /* malformed method, URL or header line */
#define SLUICE_ERR_HTTP_DENIED (-11)    /* origin not allowed, or only forbidden addresses */
#define SLUICE_ERR_HTTP_LIMIT (-12)     /* the attempt's requests or request bytes used up */
#define SLUICE_ERR_HTTP_TOO_LARGE (-13) /* response over the attempt's response limit */
#define SLUICE_ERR_HTTP_FAILED (-14)    /* no resolution, connection or TLS; or it broke */
#define SLUICE_ERR_HTTP_TRUNCATED (-15) /* response larger than the buffer given */

/* ---- log() levels ---------------------------------------------------------- */

#define SLUICE_LOG_TRACE 0
#define SLUICE_LOG_DEBUG 1
#define SLUICE_LOG_INFO 2
#define SLUICE_LOG_WARN 3
#define SLUICE_LOG_ERROR 4

/* ---- Host imports ---------------------------------------------------------- */

#if defined(__wasm__)
#define SLUICE_IMPORT(name) __attribute__((import_module("sluice"), import_name(name)))
#else
#define SLUICE_IMPORT(name)
#endif

/**
 * Buffers one message for the outbox, committed only if this attempt exits 0.
 * key_len 0 means no ordering key; delay_ms 0 means no delay. Returns SLUICE_OK
 * or a negative SLUICE_ERR_* (nothing buffered; the call never traps). Its
 * idempotency key derives from (this message, handler, call index), so a re-run
 * that publishes the same messages in the same order duplicates nothing.
 */
SLUICE_IMPORT("publish")
int32_t sluice_publish(const uint8_t *topic, uint32_t topic_len,
                       const uint8_t *payload, uint32_t payload_len,
                       const uint8_t *key, uint32_t key_len, int64_t delay_ms);

/**
 * Writes one structured log line (UTF-8) at a SLUICE_LOG_* level. Kept whatever
 * the outcome; at most 1,000 lines and 64 KiB per attempt, the rest dropped.
 */
SLUICE_IMPORT("log")
void sluice_log(int32_t level, const uint8_t *msg, uint32_t msg_len);

/**
 * Sends one HTTP(S) request under the handler's egress policy and waits for
 * the whole response (within the attempt's timeout). `headers` holds
 * "Name: value" lines separated by "\n" (or "\r\n"). The response is written
 * to `response` (capacity `response_cap`): its header block ("name: value\r\n"
 * lines), then its body; `out` receives three values: status, header block
 * length, body length. Returns SLUICE_OK or a negative SLUICE_ERR_* (never
 * traps); with SLUICE_ERR_HTTP_TRUNCATED the buffer holds the first bytes and
 * `out` the full lengths. Redirects are not followed.
 */
SLUICE_IMPORT("http_request")
int32_t sluice_http_request(const uint8_t *method, uint32_t method_len,
                            const uint8_t *url, uint32_t url_len,
                            const uint8_t *headers, uint32_t headers_len,
                            const uint8_t *body, uint32_t body_len,
                            uint8_t *response, uint32_t response_cap,
                            uint32_t out[3]);

/* ---- Helpers ---------------------------------------------------------------- */

/** A response of sluice_http(): `body` points into the caller's buffer. */
typedef struct {
    uint32_t status;
    const char *headers; /* "name: value\r\n" lines, not NUL-terminated */
    uint32_t headers_len;
    const uint8_t *body;
    uint32_t body_len;
} sluice_http_response;

/**
 * sluice_http_request with NUL-terminated method, URL and headers (NULL for
 * none), into `buffer` of `cap` bytes; fills `r` on SLUICE_OK.
 */
static inline int32_t sluice_http(const char *method, const char *url, const char *headers,
                                  const void *body, size_t body_len, uint8_t *buffer,
                                  size_t cap, sluice_http_response *r) {
    uint32_t out[3] = {0, 0, 0};
    const char *h = headers != NULL ? headers : "";
    int32_t status = sluice_http_request(
        (const uint8_t *)method, (uint32_t)strlen(method), (const uint8_t *)url,
        (uint32_t)strlen(url), (const uint8_t *)h, (uint32_t)strlen(h),
        (const uint8_t *)(body != NULL ? body : ""), (uint32_t)body_len, buffer, (uint32_t)cap,
        out);
    if (status != SLUICE_OK) return status;
    r->status = out[0];
    r->headers = (const char *)buffer;
    r->headers_len = out[1];
    r->body = buffer + out[1];
    r->body_len = out[2];
    return SLUICE_OK;
}

/** What an http_request status means, for a log line. */
static inline const char *sluice_http_strerror(int32_t status) {
    switch (status) {
    case SLUICE_OK: return "ok";
    case SLUICE_ERR_BAD_POINTER: return "bad pointer";
    case SLUICE_ERR_BAD_UTF8: return "method, URL or headers not UTF-8";
    case SLUICE_ERR_HTTP_INVALID: return "invalid method, URL or header";
    case SLUICE_ERR_HTTP_DENIED: return "denied by the handler's egress policy";
    case SLUICE_ERR_HTTP_LIMIT: return "the attempt's request limit is used up";
    case SLUICE_ERR_HTTP_TOO_LARGE: return "response over the attempt's limit";
    case SLUICE_ERR_HTTP_FAILED: return "no connection, or it broke";
    case SLUICE_ERR_HTTP_TRUNCATED: return "response larger than the buffer";
    default: return "unknown reason";
    }
}

/** The payload: `len` bytes at `data`, followed by a NUL not counted in `len`. */
typedef struct {
    uint8_t *data;
    size_t len;
} sluice_payload;

/**
 * Reads all of stdin into `out` (malloc'd; free(out->data) if you care, the
 * instance is discarded after the attempt anyway). Returns 0, or -1 if stdin
 * could not be read or memory ran out: return SLUICE_EXIT_RETRY then.
 */
static inline int sluice_read_payload(sluice_payload *out) {
    size_t cap = 4096, len = 0;
    uint8_t *buf = (uint8_t *)malloc(cap + 1);
    if (buf == NULL) return -1;
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, stdin);
        len += n;
        if (n == 0) {
            if (ferror(stdin)) {
                free(buf);
                return -1;
            }
            break;
        }
        if (len == cap) {
            uint8_t *bigger = (uint8_t *)realloc(buf, cap * 2 + 1);
            if (bigger == NULL) {
                free(buf);
                return -1;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    buf[len] = 0;
    out->data = buf;
    out->len = len;
    return 0;
}

/**
 * The message's metadata. Strings point into the environment and are "" when
 * a variable is missing (outside sluice); ordering_key is NULL when the message
 * has none; attempt and max_attempts are 1 when missing.
 */
typedef struct {
    const char *topic;
    const char *handler;
    const char *message_id;
    const char *idempotency_key;
    const char *ordering_key;
    const char *enqueued_at; /* RFC 3339 UTC, e.g. 2026-11-27T22:10:43.123Z */
    uint32_t attempt;        /* 1-based */
    uint32_t max_attempts;
} sluice_meta;

static inline const char *sluice_env_(const char *name) {
    const char *v = getenv(name);
    return v != NULL ? v : "";
}

static inline uint32_t sluice_env_u32_(const char *name, uint32_t fallback) {
    const char *v = getenv(name);
    char *end = NULL;
    unsigned long n;
    if (v == NULL || *v == 0) return fallback;
    n = strtoul(v, &end, 10);
    if (*end != 0 || n == 0 || n > UINT32_MAX) return fallback;
    return (uint32_t)n;
}

/** Reads the SLUICE_* metadata variables into `m`. */
static inline void sluice_read_meta(sluice_meta *m) {
    const char *key = getenv("SLUICE_ORDERING_KEY");
    m->topic = sluice_env_("SLUICE_TOPIC");
    m->handler = sluice_env_("SLUICE_HANDLER");
    m->message_id = sluice_env_("SLUICE_MESSAGE_ID");
    m->idempotency_key = sluice_env_("SLUICE_IDEMPOTENCY_KEY");
    m->ordering_key = (key != NULL && *key != 0) ? key : NULL;
    m->enqueued_at = sluice_env_("SLUICE_ENQUEUED_AT");
    m->attempt = sluice_env_u32_("SLUICE_ATTEMPT", 1);
    m->max_attempts = sluice_env_u32_("SLUICE_MAX_ATTEMPTS", m->attempt);
    if (m->max_attempts < m->attempt) m->max_attempts = m->attempt;
}

/** sluice_publish with a NUL-terminated topic and key (key NULL or "": none). */
static inline int32_t sluice_publish_str(const char *topic, const void *payload,
                                         size_t payload_len, const char *key,
                                         int64_t delay_ms) {
    size_t key_len = key != NULL ? strlen(key) : 0;
    return sluice_publish((const uint8_t *)topic, (uint32_t)strlen(topic),
                          (const uint8_t *)payload, (uint32_t)payload_len,
                          (const uint8_t *)(key_len ? key : ""), (uint32_t)key_len, delay_ms);
}

/** What a publish status means, for a log line. */
static inline const char *sluice_publish_strerror(int32_t status) {
    switch (status) {
    case SLUICE_OK: return "ok";
    case SLUICE_ERR_INVALID_TOPIC: return "invalid topic name";
    case SLUICE_ERR_PAYLOAD_TOO_LARGE: return "payload larger than 1 MiB";
    case SLUICE_ERR_OUTBOX_FULL: return "outbox full (100 messages or 8 MiB per attempt)";
    case SLUICE_ERR_BAD_POINTER: return "bad pointer";
    case SLUICE_ERR_BAD_UTF8: return "topic or key is not UTF-8";
    case SLUICE_ERR_INVALID_KEY: return "invalid ordering key (over 256 bytes or NUL)";
    case SLUICE_ERR_INVALID_DELAY: return "negative delay";
    default: return "unknown reason";
    }
}

/** Logs a printf-style line through the host (cut at 1 KiB). */
__attribute__((format(printf, 2, 3)))
static inline void sluice_logf(int32_t level, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) n = (int)(sizeof buf - 1);
    sluice_log(level, (const uint8_t *)buf, (uint32_t)n);
}

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_H */
