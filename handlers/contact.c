/* contact — one-time codes by SMS, and a change of the mobile number or
 * the address on record:
 *
 *   send_code       a six-digit one-time code by SMS, to a new number
 *                   (`mobile`) or to the mobile the registry has for an ID
 *                   (`id`: GET persons; the number never passes through
 *                   the dialplan, so a caller cannot choose it); Redis
 *                   keeps only its keyed digest (digest.h), the number,
 *                   the ID it was sent for and the tries left, under
 *                   cl:otp:{session}, and the session's sends under
 *                   cl:otp:n:{session}, and the number's under
 *                   cl:rl:code:{number} (counted first, store_count_take:
 *                   a number flooded with codes from many sessions is
 *                   stopped too);
 *   check_code      a code sent to a new number, as typed back, compared
 *                   digest to digest: `ok` sets the number (new_mobile);
 *   verify_code     a code sent to an ID's registered mobile: `ok` sets
 *                   verified_id, identifying a caller without a PIN (an
 *                   applicant who has no card yet) or confirming an SMS
 *                   sender's state change. The digests of the two kinds
 *                   differ (their purpose), so a code sent to a number the
 *                   caller typed never identifies anyone;
 *   update_contact  PATCH persons with what was confirmed.
 *
 * The code lives in this process only from its draw until the SMS is
 * handed to the route (send_now, outside the durable outbox), then its
 * buffers are wiped; the code typed back is a secret argument, wiped once
 * digested. Neither reaches a log, Redis or an error message. */
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "digest.h"
#include "domain.h"
#include "log.h"
#include "mask.h"
#include "mem.h"
#include "registry.h"
#include "store.h"

#define CODE_DIGITS 6
#define CODE_SPACE 1000000u
/* The largest multiple of CODE_SPACE a 32-bit draw can reach: draws at or
 * above it are redrawn, so every code is exactly as likely as any other. */
#define CODE_DRAW_LIMIT (UINT32_MAX - UINT32_MAX % CODE_SPACE)
#define CODE_KEY_PREFIX "cl:otp:"
#define SENDS_KEY_PREFIX "cl:otp:n:"
#define NUMBER_KEY_PREFIX "cl:rl:code:"
#define CODE_KEY_MAX (STORE_MAX_ID_LEN + 16)
#define CODE_SMS_MAX 1024   /* the rendered SMS, several parts at most */

typedef struct {
    char code[CODE_KEY_MAX];   /* cl:otp:{session} */
    char sends[CODE_KEY_MAX];  /* cl:otp:n:{session} */
} code_keys;

void handlers_code_key(const char *session_id, char *out, size_t size)
{
    snprintf(out, size, CODE_KEY_PREFIX "%s", session_id);
}

static void code_keys_of(const handler_call *c, code_keys *k)
{
    handlers_code_key(handler_session_id(c), k->code, sizeof k->code);
    snprintf(k->sends, sizeof k->sends, SENDS_KEY_PREFIX "%s", handler_session_id(c));
}

/* send_code ---------------------------------------------------------------------*/

/* What a code is for: the purpose of its digest. */
#define PURPOSE_NEW_NUMBER "code"      /* check_code: a number the caller typed */
#define PURPOSE_IDENTIFY "identify"    /* verify_code: an ID's registered mobile */

/* Counts the send and, within the session's allowance, replaces any earlier
 * code with the new one's digest, number, ID and tries, all expiring
 * together. The send counter's life restarts with every request, so a
 * session can ask again only after staying quiet for a whole code life.
 * Returns the sends so far, or 0 past the allowance (the earlier code, if
 * any, stays valid). KEYS: code hash, send counter. ARGV: digest, number,
 * tries, ttl, sends allowed, ID ("" for a new number). */
static const char store_code_script[] =
    "local sends = redis.call('INCR', KEYS[2])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "if sends > tonumber(ARGV[5]) then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'mobile', ARGV[2], 'tries', ARGV[3], 'id', ARGV[6])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "return sends\n";

typedef struct {
    handler_call *call;
    const char *id;                  /* the person whose registered mobile gets it, or NULL */
    char number[DOMAIN_PHONE_MAX];  /* where it goes, E.164 */
    char code[CODE_DIGITS + 1];      /* the secret: wiped before this is freed */
    char digest[HANDLER_DIGEST_HEX + 1]; /* its keyed digest, what Redis keeps */
} code_send;

static void code_send_end(code_send *s, const char *result)
{
    handler_finish(s->call, result, NULL);
    OPENSSL_cleanse(s->code, sizeof s->code);
    free(s);
}

/* Six uniformly drawn digits from the CSPRNG. */
static bool draw_code(char out[CODE_DIGITS + 1])
{
    uint32_t draw;
    do {
        if (RAND_bytes((unsigned char *)&draw, sizeof draw) != 1)
            return false;
    } while (draw >= CODE_DRAW_LIMIT);
    snprintf(out, CODE_DIGITS + 1, "%06u", (unsigned)(draw % CODE_SPACE));
    OPENSSL_cleanse(&draw, sizeof draw);
    return true;
}

/* jansson keeps its own copy of a string value: wipe it before it is freed. */
static void wipe_json_string(json_t *s)
{
    if (json_is_string(s))
        OPENSSL_cleanse((char *)json_string_value(s), json_string_length(s));
}

/* Renders the SMS with the code and hands it to the route; every copy of
 * the code made here is wiped before returning. */
static bool render_and_send(code_send *s)
{
    const handler_env *env = handler_env_of(s->call);
    char minutes[16], text[CODE_SMS_MAX];
    snprintf(minutes, sizeof minutes, "%d", (env->limits.code_ttl_s + 59) / 60);
    json_t *vars = json_pack("{s:s, s:s}", "code", s->code, "minutes", minutes);
    const char *lang = handler_arg(s->call, "lang");
    bool rendered = vars && env->render(env->ctx, lang, "sms_code", vars, text, sizeof text);
    wipe_json_string(json_object_get(vars, "code"));
    json_decref(vars);
    if (!rendered) {
        log_error("contact.no_sms_code_prompt", "lang=%s", log_quote(lang).s);
        OPENSSL_cleanse(text, sizeof text);
        return false;
    }
    bool sent = env->send_now(env->ctx, s->number, text);
    OPENSSL_cleanse(text, sizeof text);
    if (!sent)
        log_warn("contact.code_not_sent", "to=%s", mask_phone(s->number).s);
    return sent;
}

static void on_code_stored(store_status st, const struct redisReply *reply, void *arg)
{
    code_send *s = arg;
    if (st != STORE_OK || reply->type != REDIS_REPLY_INTEGER) {
        log_warn("contact.code_store_failed", "status=%s", store_status_name(st));
        code_send_end(s, "unavailable");
    } else if (reply->integer == 0) {
        log_info("contact.too_many_codes", "to=%s", mask_phone(s->number).s);
        code_send_end(s, "too_many");
    } else {
        code_send_end(s, render_and_send(s) ? "sent" : "unavailable");
    }
}

static bool code_limits_set(const handler_limits *l)
{
    return l->code_ttl_s > 0 && l->code_tries > 0 && l->code_sends > 0 && l->codes_per_number > 0 &&
           l->number_window_s > 0;
}

/* Stores the code within the session's allowance (store_code_script). */
static void store_code(code_send *s)
{
    const handler_env *env = handler_env_of(s->call);
    code_keys k;
    code_keys_of(s->call, &k);
    char tries[16], ttl[16], sends[16];
    snprintf(tries, sizeof tries, "%d", env->limits.code_tries);
    snprintf(ttl, sizeof ttl, "%d", env->limits.code_ttl_s);
    snprintf(sends, sizeof sends, "%d", env->limits.code_sends);
    const char *argv[] = {"EVAL", store_code_script, "2", k.code, k.sends,
                          s->digest, s->number, tries, ttl, sends, s->id ? s->id : ""};
    store_command(env->store, 11, argv, NULL, on_code_stored, s);
}

static void on_number_counted(store_status st, long long count, void *arg)
{
    code_send *s = arg;
    if (st != STORE_OK) {
        log_warn("contact.code_count_failed", "status=%s", store_status_name(st));
        code_send_end(s, "unavailable");
    } else if (count > handler_env_of(s->call)->limits.codes_per_number) {
        log_info("contact.too_many_codes_for_number", "to=%s count=%lld", mask_phone(s->number).s, count);
        code_send_end(s, "too_many");
    } else {
        store_code(s);
    }
}

static void count_number(code_send *s)
{
    char key[sizeof NUMBER_KEY_PREFIX + DOMAIN_PHONE_MAX];
    snprintf(key, sizeof key, NUMBER_KEY_PREFIX "%s", s->number);
    const handler_env *env = handler_env_of(s->call);
    store_count_take(env->store, key, env->limits.number_window_s, on_number_counted, s);
}

static void on_registered_mobile(const registry_result *r, void *arg)
{
    code_send *s = arg;
    const char *mobile = r->status == REGISTRY_OK ? json_string_value(json_object_get(r->body, "mobile")) : NULL;
    if (r->status == REGISTRY_OK && (!mobile || !domain_phone_normalize(mobile, true, s->number))) {
        log_info("contact.no_registered_mobile", "id=%s", mask_id(s->id).s);
        code_send_end(s, "no_mobile");
    } else if (r->status != REGISTRY_OK) {
        code_send_end(s, "unavailable");
    } else {
        count_number(s);
    }
}

void handlers_send_code_run(handler_call *c)
{
    const handler_env *env = handler_env_of(c);
    const char *mobile = handler_arg(c, "mobile"), *id = handler_arg(c, "id");
    /* A call node giving both or neither is a dialplan mistake: where the
     * code goes must never be a guess. */
    if (!mobile == !id) {
        log_error("contact.send_code_refused", "reason=%s", mobile ? "mobile_and_id" : "no_mobile_nor_id");
        handler_finish(c, "unavailable", NULL);
        return;
    }
    if (!env->store || !env->render || !env->send_now || !code_limits_set(&env->limits) ||
        (id && !env->registry)) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    code_send *s = mem_calloc(1, sizeof *s);
    s->call = c;
    s->id = id;
    const char *purpose = id ? PURPOSE_IDENTIFY : PURPOSE_NEW_NUMBER;
    if ((mobile && !domain_phone_normalize(mobile, true, s->number)) || !draw_code(s->code) ||
        !handler_digest(env, purpose, handler_session_id(c), s->code, s->digest)) {
        log_error("contact.send_code_refused", "reason=%s",
                  s->number[0] || id ? "no_code_or_digest" : "not_a_mobile");
        code_send_end(s, "unavailable");
        return;
    }
    if (id)
        registry_get_person(env->registry, id, on_registered_mobile, s);
    else
        count_number(s);
}

/* check_code --------------------------------------------------------------------*/

/* Takes one try of the session's code before any comparison, so racing
 * entries cannot get more tries than the code allows. Returns 0 when there
 * is no code, -1 when its tries are used up, else {digest, number, tries
 * left after this one, ID}. KEYS: code hash. */
static const char take_try_script[] =
    "local h = redis.call('HMGET', KEYS[1], 'digest', 'mobile', 'tries', 'id')\n"
    "if not h[1] then return 0 end\n"
    "if (tonumber(h[3]) or 0) <= 0 then return -1 end\n"
    "return {h[1], h[2] or '', redis.call('HINCRBY', KEYS[1], 'tries', -1), h[4] or ''}\n";

typedef struct {
    handler_call *call;
    bool identify;                         /* verify_code, not check_code */
    char key[CODE_KEY_MAX];                /* cl:otp:{session} */
    char digest[HANDLER_DIGEST_HEX + 1];   /* of the code as typed */
    const char *result;                    /* once the key is deleted */
    json_t *vars;                          /* its variables (owned) */
} code_check;

static void code_check_end(code_check *k, const char *result, json_t *vars)
{
    handler_finish(k->call, result, vars);
    json_decref(k->vars);
    free(k);
}

/* The code is spent either way: a failed delete leaves it with no tries,
 * or (after `ok`) with fewer, until it expires. */
static void on_code_deleted(store_status st, const struct redisReply *reply, void *arg)
{
    code_check *k = arg;
    if (st != STORE_OK || reply->type == REDIS_REPLY_ERROR)
        log_warn("contact.code_delete_failed", "status=%s", store_status_name(st));
    json_t *vars = k->vars;
    k->vars = NULL;
    code_check_end(k, k->result, vars);
}

static void delete_then_end(code_check *k, const char *result, json_t *vars)
{
    k->result = result;
    k->vars = vars;
    const char *argv[] = {"DEL", k->key};
    store_command(handler_env_of(k->call)->store, 2, argv, NULL, on_code_deleted, k);
}

static bool is_try_reply(const struct redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
           r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
           r->element[2]->type == REDIS_REPLY_INTEGER && r->element[3]->type == REDIS_REPLY_STRING;
}

/* What a right code proves: a new number, or the ID it was sent for. */
static json_t *code_ok_vars(const code_check *k, const struct redisReply *reply)
{
    if (!k->identify)
        return json_pack("{s:s}", "new_mobile", reply->element[1]->str);
    return json_pack("{s:s, s:s}", "verified_id", reply->element[3]->str, "mobile", reply->element[1]->str);
}

static void on_try_taken(store_status st, const struct redisReply *reply, void *arg)
{
    code_check *k = arg;
    if (st == STORE_OK && reply->type == REDIS_REPLY_INTEGER) {
        code_check_end(k, reply->integer == 0 ? "expired" : "too_many", NULL);
        return;
    }
    if (st != STORE_OK || !is_try_reply(reply)) {
        log_warn("contact.code_check_failed", "status=%s", store_status_name(st));
        code_check_end(k, "unavailable", NULL);
        return;
    }
    long long left = reply->element[2]->integer;
    /* A digest of the other purpose never matches; an ID is there exactly
     * when the code was sent for one, checked all the same. */
    bool right = handler_digest_equal(k->digest, reply->element[0]->str) &&
                 k->identify == (reply->element[3]->str[0] != '\0');
    if (right) {
        delete_then_end(k, "ok", code_ok_vars(k, reply));
    } else if (left > 0) {
        char n[24];
        snprintf(n, sizeof n, "%lld", left);
        code_check_end(k, "wrong", json_pack("{s:s}", "tries_left", n));
    } else {
        delete_then_end(k, "too_many", NULL);
    }
}

static void check_run(handler_call *c, bool identify)
{
    const handler_env *env = handler_env_of(c);
    const char *code = handler_arg(c, "code");
    code_check *k = mem_calloc(1, sizeof *k);
    k->call = c;
    k->identify = identify;
    const char *purpose = identify ? PURPOSE_IDENTIFY : PURPOSE_NEW_NUMBER;
    bool digested = code && env->store &&
                    handler_digest(env, purpose, handler_session_id(c), code, k->digest);
    handler_wipe_arg(c, "code");
    if (!digested) {
        code_check_end(k, "unavailable", NULL);
        return;
    }
    code_keys keys;
    code_keys_of(c, &keys);
    memcpy(k->key, keys.code, sizeof k->key);
    const char *argv[] = {"EVAL", take_try_script, "1", k->key};
    store_command(env->store, 4, argv, NULL, on_try_taken, k);
}

void handlers_check_code_run(handler_call *c)
{
    check_run(c, false);
}

void handlers_verify_code_run(handler_call *c)
{
    check_run(c, true);
}

/* update_contact ----------------------------------------------------------------*/

static void on_contact_updated(const registry_result *r, void *arg)
{
    handler_call *c = arg;
    if (r->status == REGISTRY_OK) {
        handler_finish(c, "ok", NULL);
    } else if (r->status == REGISTRY_REJECTED && (r->http_status == 400 || r->http_status == 422)) {
        log_info("contact.update_refused", "http=%ld code=%s", r->http_status,
                 log_quote(r->error_code ? r->error_code : "").s);
        handler_finish(c, "invalid", NULL);
    } else {
        handler_finish(c, "unavailable", NULL);
    }
}

static const char *non_empty(const char *s)
{
    return s && s[0] ? s : NULL;
}

void handlers_update_contact_run(handler_call *c)
{
    const handler_env *env = handler_env_of(c);
    const char *id = handler_arg(c, "id");
    const char *mobile = non_empty(handler_arg(c, "mobile"));
    const char *address = non_empty(handler_arg(c, "address"));
    if (!id || !env->registry) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    if (!mobile && !address) {
        handler_finish(c, "invalid", NULL);
        return;
    }
    /* The registry takes E.164 only; a number that is not one goes as
     * typed, for the registry to refuse by its own rule. */
    char e164[DOMAIN_PHONE_MAX];
    if (mobile && domain_phone_normalize(mobile, true, e164))
        mobile = e164;
    char key[HANDLER_CALL_KEY_MAX + 16];
    snprintf(key, sizeof key, "%s.contact", handler_call_key(c));
    registry_update_contact(env->registry, id, mobile, address, key, on_contact_updated, c);
}
