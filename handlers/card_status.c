/* card_status — the caller's current card (GET cards; the registry lists
 * the current card first, so the first page is enough). The call ends with
 * the card's status name as its result, and sets the card number and the
 * bank to call about the bank function (named in the session's language).
 * A temporary loss says until when it holds, or ends `temporary_loss_held`
 * when a replacement of the card holds it with no end date. */
#include <stdbool.h>
#include <string.h>

#include "builtin.h"
#include "cards.h"
#include "registry.h"
#include "reply.h"

static json_t *status_vars(json_t *card, const char *lang)
{
    json_t *bank = json_object_get(card, "bank");
    return json_pack("{s:s, s:s, s:s, s:s}",
                     "card", handler_reply_text(card, "card_number"),
                     "bank_name", handler_reply_name(bank, "name", lang),
                     "bank_hotline", handler_reply_text(bank, "hotline"),
                     "loss_until", handler_reply_text(json_object_get(card, "loss_report"), "expires_on"));
}

/* The result for the card's status; a temporary loss that a replacement
 * holds (the report names the application) has its own. */
static const char *status_result(json_t *card, const char *status)
{
    json_t *report = json_object_get(card, "loss_report");
    if (strcmp(status, "temporary_loss") == 0 && json_is_string(json_object_get(report, "held_by")))
        return "temporary_loss_held";
    return status;
}

/* A status outside the contract's list is a bad response, not a result. */
static bool is_status_result(const char *status)
{
    return strcmp(status, "no_card") != 0 && strcmp(status, "unavailable") != 0 &&
           strcmp(status, "temporary_loss_held") != 0 &&
           handler_has_result(handlers_find("card_status"), status);
}

static void on_cards(const registry_result *r, void *arg)
{
    handler_call *c = arg;
    if (!cards_reply_ok(c, r, "no_card"))
        return;
    json_t *card = handler_reply_current_card(r->body);
    const char *status = card ? handler_reply_text(card, "status_name") : "";
    if (!card)
        handler_finish(c, "no_card", NULL);
    else if (!json_is_string(json_object_get(card, "card_number")) ||
             !is_status_result(status))
        handler_finish(c, "unavailable", NULL);
    else
        handler_finish(c, status_result(card, status), status_vars(card, handler_arg(c, "lang")));
}

void handlers_card_status_run(handler_call *c)
{
    if (!cards_list(c, on_cards))
        handler_finish(c, "unavailable", NULL);
}
