/* flaky: fails with exit status 75 (retry) on attempts 1 and 2, then succeeds. */
#include "sluice.h"

#define SUCCEEDS_ON 3

int main(void) {
    sluice_meta meta;
    sluice_read_meta(&meta);
    if (meta.attempt < SUCCEEDS_ON) {
        fprintf(stderr, "flaky: attempt %u of %u fails on purpose\n", (unsigned)meta.attempt,
                (unsigned)meta.max_attempts);
        return SLUICE_EXIT_RETRY;
    }
    printf("flaky: succeeded on attempt %u\n", (unsigned)meta.attempt);
    return SLUICE_EXIT_OK;
}
