/* fuzz_dlr_query — a delivery report's query as /sms/dlr reads it
 * (sms_out_dlr_parse). Nothing is kept between inputs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sms_out.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *query = malloc(size + 1);
    if (!query)
        abort();
    memcpy(query, data, size);
    query[size] = '\0';
    sms_out_dlr d;
    if (sms_out_dlr_parse(query, &d) == NULL &&
        (!d.state || !d.id[0] || strlen(d.token) > SMS_OUT_TOKEN_LEN))
        abort(); /* a well-formed report names a message and a state */
    free(query);
    return 0;
}
