/* callback — request_callback: a caller who cannot reach a person live (a
 * USSD session) asks to be called back. The request is queued for agents
 * on the stream cl:callbacks (MAXLEN ~ 10000) with a reference the caller
 * is told ("CB" + 10 of [0-9A-Z]); its state, for the Agent API to claim
 * and close, is the hash cl:cb:{ref} (state queued, 7 days). One EVAL
 * writes both and the dedupe key cl:cb:k:{call key} → ref, so a replayed
 * hop queues nothing twice and answers the first reference.
 *
 * A caller number books at most `callbacks_per_number` callbacks per
 * `number_window_s` (cl:rl:cb:{number}, counted before anything is
 * queued); past that the answer is "too_many".
 *
 * The agent's context (where the caller asked, whether and who was
 * verified, the ID masked) reads the session as stored before this hop:
 * a verification may or may not have happened on the way here, which no
 * call argument can carry. Nothing else of the session is read. */
#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "log.h"
#include "mask.h"
#include "domain.h"
#include "mem.h"
#include "store.h"
#include "walltime.h"

#define CALLBACK_STREAM "cl:callbacks"
#define CALLBACK_STREAM_MAX "10000"
#define CALLBACK_STATE_PREFIX "cl:cb:"
#define CALLBACK_DEDUPE_PREFIX "cl:cb:k:"
#define CALLBACK_TTL_S "604800"          /* 7 days */
#define CALLBACK_REF_CHARS 10
#define CALLBACK_REF_LEN (2 + CALLBACK_REF_CHARS)
#define CALLBACK_ALPHABET "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define CALLBACK_ALPHABET_LEN 36u
/* Draws at or above this are redrawn: every character equally likely. */
#define CALLBACK_DRAW_LIMIT (256u - 256u % CALLBACK_ALPHABET_LEN)
#define CALLBACK_KEY_MAX 96
#define CALLBACK_TEXT_MAX 256            /* a context's flow or node */
#define CALLBACK_LIMIT_PREFIX "cl:rl:cb:"

/* Queues the callback unless this call already did, and answers the
 * reference either way. KEYS: dedupe key, stream, state hash. ARGV: ref,
 * stream max, session, caller, lang, reason, context, created_ms, ttl. */
static const char queue_script[] =
    "local ref = redis.call('GET', KEYS[1])\n"
    "if ref then return ref end\n"
    "if redis.call('EXISTS', KEYS[3]) == 1 then return redis.error_reply('reference taken') end\n"
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'ref', ARGV[1], 'session', ARGV[3],\n"
    "  'caller', ARGV[4], 'lang', ARGV[5], 'reason', ARGV[6], 'context', ARGV[7], 'created_ms', ARGV[8])\n"
    "redis.call('HSET', KEYS[3], 'state', 'queued', 'agent', '', 'updated_ms', ARGV[8])\n"
    "redis.call('EXPIRE', KEYS[3], ARGV[9])\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[9])\n"
    "return ARGV[1]\n";

typedef struct {
    handler_call *call;
    char caller[DOMAIN_PHONE_MAX];       /* E.164 */
    char ref[CALLBACK_REF_LEN + 1];       /* the reference drawn for this call */
} callback_req;

static void end_request(callback_req *q, const char *result, json_t *vars)
{
    handler_finish(q->call, result, vars);
    free(q);
}

static bool draw_ref(char out[CALLBACK_REF_LEN + 1])
{
    memcpy(out, "CB", 2);
    for (size_t i = 2; i < CALLBACK_REF_LEN;) {
        unsigned char draw[16];
        if (RAND_bytes(draw, sizeof draw) != 1)
            return false;
        for (size_t j = 0; j < sizeof draw && i < CALLBACK_REF_LEN; j++)
            if (draw[j] < CALLBACK_DRAW_LIMIT)
                out[i++] = CALLBACK_ALPHABET[draw[j] % CALLBACK_ALPHABET_LEN];
    }
    out[CALLBACK_REF_LEN] = '\0';
    return true;
}

/* "flow.node" split at its first dot; a value without one is all node. */
static void split_where(const char *where, char flow[CALLBACK_TEXT_MAX], char node[CALLBACK_TEXT_MAX])
{
    const char *dot = strchr(where, '.');
    if (!dot) {
        flow[0] = '\0';
        snprintf(node, CALLBACK_TEXT_MAX, "%s", where);
        return;
    }
    snprintf(flow, CALLBACK_TEXT_MAX, "%.*s", (int)(dot - where), where);
    snprintf(node, CALLBACK_TEXT_MAX, "%s", dot + 1);
}

/* The agent's context as compact JSON (caller frees): where the caller
 * asked (the `at` argument, else where the stored session stands) and
 * its verification, the ID masked. `doc` may be NULL (no stored session). */
static char *context_json(const handler_call *c, json_t *doc)
{
    char flow[CALLBACK_TEXT_MAX], node[CALLBACK_TEXT_MAX];
    const char *at = handler_arg(c, "at");
    if (at && at[0]) {
        split_where(at, flow, node);
    } else {
        json_t *f = json_object_get(doc, "flow"), *n = json_object_get(doc, "node");
        snprintf(flow, sizeof flow, "%s", json_is_string(f) ? json_string_value(f) : "");
        snprintf(node, sizeof node, "%s", json_is_string(n) ? json_string_value(n) : "");
    }
    json_t *id = json_object_get(json_object_get(doc, "vars"), "verified_id");
    bool verified = json_is_string(id) && json_string_length(id) > 0;
    json_t *ctx = json_pack("{s:s, s:s, s:b, s:o}", "flow", flow, "node", node, "verified", verified,
                            "verified_id", verified ? json_string(mask_id(json_string_value(id)).s) : json_null());
    char *text = ctx ? json_dumps(ctx, JSON_COMPACT) : NULL;
    json_decref(ctx);
    if (!text)
        mem_out_of_memory("callback: json_dumps");
    return text;
}

static void on_queued(store_status st, const struct redisReply *reply, void *arg)
{
    callback_req *q = arg;
    if (st != STORE_OK || reply->type != REDIS_REPLY_STRING) {
        log_warn("callback.queue_failed", "status=%s error=%s", store_status_name(st),
                 st == STORE_OK && reply->type == REDIS_REPLY_ERROR ? log_quote(reply->str).s : "-");
        end_request(q, "unavailable", NULL);
        return;
    }
    bool replayed = strcmp(reply->str, q->ref) != 0;
    log_info("callback.queued", "ref=%s session=%s caller=%s replayed=%d", reply->str,
             log_quote(mask_session(handler_session_id(q->call)).s).s, mask_phone(q->caller).s, replayed);
    end_request(q, "ok", json_pack("{s:s}", "callback_ref", reply->str));
}

static void on_session(store_status st, json_t *doc, uint64_t revision, void *arg)
{
    (void)revision;
    callback_req *q = arg;
    if (st != STORE_OK && st != STORE_NOT_FOUND) {
        log_warn("callback.session_unreadable", "status=%s", store_status_name(st));
        end_request(q, "unavailable", NULL);
        return;
    }
    const handler_call *c = q->call;
    char dedupe[CALLBACK_KEY_MAX], state[CALLBACK_KEY_MAX], created[24];
    snprintf(dedupe, sizeof dedupe, CALLBACK_DEDUPE_PREFIX "%s", handler_call_key(c));
    snprintf(state, sizeof state, CALLBACK_STATE_PREFIX "%s", q->ref);
    snprintf(created, sizeof created, "%lld", (long long)walltime_ms());
    char *context = context_json(c, doc);
    const char *lang = handler_arg(c, "lang"), *reason = handler_arg(c, "reason");
    const char *argv[] = {"EVAL", queue_script, "3", dedupe, CALLBACK_STREAM, state,
                          q->ref, CALLBACK_STREAM_MAX, handler_session_id(c), q->caller,
                          lang ? lang : "", reason ? reason : "", context, created, CALLBACK_TTL_S};
    store_command(handler_env_of(c)->store, 15, argv, NULL, on_queued, q);
    free(context);
}

static void on_counted(store_status st, long long count, void *arg)
{
    callback_req *q = arg;
    const handler_env *env = handler_env_of(q->call);
    if (st != STORE_OK) {
        log_warn("callback.count_failed", "status=%s", store_status_name(st));
        end_request(q, "unavailable", NULL);
    } else if (count > env->limits.callbacks_per_number) {
        log_warn("callback.limited", "caller=%s count=%lld", mask_phone(q->caller).s, count);
        end_request(q, "too_many", NULL);
    } else {
        store_load(env->store, handler_session_id(q->call), on_session, q);
    }
}

void handlers_request_callback_run(handler_call *c)
{
    const handler_env *env = handler_env_of(c);
    callback_req *q = mem_calloc(1, sizeof *q);
    q->call = c;
    const char *caller = handler_arg(c, "caller");
    if (!env->store || env->limits.callbacks_per_number < 1 || env->limits.number_window_s < 1 || !caller ||
        !domain_phone_normalize(caller, true, q->caller) || !draw_ref(q->ref)) {
        log_warn("callback.refused", "reason=%s", !env->store ? "no_store"
                                                  : env->limits.callbacks_per_number < 1 ? "no_limit_set"
                                                  : q->caller[0] ? "no_random" : "not_a_phone_number");
        end_request(q, "unavailable", NULL);
        return;
    }
    char key[sizeof CALLBACK_LIMIT_PREFIX + DOMAIN_PHONE_MAX];
    snprintf(key, sizeof key, CALLBACK_LIMIT_PREFIX "%s", q->caller);
    store_count_take(env->store, key, env->limits.number_window_s, on_counted, q);
}
