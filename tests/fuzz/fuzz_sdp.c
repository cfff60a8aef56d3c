/* fuzz_sdp — libFuzzer target of the SDP gate (gateway/voice/sdp_check.h).
 * Every input goes through sdp_check; one that passes goes on to sofia-sip's
 * sdp_parse and sdp_parser_free, as the SIP thread does. The target proves
 * the gate's promise: whatever passes, the 1.12.11 parser handles without
 * looping (libFuzzer's -timeout and -rss_limit_mb catch a loop that
 * allocates) and without memory errors (ASan). Seeds: corpus/sdp. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/sdp.h>
#include <sofia-sip/su_alloc.h>

#include "sdp_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!sdp_check((const char *)data, size, NULL))
        return 0;
    /* sdp_parse reads `size` bytes; the copy ends in a NUL as SIP bodies do. */
    char *body = malloc(size + 1);
    if (body == NULL)
        return 0;
    memcpy(body, data, size);
    body[size] = '\0';
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sdp_parser_t *parser = sdp_parse(home, body, (issize_t)size, 0);
    sdp_session(parser);
    sdp_parser_free(parser);
    su_home_deinit(home);
    free(body);
    return 0;
}
