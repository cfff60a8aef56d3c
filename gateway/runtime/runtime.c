/* runtime — builds the service core from a conf and swaps dialplan sets on
 * reload (see runtime.h). Owns the store, the registry client, the handler
 * environment and the engine; the engine owns the running dialplan set. */
#include "runtime.h"

#include <stdlib.h>

#include "handlers.h"
#include "log.h"

struct runtime {
    store *store;          /* Redis sessions */
    registry *registry;    /* central card registry client */
    handler_env env;       /* what handlers may use; outlives the engine */
    engine *engine;        /* runs the dialplans */
};

/* Options from the configuration ---------------------------------------------*/

static void store_options_from(const conf *c, store_options *so)
{
    store_options_default(so);
    so->host = c->redis.host;
    so->port = c->redis.port;
    so->password = c->redis.password;
    so->db = c->redis.db;
    so->op_timeout_ms = c->redis.op_timeout_ms;
    so->reconnect_min_ms = c->redis.reconnect_min_ms;
    so->reconnect_max_ms = c->redis.reconnect_max_ms;
    so->ping_interval_ms = c->redis.ping_interval_ms;
    so->max_pending = c->redis.max_pending;
}

static void registry_options_from(const conf *c, registry_options *ro)
{
    registry_options_default(ro);
    ro->base_url = c->registry.url;
    ro->token = c->registry.token;
    ro->ca_file = c->registry.ca_file;
    ro->cert_file = c->registry.cert_file;
    ro->key_file = c->registry.key_file;
    ro->timeout_ms = c->registry.timeout_ms;
    ro->connect_timeout_ms = c->registry.connect_timeout_ms;
    ro->max_connections = c->registry.max_connections;
    ro->max_pending = c->registry.max_pending;
    ro->read_retries = c->registry.read_retries;
}

static void engine_options_from(const conf *c, store *s, const handler_env *env,
                                engine_options *eo)
{
    engine_options_default(eo);
    eo->store = s;
    eo->handlers = env;
    eo->session_ttl_s[CHANNEL_VOICE] = c->session.ttl_voice_s;
    eo->session_ttl_s[CHANNEL_USSD] = c->session.ttl_ussd_s;
    eo->session_ttl_s[CHANNEL_SMS] = c->session.ttl_sms_s;
    eo->max_steps_per_hop = c->session.max_steps_per_hop;
    eo->max_input_bytes = c->session.max_input_bytes;
    eo->max_events_kept = c->session.events_kept;
    eo->handler_timeout_ms = c->session.handler_timeout_ms;
}

/* Dialplans -----------------------------------------------------------------*/

dialplan *runtime_load_dialplans(const char *dir, dp_errors *errs)
{
    return dialplan_load(dir, handlers_find, errs);
}

/* Lifecycle -----------------------------------------------------------------*/

runtime *runtime_new(struct event_base *base, const conf *c, dialplan *dp)
{
    runtime *rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        return NULL;
    store_options so;
    registry_options ro;
    engine_options eo;
    store_options_from(c, &so);
    registry_options_from(c, &ro);
    rt->store = store_new(base, &so);
    rt->registry = registry_new(base, &ro);
    if (rt->store == NULL || rt->registry == NULL) {
        runtime_free(rt);
        return NULL;
    }
    rt->env = (handler_env){.base = base, .registry = rt->registry};
    engine_options_from(c, rt->store, &rt->env, &eo);
    rt->engine = engine_new(base, &eo, dp);
    if (rt->engine == NULL) {
        runtime_free(rt);
        return NULL;
    }
    return rt;
}

void runtime_free(runtime *rt)
{
    if (rt == NULL)
        return;
    if (rt->engine)
        engine_free(rt->engine);
    if (rt->registry)
        registry_free(rt->registry);
    if (rt->store)
        store_free(rt->store);
    free(rt);
}

/* Access --------------------------------------------------------------------*/

store *runtime_store(const runtime *rt)
{
    return rt->store;
}

registry *runtime_registry(const runtime *rt)
{
    return rt->registry;
}

engine *runtime_engine(const runtime *rt)
{
    return rt->engine;
}

/* Live reload ---------------------------------------------------------------*/

int runtime_reload_dialplans(runtime *rt, const char *dir)
{
    dp_errors errs;
    dialplan *next = runtime_load_dialplans(dir, &errs);
    if (next == NULL) {
        for (size_t i = 0; i < errs.count; i++)
            log_error("dialplan.reload_failed", "error=%s", log_quote(errs.lines[i]).s);
        if (errs.count == 0)
            log_error("dialplan.reload_failed", "dir=%s", log_quote(dir).s);
        dp_errors_free(&errs);
        return -1;
    }
    dp_errors_free(&errs);
    engine_set_dialplan(rt->engine, next);
    log_info("dialplan.reloaded", "version=%s dir=%s", dialplan_version(next), log_quote(dir).s);
    dialplan_unref(next);
    return 0;
}
