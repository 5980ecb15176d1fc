/* publish: fans an order {"order_id": "A-1" | 17, "email": "...", "total": 12.5}
 * out to topic `email` ({"order_id":..,"email":..}) and topic `analytics`
 * ({"event":"order_placed","order_id":..,"total":..}), both with the order id
 * as ordering key. Both are committed only if this attempt exits 0. */
#include "json_scan.h"
#include "sluice.h"

static int reject(const char *why) {
    fprintf(stderr, "publish: reject: %s\n", why);
    return SLUICE_EXIT_REJECT;
}

/* A non-negative integer that fits in 64 bits, written as digits only. */
static int is_u64(const json_tok *t) {
    for (size_t i = 0; i < t->len; i++)
        if (t->p[i] < '0' || t->p[i] > '9') return 0;
    return t->len < 20 || (t->len == 20 && memcmp(t->p, "18446744073709551615", 20) <= 0);
}

static int send(const char *topic, const uint8_t *body, size_t len, const char *key) {
    int32_t status = sluice_publish_str(topic, body, len, key, 0);
    if (status != SLUICE_OK) {
        fprintf(stderr, "publish: retry: publish to %s refused: %s (status %d)\n", topic,
                sluice_publish_strerror(status), (int)status);
        return -1;
    }
    return 0;
}

int main(void) {
    sluice_payload payload;
    json_tok id_tok, email_tok, total_tok;
    if (sluice_read_payload(&payload) != 0) return SLUICE_EXIT_RETRY;
    if (!json_valid(payload.data, payload.len)) return reject("malformed JSON payload");
    if (!json_member(payload.data, payload.len, "order_id", &id_tok) ||
        !json_member(payload.data, payload.len, "email", &email_tok) ||
        !json_member(payload.data, payload.len, "total", &total_tok))
        return reject("an order needs order_id, email and total");
    if (email_tok.kind != JSON_STRING) return reject("email is not a string");
    if (total_tok.kind != JSON_NUMBER) return reject("total is not a number");

    /* The order id as text (the ordering key), and as a JSON string. */
    char *id = malloc(id_tok.len + 1);
    uint8_t *email = malloc(email_tok.len + 1);
    if (id == NULL || email == NULL) return SLUICE_EXIT_RETRY;
    if (id_tok.kind == JSON_STRING) {
        json_decode_string(&id_tok, (uint8_t *)id);
    } else if (id_tok.kind == JSON_NUMBER && is_u64(&id_tok)) {
        memcpy(id, id_tok.p, id_tok.len);
        id[id_tok.len] = 0;
    } else {
        return reject("order_id is neither a string nor a non-negative integer");
    }
    if (id[0] == 0) return reject("order_id is empty");
    size_t id_len = strlen(id);
    size_t email_len = json_decode_string(&email_tok, email);

    /* Room for both documents: escaped strings take at most 6 bytes a byte. */
    size_t cap = 64 + 6 * id_len + 6 * email_len + total_tok.len;
    uint8_t *body = malloc(cap);
    if (body == NULL) return SLUICE_EXIT_RETRY;
    size_t n = 0;
#define PUT(s) (memcpy(body + n, (s), strlen(s)), n += strlen(s))
    PUT("{\"order_id\":");
    n += json_encode_string((const uint8_t *)id, id_len, body + n);
    PUT(",\"email\":");
    n += json_encode_string(email, email_len, body + n);
    PUT("}");
    if (send("email", body, n, id) != 0) return SLUICE_EXIT_RETRY;

    n = 0;
    PUT("{\"event\":\"order_placed\",\"order_id\":");
    n += json_encode_string((const uint8_t *)id, id_len, body + n);
    PUT(",\"total\":");
    memcpy(body + n, total_tok.p, total_tok.len);
    n += total_tok.len;
    PUT("}");
#undef PUT
    if (send("analytics", body, n, id) != 0) return SLUICE_EXIT_RETRY;

    printf("published order %s to email and analytics\n", id);
    /* With FAIL_FIRST_ATTEMPT set, attempt 1 fails after publishing: the outbox
     * discards what it published, and the retry publishes it again, once. */
    sluice_meta meta;
    sluice_read_meta(&meta);
    if (getenv("FAIL_FIRST_ATTEMPT") != NULL && meta.attempt == 1) {
        fprintf(stderr, "publish: failing after publishing, as FAIL_FIRST_ATTEMPT asks\n");
        return SLUICE_EXIT_RETRY;
    }
    return SLUICE_EXIT_OK;
}
