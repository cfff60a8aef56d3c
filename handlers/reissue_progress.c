/* reissue_progress — the stage of the caller's newest card application
 * (GET applications, newest first, one item is enough). The call ends with
 * the stage's name as its result, like card_status with the card status, so
 * a dialplan words each stage in its own node. Every result of a stage sets
 * all of its variables, "" where the registry has nothing yet (no card
 * number before the maker assigns one, no outlet before `at_outlet`, no
 * collection date but at `at_outlet`). Outlet names, address and hours are
 * in the session's language; the application's type is worded by the
 * dialplan set's prompt `application_TYPE` (a prompt cannot pick its words
 * by a variable's value, so the handler picks the prompt). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "builtin.h"
#include "registry.h"
#include "reply.h"

#define TYPE_PROMPT_MAX 64
#define TYPE_WORDS_MAX 256

static bool known_type(const char *type)
{
    static const char *const types[] = {"new", "reissue_after_loss", "replacement", "warranty_replacement", NULL};
    for (const char *const *t = types; *t; t++)
        if (strcmp(type, *t) == 0)
            return true;
    return false;
}

/* The application's type in the session's words, "" when the set has no
 * prompt for it (or the registry sent a type the contract does not name). */
static void type_words(handler_call *c, const char *type, char *out, size_t size)
{
    const handler_env *env = handler_env_of(c);
    const char *lang = handler_arg(c, "lang");
    char id[TYPE_PROMPT_MAX];
    out[0] = '\0';
    if (!known_type(type) || !lang || !env->render)
        return;
    snprintf(id, sizeof id, "application_%s", type);
    if (!env->render(env->ctx, lang, id, NULL, out, size))
        out[0] = '\0';
}

static json_t *progress_vars(handler_call *c, json_t *app)
{
    const char *lang = handler_arg(c, "lang");
    json_t *outlet = json_object_get(app, "outlet");
    char hours[REPLY_HOURS_MAX], type[TYPE_WORDS_MAX];
    handler_reply_hours(outlet, lang, hours, sizeof hours);
    type_words(c, handler_reply_text(app, "type"), type, sizeof type);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                     "app_type", type,
                     "stage_date", handler_reply_text(app, "stage_date"),
                     "collect_by", handler_reply_text(app, "collect_by"),
                     "new_card", handler_reply_text(app, "card_number"),
                     "outlet_name", handler_reply_name(outlet, "name", lang),
                     "outlet_address", handler_reply_name(outlet, "address", lang),
                     "outlet_hours", hours,
                     "outlet_phone", handler_reply_text(outlet, "phone"));
}

/* A stage outside the contract's list is a bad response, not a result. */
static bool is_stage_result(const char *stage)
{
    return strcmp(stage, "no_application") != 0 && strcmp(stage, "unavailable") != 0 &&
           handler_has_result(handlers_find("reissue_progress"), stage);
}

static void on_applications(const registry_result *r, void *arg)
{
    handler_call *c = arg;
    /* The ID was verified before; a person the registry does not know has
     * no application either. */
    if (r->status == REGISTRY_NOT_FOUND) {
        handler_finish(c, "no_application", NULL);
        return;
    }
    json_t *apps = json_object_get(r->body, "applications");
    if (r->status != REGISTRY_OK || !json_is_array(apps)) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    json_t *newest = json_array_get(apps, 0);
    const char *stage = json_string_value(json_object_get(newest, "stage"));
    if (json_array_size(apps) == 0)
        handler_finish(c, "no_application", NULL);
    else if (!json_is_object(newest) || !stage || !is_stage_result(stage))
        handler_finish(c, "unavailable", NULL);
    else
        handler_finish(c, stage, progress_vars(c, newest));
}

void handlers_reissue_progress_run(handler_call *c)
{
    const char *id = handler_arg(c, "id");
    const handler_env *env = handler_env_of(c);
    if (!id || !env->registry) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    registry_list_applications(env->registry, id, 1, NULL, on_applications, c);
}
