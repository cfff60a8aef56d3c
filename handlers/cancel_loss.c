/* cancel_loss — the temporary loss report of the caller's current card:
 * check_cancel says, without a write, whether it can be cancelled (GET
 * cards for the card and its active report, then GET applications for a
 * replacement of that card), so the caller hears why not before being
 * asked to confirm; cancel_loss cancels it (GET cards, then POST
 * cancellation). A refusal that arose since the check (a replacement
 * applied for, the report lapsed) still comes back as the registry's 409
 * code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "cards.h"
#include "domain.h"
#include "mem.h"
#include "registry.h"
#include "reply.h"

/* Lives from the card list's answer to the next request's: the
 * cancellation, or check_cancel's applications. */
typedef struct {
    handler_call *call;
    char card[DOMAIN_CARD_MAX + 1];   /* the current card, for the `ok` result */
} cancel_ctx;

static bool text_is(json_t *obj, const char *key, const char *value)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s && strcmp(s, value) == 0;
}

static const char *refusal_result(const char *code)
{
    if (!code)
        return "unavailable";
    if (strcmp(code, "reissue_requested") == 0)
        return "reissue_requested";
    if (strcmp(code, "not_temporary") == 0)
        return "not_temporary";
    if (strcmp(code, "not_active") == 0)   /* lapsed or cancelled since the list */
        return "not_reported";
    return "unavailable";
}

static void on_cancelled(const registry_result *r, void *arg)
{
    cancel_ctx *x = arg;
    if (r->status == REGISTRY_OK)
        handler_finish(x->call, "ok", json_pack("{s:s}", "card", x->card));
    else if (r->status == REGISTRY_CONFLICT)
        handler_finish(x->call, refusal_result(r->error_code), NULL);
    else
        handler_finish(x->call, "unavailable", NULL);
    free(x);
}

static void cancel_report(handler_call *c, const char *card, const char *report_id)
{
    cancel_ctx *x = mem_calloc(1, sizeof *x);
    x->call = c;
    snprintf(x->card, sizeof x->card, "%s", card);
    char key[HANDLER_CALL_KEY_MAX + 8];
    snprintf(key, sizeof key, "%s.cancel", handler_call_key(c));
    registry_cancel_loss(handler_env_of(c)->registry, card, report_id,
                         channel_name(handler_channel(c)), key, on_cancelled, x);
}

/* The current card's active temporary report, from a card list; NULL after
 * ending `c` with the result when there is none to cancel. */
static json_t *cancellable_card(handler_call *c, const registry_result *r)
{
    if (!cards_reply_ok(c, r, "not_reported"))
        return NULL;
    json_t *card = handler_reply_current_card(r->body);
    const char *number = json_string_value(json_object_get(card, "card_number"));
    json_t *report = json_object_get(card, "loss_report");
    const char *refusal = "unavailable";
    if (!card || !json_is_object(report) || !text_is(report, "state", "active"))
        refusal = "not_reported";
    else if (text_is(report, "kind", "formal"))
        refusal = "not_temporary";
    else if (number && domain_card_number_valid(number) && json_string_value(json_object_get(report, "id")))
        return card;
    handler_finish(c, refusal, NULL);
    return NULL;
}

static void on_cards(const registry_result *r, void *arg)
{
    handler_call *c = arg;
    json_t *card = cancellable_card(c, r);
    if (!card)
        return;
    cancel_report(c, json_string_value(json_object_get(card, "card_number")),
                  json_string_value(json_object_get(json_object_get(card, "loss_report"), "id")));
}

void handlers_cancel_loss_run(handler_call *c)
{
    if (!cards_list(c, on_cards))
        handler_finish(c, "unavailable", NULL);
}

/* check_cancel ----------------------------------------------------------------------*/

/* A replacement applied for after the card was issued is among the newest
 * applications; one page of them is the bound on what is read. */
#define CHECK_APPLICATIONS_PAGE 20

/* The registry's rule: an application replacing this card forbids the
 * cancellation unless its production failed. */
static bool replacement_pending(json_t *apps, const char *card)
{
    size_t i;
    json_t *app;
    json_array_foreach(apps, i, app)
        if (text_is(app, "replaces_card", card) && !text_is(app, "stage", "production_failed"))
            return true;
    return false;
}

static void on_check_applications(const registry_result *r, void *arg)
{
    cancel_ctx *x = arg;
    json_t *apps = json_object_get(r->body, "applications");
    if (r->status == REGISTRY_OK && json_is_array(apps))
        handler_finish(x->call, replacement_pending(apps, x->card) ? "reissue_requested" : "ok",
                       json_pack("{s:s}", "card", x->card));
    else
        handler_finish(x->call, "unavailable", NULL);
    free(x);
}

static void on_check_cards(const registry_result *r, void *arg)
{
    handler_call *c = arg;
    json_t *card = cancellable_card(c, r);
    if (!card)
        return;
    cancel_ctx *x = mem_calloc(1, sizeof *x);
    x->call = c;
    snprintf(x->card, sizeof x->card, "%s", json_string_value(json_object_get(card, "card_number")));
    registry_list_applications(handler_env_of(c)->registry, handler_arg(c, "id"), CHECK_APPLICATIONS_PAGE,
                               NULL, on_check_applications, x);
}

void handlers_check_cancel_run(handler_call *c)
{
    if (!cards_list(c, on_check_cards))
        handler_finish(c, "unavailable", NULL);
}
