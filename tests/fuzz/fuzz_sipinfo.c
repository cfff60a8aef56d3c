/* fuzz_sipinfo — the DTMF bodies of SIP INFO requests (voice_info_digit in
 * gateway/voice/dtmf.h): "application/dtmf-relay" (Signal=5 on one of
 * several lines) and "application/dtmf" (the key alone). The first input
 * byte picks the content type, the rest is the body. A body must yield a
 * key of 0-9 * # A-D, or none. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dtmf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_key(char d)
{
    return (d >= '0' && d <= '9') || d == '*' || d == '#' || (d >= 'A' && d <= 'D');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    /* Copied so that a read past the body's end is caught: sofia hands
     * over payloads that are not NUL-terminated. */
    char *body = malloc(size - 1 ? size - 1 : 1);
    if (body == NULL)
        abort();
    memcpy(body, data + 1, size - 1);
    char digit = voice_info_digit((data[0] & 1) == 0, body, size - 1);
    free(body);
    if (digit != 0 && !is_key(digit))
        abort();
    return 0;
}
