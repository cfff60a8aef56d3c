/* cards — the card handlers' registry opening (see cards.h). */
#include "cards.h"

#include <jansson.h>

bool cards_list(handler_call *c, registry_cb *cb)
{
    const char *id = handler_arg(c, "id");
    const handler_env *env = handler_env_of(c);
    if (!id || !env->registry)
        return false;
    registry_list_cards(env->registry, id, 0, NULL, cb, c);
    return true;
}

bool cards_reply_ok(handler_call *c, const registry_result *r, const char *unknown)
{
    if (r->status == REGISTRY_NOT_FOUND) {
        handler_finish(c, unknown, NULL);
        return false;
    }
    if (r->status != REGISTRY_OK || !json_is_array(json_object_get(r->body, "cards"))) {
        handler_finish(c, "unavailable", NULL);
        return false;
    }
    return true;
}
