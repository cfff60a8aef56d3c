/* reply — shared readers of registry answers (see reply.h). */
#include "reply.h"

json_t *reply_current_card(json_t *body)
{
    size_t i;
    json_t *card;
    json_array_foreach(json_object_get(body, "cards"), i, card)
        if (json_is_true(json_object_get(card, "current")))
            return card;
    return NULL;
}

const char *reply_text(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}
