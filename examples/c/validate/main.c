/* validate: acknowledges a payload that is valid JSON (any value) and rejects
 * anything else with exit status 65: straight to the DLQ, no retry. */
#include "json_scan.h"
#include "sluice.h"

int main(void) {
    sluice_payload payload;
    if (sluice_read_payload(&payload) != 0) {
        fprintf(stderr, "validate: cannot read the payload\n");
        return SLUICE_EXIT_RETRY;
    }
    if (!json_valid(payload.data, payload.len)) {
        fprintf(stderr, "validate: reject: malformed JSON payload (%zu bytes)\n", payload.len);
        return SLUICE_EXIT_REJECT;
    }
    printf("valid: %zu bytes of JSON\n", payload.len);
    return SLUICE_EXIT_OK;
}
