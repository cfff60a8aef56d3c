/* session — builds and reads the session document. Everything a hop needs
 * to continue a conversation is here; nothing here may hold a secret. */
#include "session.h"

#include <string.h>

#include "dialplan.h"
#include "walltime.h"

static const char *pick_lang(const struct dialplan *dp, const char *lang)
{
    if (lang && dialplan_has_language(dp, lang))
        return lang;
    return dialplan_language(dp, 0);
}

static void set_string(json_t *obj, const char *key, const char *value)
{
    json_object_set_new_nocheck(obj, key, json_string(value));
}

/* Built member by member: json_pack's format parsing was a third of the
 * cost of a new session, which every USSD dial pays. Keys are literals
 * (UTF-8 by construction, hence _nocheck); values are checked as usual. */
json_t *engine_session_new(const struct dialplan *dp, const char *id, channel_kind ch,
                    const char *caller, const char *entry, const char *lang)
{
    json_int_t now = (json_int_t)walltime_ms();
    const char *chan = channel_name(ch);
    json_t *vars = json_object();
    set_string(vars, "caller", caller ? caller : "");
    set_string(vars, "channel", chan);
    set_string(vars, "lang", pick_lang(dp, lang));
    set_string(vars, "session", id);
    set_string(vars, "node", "");
    json_t *doc = json_object();
    json_object_set_new_nocheck(doc, "v", json_integer(SESSION_FORMAT));
    set_string(doc, "id", id);
    set_string(doc, "channel", chan);
    set_string(doc, "caller", caller ? caller : "");
    set_string(doc, "entry", entry ? entry : "");
    set_string(doc, "dialplan", dialplan_version(dp));
    set_string(doc, "flow", "");
    set_string(doc, "node", "");
    set_string(doc, "state", "wait");
    json_object_set_new_nocheck(doc, "vars", vars);
    json_object_set_new_nocheck(doc, "fails", json_object());
    json_object_set_new_nocheck(doc, "back", json_array());
    json_object_set_new_nocheck(doc, "last_hop", json_null());
    json_object_set_new_nocheck(doc, "created_at", json_integer(now));
    json_object_set_new_nocheck(doc, "updated_at", json_integer(now));
    return doc;
}

void engine_session_upgrade(json_t *doc)
{
    if (json_integer_value(json_object_get(doc, "v")) == SESSION_FORMAT)
        return;
    json_object_del(doc, "events");
    json_object_set_new(doc, "v", json_integer(SESSION_FORMAT));
}

const char *engine_session_str(json_t *doc, const char *key)
{
    const char *s = json_string_value(json_object_get(doc, key));
    return s ? s : "";
}

void engine_session_set_str(json_t *doc, const char *key, const char *value)
{
    json_object_set_new(doc, key, json_string(value));
}

bool engine_session_channel(json_t *doc, channel_kind *out)
{
    return channel_parse(engine_session_str(doc, "channel"), out) == 0;
}

json_t *engine_session_vars(json_t *doc)
{
    json_t *vars = json_object_get(doc, "vars");
    if (!json_is_object(vars)) {
        vars = json_object();
        json_object_set_new(doc, "vars", vars);
    }
    return vars;
}

const char *engine_session_var(json_t *doc, const char *name)
{
    return json_string_value(json_object_get(engine_session_vars(doc), name));
}

void engine_session_set_var(json_t *doc, const char *name, const char *value)
{
    json_object_set_new(engine_session_vars(doc), name, json_string(value));
}

const char *engine_session_lang(json_t *doc)
{
    const char *lang = engine_session_var(doc, "lang");
    return lang ? lang : "";
}

static json_t *member(json_t *doc, const char *key, json_t *(*make)(void), int (*is)(const json_t *))
{
    json_t *v = json_object_get(doc, key);
    if (!is(v)) {
        v = make();
        json_object_set_new(doc, key, v);
    }
    return v;
}

static int is_object(const json_t *v) { return json_is_object(v); }
static int is_array(const json_t *v) { return json_is_array(v); }

int engine_session_fail_count(json_t *doc, const char *kind)
{
    return (int)json_integer_value(json_object_get(json_object_get(doc, "fails"), kind));
}

void engine_session_set_fail_count(json_t *doc, const char *kind, int n)
{
    json_object_set_new(member(doc, "fails", json_object, is_object), kind, json_integer(n));
}

void engine_session_reset_fails(json_t *doc)
{
    json_object_clear(member(doc, "fails", json_object, is_object));
}

json_t *engine_session_back(json_t *doc)
{
    return member(doc, "back", json_array, is_array);
}

void engine_session_push_back(json_t *doc, const char *where)
{
    json_t *back = engine_session_back(doc);
    size_t n = json_array_size(back);
    if (n && strcmp(json_string_value(json_array_get(back, n - 1)), where) == 0)
        return;
    json_array_append_new(back, json_string(where));
    while (json_array_size(back) > SESSION_MAX_BACK)
        json_array_remove(back, 0);
}

json_t *engine_session_said(json_t *doc)
{
    json_t *said = json_object_get(doc, "said");
    return json_is_array(said) ? said : NULL;
}

void engine_session_set_said(json_t *doc, json_t *prompts)
{
    if (json_array_size(prompts))
        json_object_set_nocheck(doc, "said", prompts);
    else
        json_object_del(doc, "said");
}

void engine_session_set_last_hop(json_t *doc, const char *hop_key, json_t *output)
{
    json_t *last = json_object();
    json_object_set_new_nocheck(last, "key", hop_key ? json_string(hop_key) : json_null());
    json_object_set_nocheck(last, "output", output);
    json_object_set_new_nocheck(doc, "last_hop", last);
}

json_t *engine_session_replay(json_t *doc, const char *hop_key)
{
    json_t *last = json_object_get(doc, "last_hop");
    const char *key = json_string_value(json_object_get(last, "key"));
    if (!hop_key || !key || strcmp(key, hop_key) != 0)
        return NULL;
    return json_object_get(last, "output");
}
