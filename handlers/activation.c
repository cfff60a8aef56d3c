/* activation — a new card put to use with a PIN of the holder's choice, in
 * three calls a dialplan makes in turn:
 *
 *   find_activatable  the sealed card of the caller (GET cards) and, when an
 *                     application produced it (GET applications), whether
 *                     it has been collected;
 *   check_new_pin     the first entry of the new PIN: its strength, and a
 *                     keyed digest (digest.h) the session keeps instead of
 *                     the PIN until the second entry;
 *   activate_card     the second entry: same digest, same strength rules,
 *                     then POST activation.
 *
 * The strength rules are domain_pin_check's, the registry's own, so a PIN
 * the registry would refuse is refused before any write. The PIN arguments
 * are wiped as soon as they are no longer needed and never logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "cards.h"
#include "digest.h"
#include "domain.h"
#include "log.h"
#include "mem.h"
#include "registry.h"

/* The issuer's initial PIN. The registry's is a setting of its own
 * (registry-sim --initial-pin), which the gateway does not know; this is the
 * one commonly used (docs/registry-api.md, the demo data), and the registry
 * itself refuses any other with reason `initial`. */
#define ACTIVATION_INITIAL_PIN "123456"

/* A person's applications fit in one page of this size. */
#define ACTIVATION_APPLICATIONS_PAGE 100

/* PIN strength ----------------------------------------------------------------*/

/* The result for a PIN that is not good enough. A malformed PIN (not six
 * digits) has no result of its own in the table: the dialplan collects
 * exactly six digits, so it only comes from a broken input, and `repeated`
 * makes the caller choose again like any other weak PIN. */
static const char *weak_result(domain_pin_verdict v)
{
    switch (v) {
    case DOMAIN_PIN_INITIAL: return "initial";
    case DOMAIN_PIN_SEQUENCE: return "sequence";
    case DOMAIN_PIN_BIRTH_DATE: return "birth_date";
    case DOMAIN_PIN_REPEATED:
    case DOMAIN_PIN_MALFORMED:
    case DOMAIN_PIN_OK:
        break;
    }
    return "repeated";
}

static domain_pin_verdict judge_pin(const handler_call *c)
{
    return domain_pin_check(handler_arg(c, "pin"), ACTIVATION_INITIAL_PIN, handler_arg(c, "id"));
}

/* The registry's `reason` of a 422 pin_too_weak, mapped like our verdicts. */
static const char *weak_reason_result(const char *reason)
{
    static const char *const same[] = {"initial", "repeated", "sequence", "birth_date", NULL};
    for (const char *const *s = same; reason && *s; s++)
        if (strcmp(reason, *s) == 0)
            return *s;
    if (reason && strcmp(reason, "malformed") == 0)
        return weak_result(DOMAIN_PIN_MALFORMED);
    return "unavailable";
}

/* find_activatable ---------------------------------------------------------------*/

/* Lives from the cards' answer to the applications'. */
typedef struct {
    handler_call *call;
    char card[DOMAIN_CARD_MAX + 1];   /* the sealed card */
} find_ctx;

static json_t *new_card_vars(const char *card)
{
    return json_pack("{s:s}", "new_card", card);
}

static bool stage_before_collected(const char *stage)
{
    static const char *const before[] = {"received", "in_production", "at_city_bank", "at_outlet", NULL};
    for (const char *const *s = before; *s; s++)
        if (strcmp(stage, *s) == 0)
            return true;
    return false;
}

/* The result for a sealed card produced by an application at `stage`; one
 * past `collected` (activated, failed) will not be activated by the
 * registry, so nothing waits. */
static const char *stage_result(const char *stage)
{
    if (!stage)
        return "unavailable";
    if (strcmp(stage, "collected") == 0)
        return "ready";
    /* A card sealed for not being collected in time is still to be
     * collected, now at a counter. */
    if (stage_before_collected(stage) || strcmp(stage, "uncollected") == 0)
        return "not_collected";
    if (strcmp(stage, "activated") == 0 || strcmp(stage, "production_failed") == 0)
        return "nothing";
    return "unavailable";
}

/* The newest application that produced `card` (the list is newest first). */
static json_t *producing_application(json_t *body, const char *card)
{
    size_t i;
    json_t *app;
    json_array_foreach(json_object_get(body, "applications"), i, app) {
        const char *number = json_string_value(json_object_get(app, "card_number"));
        if (number && strcmp(number, card) == 0)
            return app;
    }
    return NULL;
}

static void on_applications(const registry_result *r, void *arg)
{
    find_ctx *x = arg;
    if (r->status != REGISTRY_OK || !json_is_array(json_object_get(r->body, "applications"))) {
        handler_finish(x->call, "unavailable", NULL);
    } else {
        json_t *app = producing_application(r->body, x->card);
        const char *result = app ? stage_result(json_string_value(json_object_get(app, "stage")))
                                 : "ready";   /* not from an application: in the holder's hands */
        handler_finish(x->call, result, new_card_vars(x->card));
    }
    free(x);
}

/* The first sealed card (status 0) of the list, or NULL. */
static json_t *sealed_card(json_t *body)
{
    size_t i;
    json_t *card;
    json_array_foreach(json_object_get(body, "cards"), i, card) {
        json_t *status = json_object_get(card, "status");
        if (json_is_integer(status) && json_integer_value(status) == 0)
            return card;
    }
    return NULL;
}

static void on_cards(const registry_result *r, void *arg)
{
    handler_call *c = arg;
    if (!cards_reply_ok(c, r, "nothing"))
        return;
    json_t *card = sealed_card(r->body);
    const char *number = json_string_value(json_object_get(card, "card_number"));
    if (!card) {
        handler_finish(c, "nothing", NULL);
        return;
    }
    if (!number || !domain_card_number_valid(number)) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    find_ctx *x = mem_calloc(1, sizeof *x);
    x->call = c;
    snprintf(x->card, sizeof x->card, "%s", number);
    registry_list_applications(handler_env_of(c)->registry, handler_arg(c, "id"),
                               ACTIVATION_APPLICATIONS_PAGE, NULL, on_applications, x);
}

void handlers_find_activatable_run(handler_call *c)
{
    if (!cards_list(c, on_cards))
        handler_finish(c, "unavailable", NULL);
}

/* check_new_pin ------------------------------------------------------------------*/

/* A strong first entry ends `ok` with its digest. Without a digest key (a
 * configuration fault: the table gives this handler no `unavailable`) the
 * digest is "", which no second entry can match: activate_card then ends
 * `unavailable`, so the caller hears of a fault, not of a weak PIN. */
void handlers_check_new_pin_run(handler_call *c)
{
    domain_pin_verdict v = judge_pin(c);
    char digest[HANDLER_DIGEST_HEX + 1] = "";
    if (v == DOMAIN_PIN_OK && !handler_digest(handler_env_of(c), "new_pin", handler_session_id(c),
                                              handler_arg(c, "pin"), digest))
        log_error("handler.no_digest_key", "handler=check_new_pin");
    handler_wipe_arg(c, "pin");
    if (v != DOMAIN_PIN_OK)
        handler_finish(c, weak_result(v), NULL);
    else
        handler_finish(c, "ok", json_pack("{s:s}", "new_pin_digest", digest));
}

/* activate_card ------------------------------------------------------------------*/

static void on_activated(const registry_result *r, void *arg)
{
    handler_call *c = arg;
    const char *code = r->error_code ? r->error_code : "";
    if (r->status == REGISTRY_OK)
        handler_finish(c, "ok", NULL);
    else if (r->status == REGISTRY_REJECTED && strcmp(code, "pin_too_weak") == 0)
        handler_finish(c, weak_reason_result(json_string_value(
                              json_object_get(json_object_get(r->body, "error"), "reason"))),
                       NULL);
    else if (r->status == REGISTRY_NOT_FOUND ||
             (r->status == REGISTRY_CONFLICT && strcmp(code, "card_not_activatable") == 0))
        handler_finish(c, "not_activatable", NULL);
    else
        handler_finish(c, "unavailable", NULL);
}

/* Why the second entry cannot be sent, or NULL: it must match the first
 * entry's digest, then pass the same strength rules. */
static const char *second_entry_refusal(handler_call *c)
{
    char digest[HANDLER_DIGEST_HEX + 1];
    if (!handler_digest(handler_env_of(c), "new_pin", handler_session_id(c), handler_arg(c, "pin"),
                        digest)) {
        log_error("handler.no_digest_key", "handler=activate_card");
        return "unavailable";
    }
    if (!handler_digest_equal(digest, handler_arg(c, "digest")))
        return "mismatch";
    domain_pin_verdict v = judge_pin(c);
    return v == DOMAIN_PIN_OK ? NULL : weak_result(v);
}

void handlers_activate_card_run(handler_call *c)
{
    const char *id = handler_arg(c, "id");
    const char *card = handler_arg(c, "card");
    const handler_env *env = handler_env_of(c);
    const char *refusal = id && card && env->registry ? second_entry_refusal(c) : "unavailable";
    if (refusal) {
        handler_wipe_arg(c, "pin");
        handler_finish(c, refusal, NULL);
        return;
    }
    char key[HANDLER_CALL_KEY_MAX + 10];
    snprintf(key, sizeof key, "%s.activate", handler_call_key(c));
    registry_activate_card(env->registry, card, id, handler_arg(c, "pin"), key, on_activated, c);
    handler_wipe_arg(c, "pin");
}
