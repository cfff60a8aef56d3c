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

static void outbox_options_from(const conf *c, outbox_options *oo)
{
    outbox_options_default(oo);
    oo->consumer = c->outbox.consumer;
    oo->poll_interval_ms = c->outbox.poll_interval_ms;
    oo->batch = c->outbox.batch;
    oo->max_in_flight = c->outbox.max_in_flight;
    oo->lease_ms = c->outbox.lease_ms;
    oo->backoff_min_ms = c->outbox.backoff_min_ms;
    oo->backoff_max_ms = c->outbox.backoff_max_ms;
    oo->max_attempts = c->outbox.max_attempts;
    oo->max_age_s = c->outbox.max_age_s;
    oo->max_payload_bytes = c->outbox.max_payload_bytes;
    oo->dedupe_ttl_s = c->outbox.dedupe_ttl_s;
}

static handler_limits limits_from(const conf *c)
{
    return (handler_limits){
        .identify_window_s = c->workflows.identify_window_s,
        .identify_max_per_caller = c->workflows.identify_max_per_caller,
        .identify_max_per_id = c->workflows.identify_max_per_id,
        .code_ttl_s = c->workflows.code_ttl_s,
        .code_tries = c->workflows.code_tries,
        .code_sends = c->workflows.code_sends,
        .loss_confirm_wait_ms = c->workflows.loss_confirm_wait_ms,
        .handler_timeout_ms = c->session.handler_timeout_ms,
        .number_window_s = c->workflows.number_window_s,
        .codes_per_number = c->workflows.codes_per_number,
        .callbacks_per_number = c->workflows.callbacks_per_number,
    };
}

/* The configured digest secret, or a random key for this process alone
 * (then a code sent before a restart no longer matches after it). */
static bool digest_key_from(const conf *c, runtime *rt)
{
    const char *secret = c->workflows.digest_secret;
    if (secret && *secret) {
        size_t n = strlen(secret);
        if (n < 16 || n > RUNTIME_DIGEST_KEY_MAX) {
            log_error("runtime.config", "problem=%s",
                      log_quote("[workflows] digest_secret must be 16-256 bytes").s);
            return false;
        }
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
    outbox_options oo;
    outbox_options_from(c, &oo);
    rt->store = store_new(base, &so);
    rt->registry = registry_new(base, &ro);
    rt->outbox = rt->store ? outbox_new(base, rt->store, &oo) : NULL;
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
    rt->env.limits = limits_from(c);
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
