/* card_history — the caller's current card and the card it replaced (GET
 * cards; the registry lists the current card first, so the first page is
 * enough, and the current card names its predecessor in `replaces`). */
#include <stdbool.h>

#include "builtin.h"
#include "cards.h"
#include "registry.h"
#include "reply.h"

/* A number, and a predecessor that is absent, null or a number. */
static bool well_formed(json_t *card)
{
    json_t *replaces = json_object_get(card, "replaces");
    return json_is_string(json_object_get(card, "card_number")) &&
           (!replaces || json_is_null(replaces) || json_is_string(replaces));
}

static void on_cards(const registry_result *r, void *arg)
{
    handler_call *c = arg;
    if (!cards_reply_ok(c, r, "no_card"))
        return;
    json_t *card = handler_reply_current_card(r->body);
    const char *number = json_string_value(json_object_get(card, "card_number"));
    const char *old = json_string_value(json_object_get(card, "replaces"));
    if (!card)
        handler_finish(c, "no_card", NULL);
    else if (!well_formed(card))
        handler_finish(c, "unavailable", NULL);
    else if (old && old[0])
        handler_finish(c, "replaced", json_pack("{s:s, s:s}", "card", number, "old_card", old));
    else
        handler_finish(c, "single", json_pack("{s:s}", "card", number));
}

void handlers_card_history_run(handler_call *c)
{
    if (!cards_list(c, on_cards))
        handler_finish(c, "unavailable", NULL);
}
