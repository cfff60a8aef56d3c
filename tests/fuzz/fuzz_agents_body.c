/* fuzz_agents_body — the JSON bodies of the Agent API's POST endpoints
 * (gateway/agents): agents_body_parse, what agents_req_json_body checks before an
 * endpoint reads a field, with each endpoint's list of allowed keys, then
 * the field reads the endpoints do. A body must be refused or come back as
 * an object holding only allowed keys, with no leak either way. */
#include "agents_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const transfer_keys[] = {"node", NULL};  /* transfer, resume */
static const char *const reply_keys[] = {"text", NULL};     /* reply */
static const char *const no_keys[] = {NULL};                /* release, claim, done */
static const char *const *const endpoints[] = {transfer_keys, reply_keys, no_keys};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t e = 0; e < sizeof endpoints / sizeof endpoints[0]; e++) {
        bool unknown_field;
        json_t *body = agents_body_parse((const char *)data, size, endpoints[e], &unknown_field);
        if (body == NULL)
            continue;
        if (!json_is_object(body) || unknown_field)
            abort();
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v) {
            if (!agents_one_of(key, endpoints[e]))
                abort();
        }
        /* What agents_ep_reply and read_node take from a body. */
        json_t *text = json_object_get(body, "text");
        if (json_is_string(text) && strlen(json_string_value(text)) > json_string_length(text))
            abort();
        const char *node = json_string_value(json_object_get(body, "node"));
        if (node && strlen(node) > json_string_length(json_object_get(body, "node")))
            abort();
        json_decref(body);
    }
    return 0;
}
