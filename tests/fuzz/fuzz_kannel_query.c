/* fuzz_kannel_query — Kannel's get-url as /sms/kannel reads it: the input
 * is the query (or POST form) text; it is parsed and checked
 * (sms_wire_parse) and its key compared (sms_wire_key_ok). Nothing is kept
 * between inputs. */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "sms_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    struct evkeyvalq form;
    TAILQ_INIT(&form);
    sms_mo mo;
    sms_refusal why;
    bool ok = sms_wire_parse(text, 480, &form, &mo, &why);
    if (ok && (!mo.from || !mo.text || !mo.sender[0]))
        abort(); /* accepted requests always have a sender and a text */
    if (!ok && (why.status < 400 || !why.code || !why.message))
        abort();
    if (mo.key)
        sms_wire_key_ok("the-fuzzer-kannel-key", mo.key);
    evhttp_clear_headers(&form);
    free(text);
    return 0;
}
