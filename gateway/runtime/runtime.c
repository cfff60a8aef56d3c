/* runtime — builds the service core from a conf and swaps dialplan sets on
 * reload (see runtime.h). Owns the store, the registry client, the outbox
 * with its loss-report deliverer, the handler environment and the engine;
 * the engine owns the running dialplan set. */
#include "runtime.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

#include <stdlib.h>

#include "handlers.h"
#include "log.h"
#include "loss.h"

#define RUNTIME_DIGEST_KEY_MAX 256

struct runtime {
    store *store;          /* Redis sessions */
    registry *registry;    /* central card registry client */
    outbox *outbox;        /* durable work: loss reports, SMS */
    loss *loss;            /* the "loss_report" deliverer */
    handler_env env;       /* what handlers may use; outlives the engine */
    engine *engine;        /* runs the dialplans */
    runtime_send_now_fn *send_now;   /* one-time codes by SMS, or NULL */
    void *send_now_ctx;
    unsigned char digest_key[RUNTIME_DIGEST_KEY_MAX]; /* handler_env.digest_key */
    bool digest_key_random;          /* no digest_secret: the key is this process's own */
};

/* The configured digest secret, or a random key for this process alone
 * (then a code sent before a restart no longer matches after it). */
static bool digest_key_from(const conf *c, runtime *rt)
{
    const char *secret = c->workflows.digest_secret;
    char why[96];
    if (conf_section_problem(&handler_config, &c->workflows, why, sizeof why)) {
        log_error("runtime.config", "section=workflows problem=%s", log_quote(why).s);
        return false;
    }
    if (secret && *secret) {
        size_t n = strlen(secret);
        memcpy(rt->digest_key, secret, n);
        rt->env.digest_key_len = n;
    } else {
        if (RAND_bytes(rt->digest_key, 32) != 1)
            return false;
        rt->env.digest_key_len = 32;
        rt->digest_key_random = true;
    }
    rt->env.digest_key = rt->digest_key;
    return true;
}

/* SMS wording from the running set, for the loss confirmations and codes. */
static bool render_sms(void *ctx, const char *lang, const char *id, json_t *vars, char *out, size_t size)
{
    runtime *rt = ctx;
    dialplan *dp = rt->engine ? engine_dialplan(rt->engine) : NULL;
    return dp && dialplan_render_text(dp, lang, CHANNEL_SMS, id, vars, out, size);
}

static bool send_now(void *ctx, const char *to, const char *text)
{
    runtime *rt = ctx;
    return rt->send_now && rt->send_now(rt->send_now_ctx, to, text);
}

/* Dialplans -----------------------------------------------------------------*/

dialplan *runtime_load_dialplans(const char *dir, dp_errors *errs)
{
    return dialplan_load(dir, handlers_find, errs);
}

dialplan *runtime_load_dialplans_print(const char *dir, FILE *out)
{
    dp_errors errs;
    dialplan *dp = runtime_load_dialplans(dir, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(out, "%s\n", errs.lines[i]);
    if (dp == NULL && errs.count == 0)
        fprintf(out, "%s: the dialplans could not be loaded\n", dir);
    dp_errors_free(&errs);
    return dp;
}

/* Lifecycle -----------------------------------------------------------------*/

runtime *runtime_new(struct event_base *base, const conf *c, dialplan *dp)
{
    runtime *rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        return NULL;
    rt->store = store_new(base, &c->redis);
    rt->registry = registry_new(base, &c->registry);
    rt->outbox = rt->store ? outbox_new(base, rt->store, &c->outbox) : NULL;
    rt->loss = rt->outbox && rt->registry ? loss_new(base, rt->registry, rt->outbox, render_sms, rt) : NULL;
    if (rt->loss == NULL || !digest_key_from(c, rt)) {
        runtime_free(rt);
        return NULL;
    }
    rt->env.base = base;
    rt->env.registry = rt->registry;
    rt->env.store = rt->store;
    rt->env.loss = rt->loss;
    rt->env.render = render_sms;
    rt->env.send_now = send_now;
    rt->env.ctx = rt;
    rt->env.limits = c->workflows;
    rt->env.limits.handler_timeout_ms = c->session.handler_timeout_ms;
    rt->env.limits.digest_secret = NULL; /* kept as env.digest_key */
    engine_options eo = c->session;
    eo.store = rt->store;
    eo.handlers = &rt->env;
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
    loss_free(rt->loss);
    outbox_free(rt->outbox);
    if (rt->registry)
        registry_free(rt->registry);
    if (rt->store)
        store_free(rt->store);
    OPENSSL_cleanse(rt->digest_key, sizeof rt->digest_key);
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

outbox *runtime_outbox(const runtime *rt)
{
    return rt->outbox;
}

bool runtime_digest_key_random(const runtime *rt)
{
    return rt->digest_key_random;
}

void runtime_set_send_now(runtime *rt, runtime_send_now_fn *fn, void *ctx)
{
    rt->send_now = fn;
    rt->send_now_ctx = ctx;
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
