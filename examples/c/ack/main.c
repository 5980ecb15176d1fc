/* ack: acknowledges every message after printing one line about it:
 *   ack topic=<topic> id=<message id> attempt=<n> bytes=<payload length> */
#include "sluice.h"

int main(void) {
    sluice_payload payload;
    sluice_meta meta;
    if (sluice_read_payload(&payload) != 0) {
        fprintf(stderr, "ack: cannot read the payload\n");
        return SLUICE_EXIT_RETRY;
    }
    sluice_read_meta(&meta);
    printf("ack topic=%s id=%s attempt=%u bytes=%zu\n", meta.topic, meta.message_id,
           (unsigned)meta.attempt, payload.len);
    return SLUICE_EXIT_OK;
}
