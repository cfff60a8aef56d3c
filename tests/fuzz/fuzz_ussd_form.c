/* fuzz_ussd_form — the USSD aggregator wire as /ussd reads it: the input
 * is "TIMESTAMP\nSIGNATURE\nBODY"; the signature is checked over the body
 * (ussd_wire_verify) and the body parsed into fields (ussd_wire_fields).
 * Nothing is kept between inputs. */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "ussd_wire.h"

#define FUZZ_SECRET "the fuzzer's aggregator secret"

/* The next line of [*p, end) as a malloc'd string; *p moves past it. */
static char *take_line(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = (size_t)((nl ? nl : end) - *p);
    char *line = malloc(n + 1);
    if (!line)
        abort();
    memcpy(line, *p, n);
    line[n] = '\0';
    *p = nl ? nl + 1 : end;
    return line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    char *timestamp = take_line(&p, end);
    char *signature = take_line(&p, end);
    const char *body = (const char *)p;
    size_t len = (size_t)(end - p);
    ussd_wire_verify(FUZZ_SECRET, timestamp[0] ? timestamp : NULL, signature[0] ? signature : NULL, body, len,
                     1700000000, 300);
    struct evkeyvalq form;
    TAILQ_INIT(&form);
    ussd_fields fields;
    int status;
    if (ussd_wire_fields(body, len, 1024, &form, &fields, &status) == NULL &&
        (!fields.session_id || !fields.code || !fields.phone || !fields.text))
        abort(); /* accepted requests always have their fields */
    evhttp_clear_headers(&form);
    free(timestamp);
    free(signature);
    return 0;
}
