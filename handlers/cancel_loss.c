/* cancel_loss — cancels the temporary loss report of the caller's current
 * card: GET cards finds the card and its active report, then POST
 * cancellation. The refusals the list already shows (no active report, a
 * formal one) are answered without a write; the ones only the registry
 * knows (a replacement was applied for) come back as 409 codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "domain.h"
#include "handler_call.h"
#include "registry.h"
#include "reply.h"

/* Lives from the list's answer to the cancellation's. */
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
    cancel_ctx *x = calloc(1, sizeof *x);
    if (!x)
        abort();
    x->call = c;
    snprintf(x->card, sizeof x->card, "%s", card);
    char key[HANDLER_CALL_KEY_MAX + 8];
    snprintf(key, sizeof key, "%s.cancel", handler_call_key(c));
    registry_cancel_loss(handler_env_of(c)->registry, card, report_id,
                         channel_name(handler_channel(c)), key, on_cancelled, x);
}

static void on_cards(const registry_result *r, void *arg)
{
    handler_call *c = arg;
    if (r->status == REGISTRY_NOT_FOUND) {
        handler_finish(c, "not_reported", NULL);
        return;
    }
    if (r->status != REGISTRY_OK || !json_is_array(json_object_get(r->body, "cards"))) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    json_t *card = reply_current_card(r->body);
    const char *number = json_string_value(json_object_get(card, "card_number"));
    json_t *report = json_object_get(card, "loss_report");
    const char *report_id = json_string_value(json_object_get(report, "id"));
    if (!card || !json_is_object(report) || !text_is(report, "state", "active"))
        handler_finish(c, "not_reported", NULL);
    else if (text_is(report, "kind", "formal"))
        handler_finish(c, "not_temporary", NULL);
    else if (!number || !domain_card_number_valid(number) || !report_id)
        handler_finish(c, "unavailable", NULL);
    else
        cancel_report(c, number, report_id);
}

void cancel_loss_run(handler_call *c)
{
    const char *id = handler_arg(c, "id");
    const handler_env *env = handler_env_of(c);
    if (!id || !env->registry) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    registry_list_cards(env->registry, id, 0, NULL, on_cards, c);
}
