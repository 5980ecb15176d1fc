/* webhook: posts the payload to WEBHOOK_URL with the message's idempotency key
 * as the provider's Idempotency-Key (docs/idempotent-calls.md), through the
 * host function sluice_http_request. 2xx acknowledges (prints
 * "webhook <status> <body>"), a 3xx is followed (at most 3 hops, each checked
 * against the egress policy), a 4xx other than 408/429 rejects, anything else
 * (5xx, a refused or failed request) retries. */
#include "sluice.h"

#define MAX_HOPS 3
#define BUFFER_BYTES (256 * 1024)

static uint8_t buffer[BUFFER_BYTES];
static char url[2048];

/* The value of header `name` (lowercase) in a "name: value\r\n" block, copied
 * into `out`; 0 if found. */
static int header(const sluice_http_response *r, const char *name, char *out, size_t cap) {
    size_t n = strlen(name), i = 0;
    while (i < r->headers_len) {
        const char *line = r->headers + i;
        const char *end = memchr(line, '\r', r->headers_len - i);
        size_t len = end ? (size_t)(end - line) : r->headers_len - i;
        if (len > n + 2 && memcmp(line, name, n) == 0 && line[n] == ':' && line[n + 1] == ' ') {
            size_t v = len - n - 2;
            if (v >= cap) return -1;
            memcpy(out, line + n + 2, v);
            out[v] = 0;
            return 0;
        }
        i += len + 2;
    }
    return -1;
}

int main(void) {
    sluice_payload payload;
    sluice_meta meta;
    char headers[512];
    const char *target = getenv("WEBHOOK_URL");
    if (target == NULL || strlen(target) >= sizeof url) {
        fprintf(stderr, "webhook: WEBHOOK_URL is not set\n");
        return SLUICE_EXIT_RETRY;
    }
    if (sluice_read_payload(&payload) != 0) return SLUICE_EXIT_RETRY;
    sluice_read_meta(&meta);
    snprintf(headers, sizeof headers,
             "content-type: application/json\nidempotency-key: %s\n", meta.idempotency_key);
    strcpy(url, target);
    for (int hop = 0; hop <= MAX_HOPS; hop++) {
        sluice_http_response r;
        int32_t status = sluice_http("POST", url, headers, payload.data, payload.len, buffer,
                                     sizeof buffer, &r);
        if (status != SLUICE_OK) {
            fprintf(stderr, "webhook: %s (%d)\n", sluice_http_strerror(status), (int)status);
            return SLUICE_EXIT_RETRY;
        }
        if (r.status >= 200 && r.status < 300) {
            printf("webhook %u %.*s\n", (unsigned)r.status, (int)r.body_len, (const char *)r.body);
            return SLUICE_EXIT_OK;
        }
        if (r.status >= 300 && r.status < 400) {
            if (header(&r, "location", url, sizeof url) != 0) return SLUICE_EXIT_RETRY;
            printf("redirect %u -> %s\n", (unsigned)r.status, url);
            continue;
        }
        fprintf(stderr, "webhook: answered %u\n", (unsigned)r.status);
        if (r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429)
            return SLUICE_EXIT_REJECT;
        return SLUICE_EXIT_RETRY;
    }
    fprintf(stderr, "webhook: more than %d redirects\n", MAX_HOPS);
    return SLUICE_EXIT_RETRY;
}
