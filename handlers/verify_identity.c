/* verify_identity — who is calling: a citizen ID and the service PIN of its
 * current card, checked in three steps, each only when the one before
 * passed (the two handlers without a PIN are at the end of the file):
 *
 *   1. the limit: one attempt is taken from the caller number's counter and
 *      one from the ID's (store_count_take, counted in Redis so every
 *      gateway shares them) BEFORE the registry is asked; past either limit
 *      the call ends `rate_limited` without asking. The attempt is also
 *      held in the ID's in-flight set until the registry has answered it;
 *   2. the person (GET persons): unknown → `not_found`; on SMS the sender
 *      must be the person's registered mobile, else `wrong_sender` (a text
 *      message is easy to send from anywhere; a PIN alone is not enough).
 *      The person carries the registry's own count of PIN attempts left:
 *      0 → `locked`; otherwise the PIN is sent only if every attempt in
 *      flight for this ID (this one included) could still be wrong without
 *      the card locking, else `last_attempt` (one attempt left) or
 *      `rate_limited` (racing attempts) — so the gateway never makes the
 *      guess that would lock the card, whatever its own window says and
 *      however many guesses arrive at once;
 *   3. the PIN (POST pin-verifications), mapped onto the results; a wrong
 *      PIN that leaves no try ends in `rate_limited` or `last_attempt`
 *      rather than `wrong_pin` (settle_wrong_pin).
 *
 * Taking first makes racing attempts see distinct counts: of 40 sent at
 * once only the limit's worth reach the registry. A registry without the
 * count (older than it) leaves step 1 alone to stop guesses; that holds
 * only while `identify_window_s` is at least the registry's own lock window
 * (docs/workflows.md). The PIN stays an argument of the call until the
 * registry client has built the request body and is wiped right then; a
 * call that ends before (rate_limited, wrong_sender, ...) has it wiped when
 * the call is freed (handlers.c). It is never logged, and never reaches
 * Redis. Redis unreachable means `unavailable`, never "no limit". */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "domain.h"
#include "log.h"
#include "mask.h"
#include "mem.h"
#include "registry.h"
#include "reply.h"
#include "store.h"

#define IDENTIFY_CALLER_PREFIX "cl:rl:c:"
#define IDENTIFY_ID_PREFIX "cl:rl:i:"
#define IDENTIFY_HELD_PREFIX "cl:rl:h:"
/* Room for a long SIP user name; a longer one shares its counter with the
 * names it has in common up to here, which only makes the limit stricter. */
#define IDENTIFY_KEY_MAX 160

/* Holds attempt ARGV[1] (the call's key) in the ID's in-flight set for
 * ARGV[2] ms and answers how many are held. Each member carries its own
 * expiry as its score, so one attempt whose fate never became known
 * (registry deadline) stops counting after the hold, however often others
 * come; the set itself lives as long as its newest member. */
static const char hold_script[] =
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "return redis.call('ZCARD', KEYS[1])\n";

/* Ends the hold of attempt ARGV[1] (KEYS[1]) and gives one unit back to
 * each further key; a counter given back to nothing is removed rather than
 * left at zero or below without a window. */
static const char settle_script[] =
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "for i = 2, #KEYS do\n"
    "  if redis.call('DECR', KEYS[i]) <= 0 then redis.call('DEL', KEYS[i]) end\n"
    "end\n"
    "return 1\n";

/* What an answered attempt does to what it took. */
typedef enum {
    KEEP_ALL,        /* the registry may have counted a wrong PIN: keep both units and the hold */
    KEEP_COUNTED,    /* a failure, answered: keep both units, end the hold */
    GIVE_BACK,       /* nothing counted against the card (or a success): give everything back */
    GIVE_BACK_ID     /* a person found for a caller not yet identified: keep the caller's unit */
} settlement;

/* Which question a call asks. */
typedef enum {
    ASK_PIN,         /* verify_identity: the ID and the service PIN */
    ASK_SENDER,      /* identify_sender: the ID and the SMS sender as its registered mobile */
    ASK_PERSON       /* find_person: is the ID known, and does it have a current card */
} identify_kind;

typedef struct {
    handler_call *call;
    identify_kind kind;                 /* what the call checks */
    char caller_key[IDENTIFY_KEY_MAX];  /* cl:rl:c:{caller} */
    char id_key[IDENTIFY_KEY_MAX];      /* cl:rl:i:{id} */
    char held_key[IDENTIFY_KEY_MAX];    /* cl:rl:h:{id}, the attempts in flight */
    long long by_caller;                /* the caller's count after this attempt's take */
    long long by_id;                    /* the ID's count after this attempt's take */
    long long in_flight;                /* attempts held for this ID, this one included */
    char *mobile;                       /* the person's registered mobile, "" if none */
    const char *result;                 /* the result being settled */
    json_t *result_vars;                /* its variables (owned) */
} identify;

/* Ending ------------------------------------------------------------------------*/

static void identify_end(identify *v, const char *result, json_t *vars)
{
    handler_finish(v->call, result, vars);
    json_decref(v->result_vars);
    free(v->mobile);
    free(v);
}

/* The answer waits for its settlement, so what Redis holds is final when the
 * caller hears it. A settlement Redis failed to make changes no answer: the
 * failure was counted when its attempt was taken, a unit not given back
 * lapses with its window and a hold not ended with its hold. */
static void on_settled(store_status st, const struct redisReply *reply, void *arg)
{
    identify *v = arg;
    if (st != STORE_OK || reply->type == REDIS_REPLY_ERROR)
        log_warn("identify.settle_failed", "status=%s", store_status_name(st));
    json_t *vars = v->result_vars;
    v->result_vars = NULL;
    identify_end(v, v->result, vars);
}

static void identify_settle(identify *v, settlement how, const char *result, json_t *vars)
{
    if (how == KEEP_ALL) {
        identify_end(v, result, vars);
        return;
    }
    v->result = result;
    v->result_vars = vars;
    const char *token = handler_call_key(v->call);
    const char *give_back[] = {"EVAL", settle_script, "3", v->held_key, v->caller_key, v->id_key, token};
    const char *give_back_id[] = {"EVAL", settle_script, "2", v->held_key, v->id_key, token};
    const char *end_hold[] = {"EVAL", settle_script, "1", v->held_key, token};
    store *s = handler_env_of(v->call)->store;
    if (how == GIVE_BACK)
        store_command(s, 7, give_back, NULL, on_settled, v);
    else if (how == GIVE_BACK_ID)
        store_command(s, 6, give_back_id, NULL, on_settled, v);
    else
        store_command(s, 5, end_hold, NULL, on_settled, v);
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

/* What a wrong PIN leaves the caller: the tries this gateway will still
 * send, the fewest of what our own limits allow and the registry's count
 * less the attempt it never spends. None left ends the identification
 * here rather than asking for a PIN that would only be refused; when the
 * registry's count is what ran out, waiting will not bring tries back, so
 * the caller hears `last_attempt`, not `rate_limited`. */
static void settle_wrong_pin(identify *v, json_t *body)
{
    const handler_limits *l = &handler_env_of(v->call)->limits;
    long long left = l->identify_max_per_id - v->by_id;
    if (l->identify_max_per_caller - v->by_caller < left)
        left = l->identify_max_per_caller - v->by_caller;
    int remaining = registry_pin_remaining(body);
    bool registry_spent = remaining >= 0 && remaining - 1 <= left;
    if (registry_spent)
        left = remaining - 1;
    if (left <= 0) {
        identify_settle(v, KEEP_COUNTED, registry_spent ? "last_attempt" : "rate_limited", NULL);
        return;
    }
    char n[24];
    snprintf(n, sizeof n, "%lld", left);
    identify_settle(v, KEEP_COUNTED, "wrong_pin", json_pack("{s:s}", "attempts_left", n));
}

static bool well_formed_reply(json_t *body)
{
    return json_is_boolean(json_object_get(body, "verified")) &&
           json_is_string(json_object_get(body, "card_number")) &&
           registry_pin_remaining(body) != REGISTRY_COUNT_BAD;
}

/* A success gives its units back: the counters count failures, and each
 * task asks for the PIN again, so a person who does five things in one call
 * is not stopped for it. It resets nothing either: resetting would let
 * anyone who knows one valid ID and PIN (their own) wipe the slate after
 * every few guesses and enumerate other IDs from the same number at will.
 * `locked` is counted like wrong_pin: a locked card answered uncounted
 * would tell an enumerator for free that the ID exists. An answer that
 * never came may still have been counted by the registry: its units and
 * its hold stay. */
static void on_verified(const registry_result *r, void *arg)
{
    identify *v = arg;
    switch (r->status) {
    case REGISTRY_OK:
        if (!well_formed_reply(r->body))
            identify_settle(v, KEEP_ALL, "unavailable", NULL);
        else if (json_is_true(json_object_get(r->body, "verified")))
            identify_settle(v, GIVE_BACK, "ok", ok_vars(v, r->body));
        else if (json_is_true(json_object_get(r->body, "locked")))
            identify_settle(v, KEEP_COUNTED, "locked", NULL);
        else
            settle_wrong_pin(v, r->body);
        return;
    case REGISTRY_LOCKED:
        identify_settle(v, KEEP_COUNTED, "locked", NULL);
        return;
    case REGISTRY_NOT_FOUND:   /* the person has no current card */
        identify_settle(v, KEEP_COUNTED, "not_found", NULL);
        return;
    default:
        identify_settle(v, KEEP_ALL, "unavailable", NULL);
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

/* Whether the registry's count lets this attempt be sent: every attempt in
 * flight for the ID may turn out wrong, and the last of them must still
 * leave one, since the wrong PIN that takes the last attempt locks the card.
 * Counting every held attempt, not only those held before the count was
 * read, is what makes racing attempts safe: of two, the later held sees the
 * earlier one. */
static bool registry_allows(const identify *v, int remaining)
{
    return remaining == REGISTRY_COUNT_ABSENT || v->in_flight <= remaining - 1;
}

static void on_person(const registry_result *r, void *arg)
{
    identify *v = arg;
    handler_call *c = v->call;
    if (r->status == REGISTRY_NOT_FOUND) {
        identify_settle(v, KEEP_COUNTED, "not_found", NULL);
        return;
    }
    int remaining = r->status == REGISTRY_OK ? registry_pin_remaining(r->body) : REGISTRY_COUNT_BAD;
    if (remaining == REGISTRY_COUNT_BAD) {
        identify_settle(v, GIVE_BACK, "unavailable", NULL);
        return;
    }
    const char *mobile = json_string_value(json_object_get(r->body, "mobile"));
    v->mobile = mem_strdup(mobile ? mobile : "");
    if (handler_channel(c) == CHANNEL_SMS && !same_number(handler_caller(c), v->mobile)) {
        log_info("identify.wrong_sender", "caller=%s id=%s", mask_phone(handler_caller(c)).s,
                 mask_id(handler_arg(c, "id")).s);
        identify_settle(v, KEEP_COUNTED, "wrong_sender", NULL);
        return;
    }
    if (remaining == 0) {
        identify_settle(v, KEEP_COUNTED, "locked", NULL);
        return;
    }
    if (!registry_allows(v, remaining)) {
        log_info("identify.rate_limited", "by=registry attempts_left=%d in_flight=%lld caller=%s id=%s",
                 remaining, v->in_flight, mask_phone(handler_caller(c)).s,
                 mask_id(handler_arg(c, "id")).s);
        identify_settle(v, KEEP_COUNTED, remaining <= 1 ? "last_attempt" : "rate_limited", NULL);
        return;
    }
    verify_pin(v);
}

static void lookup_person(identify *v);

/* Step 1: the limit -----------------------------------------------------------------*/

static void limit_unavailable(identify *v, store_status st)
{
    log_warn("identify.limit_unavailable", "status=%s", store_status_name(st));
    identify_end(v, "unavailable", NULL);
}

static void rate_limited(identify *v, const char *by)
{
    handler_call *c = v->call;
    log_info("identify.rate_limited", "by=%s caller=%s id=%s", by, mask_phone(handler_caller(c)).s,
             mask_id(handler_arg(c, "id")).s);
    identify_end(v, "rate_limited", NULL);
}

static void on_held(store_status st, const struct redisReply *reply, void *arg)
{
    identify *v = arg;
    if (st != STORE_OK || reply->type != REDIS_REPLY_INTEGER) {
        limit_unavailable(v, st == STORE_OK ? STORE_BAD_DATA : st);
        return;
    }
    v->in_flight = reply->integer;
    registry_get_person(handler_env_of(v->call)->registry, handler_arg(v->call, "id"), on_person, v);
}

static void on_id_taken(store_status st, long long count, void *arg)
{
    identify *v = arg;
    const handler_env *env = handler_env_of(v->call);
    if (st != STORE_OK) {
        limit_unavailable(v, st);
        return;
    }
    if (count > env->limits.identify_max_per_id) {
        rate_limited(v, "id");
        return;
    }
    v->by_id = count;
    if (v->kind != ASK_PIN) {
        lookup_person(v);
        return;
    }
    char hold_ms[24];
    snprintf(hold_ms, sizeof hold_ms, "%lld", env->limits.identify_window_s * 1000LL);
    const char *argv[] = {"EVAL", hold_script, "1", v->held_key, handler_call_key(v->call), hold_ms};
    store_command(env->store, 6, argv, NULL, on_held, v);
}

static void on_caller_taken(store_status st, long long count, void *arg)
{
    identify *v = arg;
    const handler_env *env = handler_env_of(v->call);
    if (st != STORE_OK) {
        limit_unavailable(v, st);
        return;
    }
    if (count > env->limits.identify_max_per_caller) {
        rate_limited(v, "caller");
        return;
    }
    v->by_caller = count;
    store_count_take(env->store, v->id_key, env->limits.identify_window_s, on_id_taken, v);
}

/* The counters' keys. The same number written two ways (13800000001,
 * +8613800000001) is one caller; a caller that is not a phone number (a SIP
 * user) counts under its name as given, and callers without any name share
 * one counter rather than escaping the limit. */
static void counter_keys(identify *v, const char *caller, const char *id)
{
    char e164[DOMAIN_PHONE_MAX], nid[DOMAIN_ID_LEN + 1];
    const char *key_id = domain_id_normalize(id, nid) ? nid : id;
    snprintf(v->caller_key, sizeof v->caller_key, IDENTIFY_CALLER_PREFIX "%s",
             domain_phone_normalize(caller, true, e164) ? e164 : caller);
    snprintf(v->id_key, sizeof v->id_key, IDENTIFY_ID_PREFIX "%s", key_id);
    snprintf(v->held_key, sizeof v->held_key, IDENTIFY_HELD_PREFIX "%s", key_id);
}

static bool limits_set(const handler_limits *l)
{
    return l->identify_window_s > 0 && l->identify_max_per_caller > 0 && l->identify_max_per_id > 0;
}

/* Takes the caller's and the ID's units, then asks what `kind` asks. */
static void identify_start(handler_call *c, identify_kind kind)
{
    identify *v = mem_calloc(1, sizeof *v);
    v->call = c;
    v->kind = kind;
    const handler_env *env = handler_env_of(c);
    counter_keys(v, handler_caller(c), handler_arg(c, "id"));
    store_count_take(env->store, v->caller_key, env->limits.identify_window_s, on_caller_taken, v);
}

/* What every identification needs before it starts; false when the call
 * was ended `unavailable`. */
static bool identify_ready(handler_call *c)
{
    const handler_env *env = handler_env_of(c);
    /* The call's key names its attempt in the in-flight set: without one,
     * attempts could not be told apart. */
    if (!handler_arg(c, "id") || !env->registry || !env->store || !handler_call_key(c)[0]) {
        handler_finish(c, "unavailable", NULL);
        return false;
    }
    /* No limits configured is a broken configuration, not "no limit". */
    if (!limits_set(&env->limits)) {
        log_error("identify.no_limits", "window_s=%d per_caller=%d per_id=%d",
                  env->limits.identify_window_s, env->limits.identify_max_per_caller,
                  env->limits.identify_max_per_id);
        handler_finish(c, "unavailable", NULL);
        return false;
    }
    return true;
}

void handlers_verify_identity_run(handler_call *c)
{
    if (!handler_arg(c, "pin")) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    if (identify_ready(c))
        identify_start(c, ASK_PIN);
}

/* Without a PIN ---------------------------------------------------------------------
 *
 * identify_sender: on SMS, the ID and the sender: a text from the person's
 * registered mobile is the person (docs/workflows.md, "SMS identification"),
 * since the answer goes back to that mobile whoever typed the sender; a
 * state change is then confirmed by a one-time code sent to the same
 * mobile (contact.c), which a spoofed sender never sees. `ok` sets what
 * verify_identity's `ok` sets but `pin_initial`; `no_card` (the person has
 * no current card: an applicant) sets `verified_id` and `mobile`.
 *
 * find_person: whether an ID is known and has a current card, before any
 * secret is asked, so a first-time applicant (no card, hence no PIN) is
 * offered a one-time code instead. It sets nothing. A miss is a failed
 * identification; a hit tells an unidentified caller that the ID exists,
 * so it keeps the caller's unit (a number can ask only
 * identify_max_per_caller times per window) and gives back the ID's: the
 * identification that follows (PIN or code) is counted on its own.
 *
 * Both take their units like verify_identity, ask GET persons, then GET
 * cards (the current card is listed first; a registry without `pin` in
 * the person could not tell "no card" otherwise). */

static void on_lookup_cards(const registry_result *r, void *arg)
{
    identify *v = arg;
    bool listed = r->status == REGISTRY_OK && json_is_array(json_object_get(r->body, "cards"));
    if (!listed && r->status != REGISTRY_NOT_FOUND) {
        identify_settle(v, GIVE_BACK, "unavailable", NULL);
        return;
    }
    json_t *card = listed ? handler_reply_current_card(r->body) : NULL;
    const char *number = json_string_value(json_object_get(card, "card_number"));
    if (card && !number) {
        identify_settle(v, GIVE_BACK, "unavailable", NULL);
        return;
    }
    if (v->kind == ASK_PERSON) {
        identify_settle(v, GIVE_BACK_ID, card ? "card" : "no_card", NULL);
        return;
    }
    const char *id = handler_arg(v->call, "id");
    json_t *vars = card ? json_pack("{s:s, s:s, s:s}", "verified_id", id, "card", number, "mobile", v->mobile)
                        : json_pack("{s:s, s:s}", "verified_id", id, "mobile", v->mobile);
    identify_settle(v, GIVE_BACK, card ? "ok" : "no_card", vars);
}

static void on_lookup_person(const registry_result *r, void *arg)
{
    identify *v = arg;
    handler_call *c = v->call;
    if (r->status == REGISTRY_NOT_FOUND) {
        identify_settle(v, KEEP_COUNTED, "not_found", NULL);
        return;
    }
    if (r->status != REGISTRY_OK) {
        identify_settle(v, GIVE_BACK, "unavailable", NULL);
        return;
    }
    const char *mobile = json_string_value(json_object_get(r->body, "mobile"));
    v->mobile = mem_strdup(mobile ? mobile : "");
    if (v->kind == ASK_SENDER && !same_number(handler_caller(c), v->mobile)) {
        log_info("identify.wrong_sender", "caller=%s id=%s", mask_phone(handler_caller(c)).s,
                 mask_id(handler_arg(c, "id")).s);
        identify_settle(v, KEEP_COUNTED, "wrong_sender", NULL);
        return;
    }
    registry_list_cards(handler_env_of(c)->registry, handler_arg(c, "id"), 0, NULL, on_lookup_cards, v);
}

static void lookup_person(identify *v)
{
    registry_get_person(handler_env_of(v->call)->registry, handler_arg(v->call, "id"), on_lookup_person, v);
}

void handlers_identify_sender_run(handler_call *c)
{
    /* Only an SMS sender is an address the network vouches for here. */
    if (handler_channel(c) != CHANNEL_SMS) {
        log_error("identify.sender_off_sms", "channel=%s", channel_name(handler_channel(c)));
        handler_finish(c, "unavailable", NULL);
        return;
    }
    if (identify_ready(c))
        identify_start(c, ASK_SENDER);
}

void handlers_find_person_run(handler_call *c)
{
    if (identify_ready(c))
        identify_start(c, ASK_PERSON);
}
