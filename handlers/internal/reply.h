/* reply — reading the registry's answers the way every handler does: the
 * person's current card from a card list, a string field that may be
 * missing, and the names and opening hours the registry gives in Chinese
 * and English, in the session's language. Pure functions over borrowed
 * jansson values. */
#ifndef CARDLINE_HANDLER_REPLY_H
#define CARDLINE_HANDLER_REPLY_H

#include <jansson.h>

/* The card marked `current: true` in a `{"cards": [...]}` list, or NULL. */
json_t *handler_reply_current_card(json_t *body);

/* The string at `key` of `obj`, or "" when it is absent or not a string. */
const char *handler_reply_text(json_t *obj, const char *key);

/* `key` of `obj` in `lang`: `KEY_en` for "en" when the registry has it,
 * else `key` (the registry's own, Chinese). "" when neither is a string. */
const char *handler_reply_name(json_t *obj, const char *key, const char *lang);

/* An outlet's opening hours in `lang` ("周一至周五9:00-17:00",
 * "Mon-Fri 09:00-17:00"), from its structured `opening_hours`; the free-text
 * `hours` when those are missing or malformed, "" when both are. */
#define REPLY_HOURS_MAX 256
void handler_reply_hours(json_t *outlet, const char *lang, char *out, size_t size);

#endif
