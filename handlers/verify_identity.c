/* verify_identity — checks the caller's service PIN with the registry
 * (POST pin-verifications) and maps the answer onto the handler's results.
 * The PIN argument is copied into the request body by the registry client
 * and wiped here as soon as the request is built; it is never logged. */
#include <stdio.h>
#include <string.h>

#include "builtin.h"
#include "handler_call.h"
#include "registry.h"

static json_t *ok_vars(const handler_call *c, json_t *body)
{
    json_t *initial = json_object_get(body, "initial_pin");
    return json_pack("{s:s, s:s, s:s}",
                     "verified_id", handler_arg(c, "id"),
                     "card", json_string_value(json_object_get(body, "card_number")),
                     "pin_initial", json_is_true(initial) ? "yes" : "no");
}

static json_t *wrong_pin_vars(json_t *body)
{
    char n[24];
    snprintf(n, sizeof n, "%lld",
             (long long)json_integer_value(json_object_get(body, "remaining_attempts")));
    return json_pack("{s:s}", "attempts_left", n);
}

static bool well_formed_reply(json_t *body)
{
    return json_is_boolean(json_object_get(body, "verified")) &&
           json_is_string(json_object_get(body, "card_number")) &&
           json_is_integer(json_object_get(body, "remaining_attempts"));
}

static void on_verified(const registry_result *r, void *arg)
{
    handler_call *c = arg;
    switch (r->status) {
    case REGISTRY_OK:
        if (!well_formed_reply(r->body))
            handler_finish(c, "unavailable", NULL);
        else if (json_is_true(json_object_get(r->body, "verified")))
            handler_finish(c, "ok", ok_vars(c, r->body));
        else if (json_is_true(json_object_get(r->body, "locked")))
            handler_finish(c, "locked", NULL);
        else
            handler_finish(c, "wrong_pin", wrong_pin_vars(r->body));
        return;
    case REGISTRY_LOCKED:
        handler_finish(c, "locked", NULL);
        return;
    case REGISTRY_NOT_FOUND:
        handler_finish(c, "not_found", NULL);
        return;
    default:
        handler_finish(c, "unavailable", NULL);
        return;
    }
}

void verify_identity_run(handler_call *c)
{
    const char *id = handler_arg(c, "id");
    const char *pin = handler_arg(c, "pin");
    const handler_env *env = handler_env_of(c);
    if (!id || !pin || !env->registry) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    char key[HANDLER_CALL_KEY_MAX + 8];
    snprintf(key, sizeof key, "%s.pin", handler_call_key(c));
    registry_verify_pin(env->registry, id, pin, key, on_verified, c);
    handler_wipe_arg(c, "pin");
}
