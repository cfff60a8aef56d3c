/* registry_settings — the registry's own settings a dialplan words its
 * answers with (GET /v1/settings): the validity of a temporary loss report
 * and how long a card waits at the outlet. The registry applies them, so
 * the gateway keeps no copy that could disagree with it. */
#include <stdio.h>

#include "builtin.h"
#include "registry.h"

#define DAYS_MAX 3650   /* the contract's bound on a setting in days */
#define DAYS_TEXT 8     /* room for "3650" and more */

/* A count of days the contract allows as text, or false. */
static bool days_text(json_t *settings, const char *key, char out[DAYS_TEXT])
{
    json_t *v = json_object_get(settings, key);
    json_int_t days = json_is_integer(v) ? json_integer_value(v) : 0;
    if (days < 1 || days > DAYS_MAX)
        return false;
    snprintf(out, DAYS_TEXT, "%d", (int)days);
    return true;
}

static void on_settings(const registry_result *r, void *arg)
{
    handler_call *c = arg;
    char loss[DAYS_TEXT], collection[DAYS_TEXT];
    if (r->status != REGISTRY_OK || !days_text(r->body, "temporary_loss_days", loss) ||
        !days_text(r->body, "collection_days", collection))
        handler_finish(c, "unavailable", NULL);
    else
        handler_finish(c, "ok", json_pack("{s:s, s:s}", "temp_loss_days", loss, "collection_days", collection));
}

void handlers_registry_settings_run(handler_call *c)
{
    const handler_env *env = handler_env_of(c);
    if (!env->registry) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    registry_get_settings(env->registry, on_settings, c);
}
