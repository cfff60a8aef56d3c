/* callbacks — the USSD callback queue as agents work it, and the audit log
 * as supervisors read it. The producer (the USSD flow) appends callbacks
 * to the stream cl:callbacks; the state of each (queued, claimed, done)
 * lives in the hash cl:cb:{ref}, changed only by the claim script here so
 * that of two agents claiming one callback exactly one gets it. */
#include "agents_int.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "view.h"
#include "walltime.h"

#define CALLBACK_WINDOW_N 1000
#define CALLBACK_TTL_S "604800"   /* 7 days, as the producer sets */

/* The states of the listed callbacks, in KEYS order. */
static const char states_script[] =
    "local out = {}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local h = redis.call('HMGET', k, 'state', 'agent', 'updated_ms')\n"
    "  out[i] = {h[1] or '', h[2] or '', h[3] or ''}\n"
    "end\n"
    "return out\n";

/* Claims (ARGV[4] "claim") or finishes ("done") a callback atomically.
 * KEYS: cl:cb:{ref}, the stream. ARGV: agent, now, ref, op, "1" when a
 * supervisor may finish another agent's claim, TTL. A callback without a
 * state hash is queued if the stream holds its ref (the stream is capped,
 * so the search is bounded). Returns {outcome, state, agent}. */
static const char claim_script[] =
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then\n"
    "  local found = false\n"
    "  for _, e in ipairs(redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 20000)) do\n"
    "    local f = e[2]\n"
    "    for i = 1, #f - 1, 2 do\n"
    "      if f[i] == 'ref' and f[i + 1] == ARGV[3] then found = true end\n"
    "    end\n"
    "    if found then break end\n"
    "  end\n"
    "  if not found then return {'missing', '', ''} end\n"
    "  st = 'queued'\n"
    "end\n"
    "local owner = redis.call('HGET', KEYS[1], 'agent') or ''\n"
    "if ARGV[4] == 'claim' then\n"
    "  if st == 'done' or (st == 'claimed' and owner ~= ARGV[1]) then return {'conflict', st, owner} end\n"
    "  redis.call('HSET', KEYS[1], 'state', 'claimed', 'agent', ARGV[1], 'updated_ms', ARGV[2])\n"
    "  owner = ARGV[1]\n"
    "  st = 'claimed'\n"
    "else\n"
    "  if st ~= 'claimed' or (owner ~= ARGV[1] and ARGV[5] ~= '1') then return {'conflict', st, owner} end\n"
    "  redis.call('HSET', KEYS[1], 'state', 'done', 'updated_ms', ARGV[2])\n"
    "  st = 'done'\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[6])\n"
    "return {'ok', st, owner}\n";

/* "CB" and 10 of [0-9A-Z]. */
static bool valid_ref(const char *ref)
{
    if (strlen(ref) != 12 || strncmp(ref, "CB", 2) != 0)
        return false;
    for (size_t i = 2; i < 12; i++)
        if (!((ref[i] >= '0' && ref[i] <= '9') || (ref[i] >= 'A' && ref[i] <= 'Z')))
            return false;
    return true;
}

static const char *reply_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) ? r->str : NULL;
}

/* A stream entry's field list as a JSON object of strings. */
static json_t *fields_object(const redisReply *list)
{
    json_t *obj = json_object();
    for (size_t i = 0; list->type == REDIS_REPLY_ARRAY && i + 1 < list->elements; i += 2) {
        const redisReply *k = list->element[i], *v = list->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
            json_object_set_new(obj, k->str, json_stringn(v->str, v->len));
    }
    return obj;
}

static bool stream_entry(const redisReply *e)
{
    return e->type == REDIS_REPLY_ARRAY && e->elements == 2 && e->element[0]->type == REDIS_REPLY_STRING &&
           e->element[1]->type == REDIS_REPLY_ARRAY;
}

/* Reads the newest `count` entries of `stream`, newest first. */
static void read_newest(agent_req *r, const char *stream, const char *count, store_reply_cb *done)
{
    const char *argv[] = {"XREVRANGE", stream, "+", "-", "COUNT", count};
    agents_req_command(r, 6, argv, NULL, done);
}

static void fail_bad_reply(agent_req *r)
{
    agents_req_fail(r, 502, "bad_reply", "Redis answered unexpectedly.");
}

/* GET /v1/callbacks ----------------------------------------------------------------*/

static void states_read(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = agents_req_back_ok(arg, st);
    if (r == NULL)
        return;
    list_work *w = &r->list;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != json_array_size(w->items)) {
        fail_bad_reply(r);
        return;
    }
    json_t *out = json_array();
    size_t matched = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *s = reply->element[i];
        if (s->type != REDIS_REPLY_ARRAY || s->elements != 3)
            continue;
        const char *state = reply_str(s->element[0]);
        json_t *item = json_array_get(w->items, i);
        json_t *cb = agents_view_callback(json_string_value(json_array_get(item, 0)), json_array_get(item, 1), state,
                                   reply_str(s->element[1]), reply_str(s->element[2]), agents_req_unmasked(r));
        if (w->state && strcmp(json_string_value(json_object_get(cb, "state")), w->state) != 0) {
            json_decref(cb);
            continue;
        }
        if (++matched <= (size_t)w->limit)
            json_array_append_new(out, cb);
        else
            json_decref(cb);
    }
    bool truncated = matched > (size_t)w->limit || json_array_size(w->items) >= CALLBACK_WINDOW_N;
    agents_req_detail(r, "n=%zu", json_array_size(out));
    agents_req_reply(r, 200, json_pack("{s:o, s:b}", "callbacks", out, "truncated", truncated));
}

static void stream_read(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = agents_req_back_ok(arg, st);
    if (r == NULL)
        return;
    if (reply->type != REDIS_REPLY_ARRAY) {
        fail_bad_reply(r);
        return;
    }
    list_work *w = &r->list;
    w->items = json_array();
    const char **argv = mem_calloc(reply->elements + 3, sizeof *argv);
    char (*keys)[sizeof AGENTS_CALLBACK_KEY + 16] = mem_calloc(reply->elements + 1, sizeof *keys);
    size_t n = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        json_t *fields = stream_entry(e) ? fields_object(e->element[1]) : NULL;
        const char *ref = json_string_value(json_object_get(fields, "ref"));
        if (ref && valid_ref(ref)) {
            snprintf(keys[n], sizeof keys[n], AGENTS_CALLBACK_KEY "%s", ref);
            argv[3 + n] = keys[n];
            n++;
            json_array_append_new(w->items, json_pack("[s, O]", e->element[0]->str, fields));
        }
        json_decref(fields);
    }
    if (n == 0) {
        free(argv);
        free(keys);
        agents_req_reply(r, 200, json_pack("{s:[], s:b}", "callbacks", "truncated", 0));
        return;
    }
    char numkeys[24];
    snprintf(numkeys, sizeof numkeys, "%zu", n);
    argv[0] = "EVAL";
    argv[1] = states_script;
    argv[2] = numkeys;
    agents_req_command(r, (int)(3 + n), argv, NULL, states_read);
    free(argv);
    free(keys);
}

void agents_ep_callbacks(agent_req *r)
{
    static const char *const states[] = {"queued", "claimed", "done", NULL};
    list_work *w = &r->list;
    w->state = agents_req_param(r, "state");
    if (w->state && !agents_one_of(w->state, states)) {
        agents_req_fail(r, 400, "bad_filter", "state is queued, claimed or done.");
        return;
    }
    if (!agents_req_limit(r, AGENTS_LIST_DEFAULT, AGENTS_LIST_MAX, &w->limit))
        return;
    agents_req_detail(r, "state=%s limit=%d", w->state ? w->state : "*", w->limit);
    read_newest(r, AGENTS_CALLBACK_STREAM, AGENTS_CALLBACK_WINDOW, stream_read);
}

/* POST /v1/callbacks/{ref}/claim and /done ----------------------------------------------*/

static void claim_answered(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = agents_req_back_ok(arg, st);
    if (r == NULL)
        return;
    const char *outcome = reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 ? reply_str(reply->element[0])
                                                                                     : NULL;
    const char *state = outcome ? reply_str(reply->element[1]) : NULL;
    const char *agent = outcome ? reply_str(reply->element[2]) : NULL;
    if (outcome == NULL || state == NULL || agent == NULL) {
        fail_bad_reply(r);
    } else if (strcmp(outcome, "missing") == 0) {
        agents_req_fail(r, 404, "no_callback", "No such callback.");
    } else if (strcmp(outcome, "conflict") == 0) {
        agents_req_detail(r, "state=%s", state);
        agents_req_fail(r, 409, strcmp(state, "claimed") == 0 ? "claimed_by_another" : state[0] ? state : "conflict",
                 strcmp(state, "claimed") == 0 ? "Another agent has claimed this callback."
                 : strcmp(state, "done") == 0  ? "The callback is done already."
                                               : "Claim the callback first.");
    } else {
        engine_note_callback(r->owner->engine, r->ref);
        agents_req_reply(r, 200, json_pack("{s:s, s:s, s:s}", "ref", r->ref, "state", state, "agent", agent));
    }
}

static void claim_or_finish(agent_req *r, const char *op)
{
    agents_req_detail(r, "ref=%s", r->ref);
    if (!valid_ref(r->ref)) {
        agents_req_fail(r, 404, "no_callback", "No such callback.");
        return;
    }
    static const char *const allowed[] = {NULL};
    if (agents_req_json_body(r, allowed) == NULL)
        return;
    char key[sizeof AGENTS_CALLBACK_KEY + sizeof r->ref], now[24];
    snprintf(key, sizeof key, AGENTS_CALLBACK_KEY "%s", r->ref);
    snprintf(now, sizeof now, "%lld", (long long)walltime_ms());
    const char *argv[] = {"EVAL", claim_script, "2", key, AGENTS_CALLBACK_STREAM, r->who->name, now, r->ref, op,
                          agents_req_unmasked(r) ? "1" : "0", CALLBACK_TTL_S};
    agents_req_command(r, (int)(sizeof argv / sizeof argv[0]), argv, NULL, claim_answered);
}

void agents_ep_claim(agent_req *r)
{
    claim_or_finish(r, "claim");
}

void agents_ep_done(agent_req *r)
{
    claim_or_finish(r, "done");
}

/* GET /v1/audit ------------------------------------------------------------------------*/

static void audit_read(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = agents_req_back_ok(arg, st);
    if (r == NULL)
        return;
    json_t *out = json_array();
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (!stream_entry(e))
            continue;
        json_t *fields = fields_object(e->element[1]);
        json_object_set_new(fields, "id", json_string(e->element[0]->str));
        json_t *at = json_object_get(fields, "at_ms");
        json_object_set_new(fields, "at_ms", json_integer(strtoll(json_string_value(at) ? json_string_value(at) : "0",
                                                                  NULL, 10)));
        json_array_append_new(out, fields);
    }
    agents_req_detail(r, "n=%zu", json_array_size(out));
    agents_req_reply(r, 200, json_pack("{s:o}", "entries", out));
}

void agents_ep_audit(agent_req *r)
{
    int limit;
    if (!agents_req_limit(r, AGENTS_AUDIT_DEFAULT, AGENTS_AUDIT_MAX, &limit))
        return;
    char count[16];
    snprintf(count, sizeof count, "%d", limit);
    read_newest(r, AGENTS_AUDIT_STREAM, count, audit_read);
}
