/* {{name}}: a sluice handler (ABI 1, guest-sdk/c/sluice.h). */
#include "sluice.h"

int main(void) {
    sluice_payload payload;
    sluice_meta meta;
    if (sluice_read_payload(&payload) != 0) return SLUICE_EXIT_RETRY;
    sluice_read_meta(&meta);
    printf("{{name}} handled %s on %s (attempt %u, %zu bytes)\n", meta.message_id, meta.topic,
           (unsigned)meta.attempt, payload.len);
    return SLUICE_EXIT_OK;
}
