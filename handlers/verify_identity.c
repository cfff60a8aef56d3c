/* verify_identity — who is calling: a citizen ID and the service PIN of its
 * current card, checked in three steps, each only when the one before
 * passed:
 *
 *   1. the enumeration limit: failed identifications per caller number and
 *      per ID, counted in Redis so every gateway instance shares them; at
 *      either limit the call ends `rate_limited` without asking the registry;
 *   2. the person (GET persons): unknown → `not_found`; on SMS the sender
 *      must be the person's registered mobile, else `wrong_sender` (a text
 *      message is easy to send from anywhere; a PIN alone is not enough);
 *   3. the PIN (POST pin-verifications), mapped onto the results.
 *
 * A failure is answered only once it is counted, so not even an outage of
 * Redis lets a caller try more often than the limit allows. The PIN stays an
 * argument of the call until the registry client has built the request body
 * and is wiped right then; a call that ends before (rate_limited,
 * wrong_sender, ...) has it wiped when the call is freed (handlers.c). It is
 * never logged, and never reaches Redis. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "domain.h"
#include "handler_call.h"
#include "log.h"
#include "mask.h"
#include "registry.h"
#include "store.h"

#define IDENTIFY_CALLER_PREFIX "cl:rl:c:"
#define IDENTIFY_ID_PREFIX "cl:rl:i:"
/* Room for a long SIP user name; a longer one shares its counter with the
 * names it has in common up to here, which only makes the limit stricter. */
#define IDENTIFY_KEY_MAX 160

/* Counts one failure against both keys, each counter living the window from
 * its first failure. A counter found without a TTL (restored, PERSISTed) gets
 * one back: a counter that never expired would block its number for good. */
static const char count_script[] =
    "for _, key in ipairs(KEYS) do\n"
    "  if redis.call('INCR', key) == 1 or redis.call('TTL', key) < 0 then\n"
    "    redis.call('EXPIRE', key, ARGV[1])\n"
    "  end\n"
    "end\n"
    "return 1\n";

typedef struct {
    handler_call *call;
    char caller_key[IDENTIFY_KEY_MAX];  /* cl:rl:c:{caller} */
    char id_key[IDENTIFY_KEY_MAX];      /* cl:rl:i:{id} */
    char *mobile;                       /* the person's registered mobile, "" if none */
    const char *failure;                /* the failed result being counted */
    json_t *failure_vars;               /* its variables (owned) */
} identify;

/* Ending ------------------------------------------------------------------------*/

static void identify_end(identify *v, const char *result, json_t *vars)
{
    handler_finish(v->call, result, vars);
    json_decref(v->failure_vars);
    free(v->mobile);
    free(v);
}

static void on_failure_counted(store_status st, const struct redisReply *reply, void *arg)
{
    identify *v = arg;
    if (st != STORE_OK || reply->type == REDIS_REPLY_ERROR) {
        log_warn("identify.count_failed", "status=%s", store_status_name(st));
        identify_end(v, "unavailable", NULL);
        return;
    }
    json_t *vars = v->failure_vars;
    v->failure_vars = NULL;
    identify_end(v, v->failure, vars);
}

/* Counts a failed identification (per caller and per ID), then answers it. */
static void identify_fail(identify *v, const char *result, json_t *vars)
{
    const handler_env *env = handler_env_of(v->call);
    char window[16];
    snprintf(window, sizeof window, "%d", env->limits.identify_window_s);
    v->failure = result;
    v->failure_vars = vars;
    const char *argv[] = {"EVAL", count_script, "2", v->caller_key, v->id_key, window};
    store_command(env->store, 6, argv, NULL, on_failure_counted, v);
}

/* Step 3: the PIN -----------------------------------------------------------------*/

static json_t *ok_vars(const identify *v, json_t *body)
{
    json_t *initial = json_object_get(body, "initial_pin");
    return json_pack("{s:s, s:s, s:s, s:s}",
                     "verified_id", handler_arg(v->call, "id"),
                     "card", json_string_value(json_object_get(body, "card_number")),
                     "pin_initial", json_is_true(initial) ? "yes" : "no",
                     "mobile", v->mobile);
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

/* A success leaves the counters as they are. Resetting them would let
 * anyone who knows one valid ID and PIN (their own) wipe the slate after
 * every few guesses and enumerate other IDs from the same number at will;
 * a real person who failed a few times and then succeeded loses nothing,
 * the counters lapse with the window. `locked` is counted like wrong_pin:
 * the registry says it for the sixth wrong PIN in a row as well, and a
 * locked card answered uncounted would tell an enumerator for free that the
 * ID exists. */
static void on_verified(const registry_result *r, void *arg)
{
    identify *v = arg;
    switch (r->status) {
    case REGISTRY_OK:
        if (!well_formed_reply(r->body))
            identify_end(v, "unavailable", NULL);
        else if (json_is_true(json_object_get(r->body, "verified")))
            identify_end(v, "ok", ok_vars(v, r->body));
        else if (json_is_true(json_object_get(r->body, "locked")))
            identify_fail(v, "locked", NULL);
        else
            identify_fail(v, "wrong_pin", wrong_pin_vars(r->body));
        return;
    case REGISTRY_LOCKED:
        identify_fail(v, "locked", NULL);
        return;
    case REGISTRY_NOT_FOUND:   /* the person has no current card */
        identify_fail(v, "not_found", NULL);
        return;
    default:
        identify_end(v, "unavailable", NULL);
        return;
    }
}

static void verify_pin(identify *v)
{
    handler_call *c = v->call;
    char key[HANDLER_CALL_KEY_MAX + 8];
    snprintf(key, sizeof key, "%s.pin", handler_call_key(c));
    registry_verify_pin(handler_env_of(c)->registry, handler_arg(c, "id"), handler_arg(c, "pin"),
                        key, on_verified, v);
    handler_wipe_arg(c, "pin");
}

/* Step 2: the person ---------------------------------------------------------------*/

/* Both numbers in E.164; one that is not a phone number matches nothing. */
static bool same_number(const char *a, const char *b)
{
    char ea[DOMAIN_PHONE_MAX], eb[DOMAIN_PHONE_MAX];
    return domain_phone_normalize(a, true, ea) && domain_phone_normalize(b, true, eb) && strcmp(ea, eb) == 0;
}

static void on_person(const registry_result *r, void *arg)
{
    identify *v = arg;
    handler_call *c = v->call;
    if (r->status == REGISTRY_NOT_FOUND) {
        identify_fail(v, "not_found", NULL);
        return;
    }
    if (r->status != REGISTRY_OK) {
        identify_end(v, "unavailable", NULL);
        return;
    }
    const char *mobile = json_string_value(json_object_get(r->body, "mobile"));
    v->mobile = strdup(mobile ? mobile : "");
    if (!v->mobile)
        abort();
    if (handler_channel(c) == CHANNEL_SMS && !same_number(handler_caller(c), v->mobile)) {
        log_info("identify.wrong_sender", "caller=%s id=%s", mask_phone(handler_caller(c)).s,
                 mask_id(handler_arg(c, "id")).s);
        identify_fail(v, "wrong_sender", NULL);
        return;
    }
    verify_pin(v);
}

/* Step 1: the limit -----------------------------------------------------------------*/

/* A counter's value: nil (no failure in the window) is 0; -1 when the
 * reply is not a counter at all. */
static long long counter_value(const struct redisReply *r)
{
    if (r->type == REDIS_REPLY_NIL)
        return 0;
    if (r->type != REDIS_REPLY_STRING)
        return -1;
    char *end;
    long long n = strtoll(r->str, &end, 10);
    return end != r->str && *end == '\0' && n >= 0 ? n : -1;
}

static void on_counters(store_status st, const struct redisReply *reply, void *arg)
{
    identify *v = arg;
    handler_call *c = v->call;
    const handler_env *env = handler_env_of(c);
    long long by_caller = -1, by_id = -1;
    if (st == STORE_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        by_caller = counter_value(reply->element[0]);
        by_id = counter_value(reply->element[1]);
    }
    if (by_caller < 0 || by_id < 0) {
        log_warn("identify.limit_unavailable", "status=%s", store_status_name(st));
        identify_end(v, "unavailable", NULL);
        return;
    }
    if (by_caller >= env->limits.identify_max_per_caller || by_id >= env->limits.identify_max_per_id) {
        log_info("identify.rate_limited", "by=%s caller=%s id=%s",
                 by_caller >= env->limits.identify_max_per_caller ? "caller" : "id",
                 mask_phone(handler_caller(c)).s, mask_id(handler_arg(c, "id")).s);
        identify_end(v, "rate_limited", NULL);
        return;
    }
    registry_get_person(env->registry, handler_arg(c, "id"), on_person, v);
}

/* The counters' keys. The same number written two ways (13800000001,
 * +8613800000001) is one caller; a caller that is not a phone number (a SIP
 * user) counts under its name as given, and callers without any name share
 * one counter rather than escaping the limit. */
static void counter_keys(identify *v, const char *caller, const char *id)
{
    char e164[DOMAIN_PHONE_MAX], nid[DOMAIN_ID_LEN + 1];
    snprintf(v->caller_key, sizeof v->caller_key, IDENTIFY_CALLER_PREFIX "%s",
             domain_phone_normalize(caller, true, e164) ? e164 : caller);
    snprintf(v->id_key, sizeof v->id_key, IDENTIFY_ID_PREFIX "%s",
             domain_id_normalize(id, nid) ? nid : id);
}

static bool limits_set(const handler_limits *l)
{
    return l->identify_window_s > 0 && l->identify_max_per_caller > 0 && l->identify_max_per_id > 0;
}

void verify_identity_run(handler_call *c)
{
    const char *id = handler_arg(c, "id");
    const handler_env *env = handler_env_of(c);
    if (!id || !handler_arg(c, "pin") || !env->registry || !env->store) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    /* No limits configured is a broken configuration, not "no limit". */
    if (!limits_set(&env->limits)) {
        log_error("identify.no_limits", "window_s=%d per_caller=%d per_id=%d",
                  env->limits.identify_window_s, env->limits.identify_max_per_caller,
                  env->limits.identify_max_per_id);
        handler_finish(c, "unavailable", NULL);
        return;
    }
    identify *v = calloc(1, sizeof *v);
    if (!v)
        abort();
    v->call = c;
    counter_keys(v, handler_caller(c), id);
    const char *argv[] = {"MGET", v->caller_key, v->id_key};
    store_command(env->store, 3, argv, NULL, on_counters, v);
}
