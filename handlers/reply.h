/* reply — reading the registry's answers the way every handler does: the
 * person's current card from a card list, and a string field that may be
 * missing. Pure functions over borrowed jansson values. */
#ifndef CARDLINE_HANDLER_REPLY_H
#define CARDLINE_HANDLER_REPLY_H

#include <jansson.h>

/* The card marked `current: true` in a `{"cards": [...]}` list, or NULL. */
json_t *reply_current_card(json_t *body);

/* The string at `key` of `obj`, or "" when it is absent or not a string. */
const char *reply_text(json_t *obj, const char *key);

#endif
