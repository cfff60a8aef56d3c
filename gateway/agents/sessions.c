/* sessions — the session endpoints of the agent API: list, context,
 * transfer back into a node, voice resume tokens, SMS replies and release.
 * Owns the resume token format (cl:x:{token}) and the reading of held SMS
 * (cl:held:{id}); sessions themselves change only through engine hops, so
 * two racing agents meet the engine's compare-and-set: one wins. */
#include "agents_int.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialplan.h"
#include "log.h"
#include "mem.h"
#include "sms_out.h"
#include "view.h"
#include "walltime.h"

#define SESSION_KEY "cl:s:"
#define HELD_KEY "cl:held:"
#define RESUME_KEY "cl:x:"
#define HELD_SHOWN "50"          /* newest held messages read */
#define SCAN_COUNT "500"         /* COUNT of one SCAN */
#define SCAN_ROUNDS 20           /* SCAN calls of one listing at most */
#define TOKEN_BYTES 16           /* resume token: 32 hex characters */

/* Checks --------------------------------------------------------------------------*/

/* A dialplan name: [a-z0-9_], 1..32. */
static bool plain_name(const char *s, size_t n)
{
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* Ids the channels make: "voice:", "ussd:" or "sms:" and the rest. */
static bool session_id_form(const char *id)
{
    static const char *const prefixes[] = {"voice:", "ussd:", "sms:"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(id, prefixes[i], n) == 0 && id[n] != '\0')
            return true;
    }
    return false;
}

/* "flow.node" naming a node of the running dialplan set ("flow.start" is
 * the flow's start, as for the engine). */
static bool node_exists(const agents *a, const char *where)
{
    const char *dot = strchr(where, '.');
    if (dot == NULL || !plain_name(where, (size_t)(dot - where)) || !plain_name(dot + 1, strlen(dot + 1)))
        return false;
    char flow[33];
    snprintf(flow, sizeof flow, "%.*s", (int)(dot - where), where);
    const dp_flow *f = dialplan_flow(engine_dialplan(a->engine), flow);
    return f && (dp_flow_node(f, dot + 1) || strcmp(dot + 1, "start") == 0);
}

/* The body's "node" into r->node; false after answering 400. */
static bool read_node(agent_req *r)
{
    static const char *const allowed[] = {"node", NULL};
    json_t *body = agents_req_json_body(r, allowed);
    if (body == NULL)
        return false;
    const char *node = json_string_value(json_object_get(body, "node"));
    if (node == NULL || strlen(node) > AGENTS_MAX_NODE || !node_exists(r->owner, node)) {
        agents_req_fail(r, 400, "bad_node", "node must name a node of the dialplans as \"flow.node\".");
        return false;
    }
    snprintf(r->node, sizeof r->node, "%s", node);
    agents_req_detail(r, "node=%s", node);
    return true;
}

static bool known_session(agent_req *r)
{
    if (session_id_form(r->target))
        return true;
    agents_req_fail(r, 404, "no_session", "No such session.");
    return false;
}

static const char *doc_str(json_t *doc, const char *key)
{
    const char *s = json_string_value(json_object_get(doc, key));
    return s ? s : "";
}

static bool doc_is(json_t *doc, const char *key, const char *value)
{
    return strcmp(doc_str(doc, key), value) == 0;
}

static bool with_agent(agent_req *r)
{
    if (doc_is(r->doc, "state", "transfer"))
        return true;
    agents_req_detail(r, "state=%s", doc_str(r->doc, "state"));
    agents_req_fail(r, 409, "not_with_agent", "The session is not with an agent (its state is not transfer).");
    return false;
}

/* Loading the session, then `then` ---------------------------------------------------*/

static void session_loaded(store_status st, json_t *doc, uint64_t revision, void *arg)
{
    agent_req *r = arg;
    (void)revision;
    if (!agents_req_back(r))
        return;
    if (st == STORE_NOT_FOUND) {
        agents_req_fail(r, 404, "no_session", "No such session (or it expired).");
    } else if (st != STORE_OK) {
        agents_req_fail_store(r, st);
    } else {
        r->doc = json_incref(doc);
        r->then(r);
    }
}

static void load_then(agent_req *r, void (*then)(agent_req *))
{
    r->then = then;
    agents_req_wait(r);
    store_load(r->owner->store, r->target, session_loaded, r);
}

/* Engine hops and SMS to the caller ------------------------------------------------*/

static void hop_failed(agent_req *r, const engine_result *res)
{
    agents_req_detail(r, "engine=%s", engine_status_name(res->status));
    switch (res->status) {
    case ENGINE_NO_SESSION:
        agents_req_fail(r, 404, "no_session", "No such session (or it ended).");
        break;
    case ENGINE_BAD_EVENT:
    case ENGINE_BUSY:
        agents_req_fail(r, 409, "conflict", "The session changed meanwhile (another agent or the caller); reload it.");
        break;
    default:
        agents_req_fail(r, 503, "unavailable", "The session cannot be changed right now; try again.");
        break;
    }
}

/* The first call of an engine hop's callback: the request when it is still
 * to be answered and the hop went through (its output kept in r->result);
 * NULL otherwise, a failure answered. */
static agent_req *hop_back_ok(const engine_result *res, void *arg)
{
    agent_req *r = arg;
    if (!agents_req_back(r))
        return NULL;
    if (res->status != ENGINE_OK) {
        hop_failed(r, res);
        return NULL;
    }
    r->result = json_incref(res->output);
    return r;
}

/* The outbox holds the SMS: added now, or by an earlier add (duplicate). */
static bool sms_accepted(outbox_add_status st)
{
    return st == OUTBOX_ADDED || st == OUTBOX_DUPLICATE;
}

/* Hands an SMS to `to` to the outbox; `done` is called back with the request. */
static void queue_sms(agent_req *r, const char *to, const char *text, outbox_add_cb *done)
{
    json_t *payload = json_pack("{s:s, s:s}", "to", to, "text", text);
    agents_req_wait(r);
    outbox_add(r->owner->outbox, "sms", payload, NULL, done, r);
    json_decref(payload);
}

/* GET /v1/sessions ---------------------------------------------------------------*/

static void list_round(agent_req *r);

static int by_updated_desc(const void *x, const void *y)
{
    json_int_t a = json_integer_value(json_object_get(*(json_t *const *)x, "updated_ms"));
    json_int_t b = json_integer_value(json_object_get(*(json_t *const *)y, "updated_ms"));
    return (a < b) - (a > b);
}

static void list_answer(agent_req *r)
{
    list_work *w = &r->list;
    size_t n = json_object_size(w->seen), i = 0;
    json_t **all = mem_calloc(n + 1, sizeof *all);
    const char *id;
    json_t *entry;
    json_object_foreach(w->seen, id, entry)
        all[i++] = entry;
    qsort(all, n, sizeof *all, by_updated_desc);
    json_t *out = json_array();
    for (i = 0; i < n && i < (size_t)w->limit; i++)
        json_array_append(out, all[i]);
    free(all);
    bool truncated = n > (size_t)w->limit || strcmp(w->cursor, "0") != 0;
    agents_req_detail(r, "n=%zu truncated=%d", json_array_size(out), truncated);
    agents_req_reply(r, 200, json_pack("{s:o, s:b}", "sessions", out, "truncated", truncated));
}

static void list_next(agent_req *r)
{
    list_work *w = &r->list;
    if (r->failed != STORE_OK)
        agents_req_fail_store(r, r->failed);
    else if (json_object_size(w->seen) > (size_t)w->limit || strcmp(w->cursor, "0") == 0 ||
             w->rounds >= SCAN_ROUNDS)
        list_answer(r);
    else
        list_round(r);
}

static void doc_listed(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = arg;
    if (!agents_req_back(r))
        return;
    if (st != STORE_OK) {
        r->failed = st;
    } else if (reply->type == REDIS_REPLY_STRING) {
        json_t *doc = json_loadb(reply->str, reply->len, 0, NULL);
        list_work *w = &r->list;
        if (json_is_object(doc) && agents_view_matches(doc, w->channel, w->state, w->queue) && *doc_str(doc, "id"))
            json_object_set_new(w->seen, doc_str(doc, "id"), agents_view_summary(doc, agents_req_unmasked(r)));
        json_decref(doc);
    }
    if (r->waiting == 0)
        list_next(r);
}

static void scanned(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = agents_req_back_ok(arg, st);
    if (r == NULL)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY || reply->element[0]->len >= sizeof r->list.cursor) {
        agents_req_fail(r, 502, "bad_reply", "Redis answered SCAN unexpectedly.");
        return;
    }
    list_work *w = &r->list;
    memcpy(w->cursor, reply->element[0]->str, reply->element[0]->len);
    w->cursor[reply->element[0]->len] = '\0';
    w->rounds++;
    const redisReply *keys = reply->element[1];
    for (size_t i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING)
            continue;
        const char *argv[] = {"HGET", keys->element[i]->str, "doc"};
        size_t lens[] = {4, keys->element[i]->len, 3};
        agents_req_command(r, 3, argv, lens, doc_listed);
    }
    if (r->waiting == 0)
        list_next(r);
}

static void list_round(agent_req *r)
{
    list_work *w = &r->list;
    char match[32];
    snprintf(match, sizeof match, SESSION_KEY "%s%s*", w->channel ? w->channel : "", w->channel ? ":" : "");
    const char *argv[] = {"SCAN", w->cursor, "MATCH", match, "COUNT", SCAN_COUNT};
    agents_req_command(r, 6, argv, NULL, scanned);
}

void agents_ep_list(agent_req *r)
{
    static const char *const channels[] = {"voice", "ussd", "sms", NULL};
    static const char *const states[] = {"wait", "transfer", "end", NULL};
    list_work *w = &r->list;
    w->channel = agents_req_param(r, "channel");
    w->state = agents_req_param(r, "state");
    w->queue = agents_req_param(r, "queue");
    if ((w->channel && !agents_one_of(w->channel, channels)) || (w->state && !agents_one_of(w->state, states)) ||
        (w->queue && !plain_name(w->queue, strlen(w->queue)))) {
        agents_req_fail(r, 400, "bad_filter",
                        "channel is voice|ussd|sms, state wait|transfer|end, queue a queue name.");
        return;
    }
    if (!agents_req_limit(r, AGENTS_LIST_DEFAULT, AGENTS_LIST_MAX, &w->limit))
        return;
    agents_req_detail(r, "channel=%s state=%s queue=%s limit=%d", w->channel ? w->channel : "*",
               w->state ? w->state : "*", w->queue ? w->queue : "*", w->limit);
    snprintf(w->cursor, sizeof w->cursor, "0");
    w->seen = json_object();
    list_round(r);
}

/* GET /v1/queue ---------------------------------------------------------------------*/

static void ignore_reply(store_status st, const redisReply *reply, void *arg)
{
    (void)st, (void)reply;
    agents_req_back(arg);
}

static void queue_answer(agent_req *r)
{
    list_work *w = &r->list;
    if (r->failed != STORE_OK) {
        agents_req_fail_store(r, r->failed);
        return;
    }
    agents_req_detail(r, "offset=%ld n=%zu total=%lld", w->offset, json_array_size(w->page), w->total);
    agents_req_reply(r, 200, json_pack("{s:I, s:I, s:i, s:O}", "total", (json_int_t)w->total, "offset",
                                       (json_int_t)w->offset, "limit", w->limit, "sessions", w->page));
}

/* One document of the page, in the order asked (one connection answers in
 * order): a session no longer waiting leaves the index. */
static void queued_doc(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = arg;
    if (!agents_req_back(r))
        return;
    list_work *w = &r->list;
    json_t *slot = json_array_get(w->items, (size_t)w->rounds++);
    const char *id = json_string_value(json_array_get(slot, 0));
    json_t *doc = st == STORE_OK && reply->type == REDIS_REPLY_STRING ? json_loadb(reply->str, reply->len, 0, NULL)
                                                                     : NULL;
    if (st != STORE_OK) {
        r->failed = st;
    } else if (json_is_object(doc) && doc_is(doc, "state", "transfer")) {
        json_int_t since = json_integer_value(json_array_get(slot, 1));
        json_array_append_new(w->page, agents_view_queued(doc, since, agents_req_unmasked(r)));
    } else if (id) {
        const char *argv[] = {"ZREM", ENGINE_QUEUE_KEY, id};
        agents_req_command(r, 3, argv, NULL, ignore_reply);
    }
    json_decref(doc);
    if (w->rounds == (int)json_array_size(w->items))
        queue_answer(r);
}

static void queue_counted(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = agents_req_back_ok(arg, st);
    if (r != NULL && reply->type == REDIS_REPLY_INTEGER)
        r->list.total = reply->integer;
}

static void queue_ranged(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = agents_req_back_ok(arg, st);
    if (r == NULL)
        return;
    list_work *w = &r->list;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) {
        agents_req_fail(r, 502, "bad_reply", "Redis answered ZRANGE unexpectedly.");
        return;
    }
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *id = reply->element[i], *score = reply->element[i + 1];
        if (id->type != REDIS_REPLY_STRING || score->type != REDIS_REPLY_STRING)
            continue;
        json_array_append_new(w->items, json_pack("[s#, I]", id->str, (int)id->len, (json_int_t)strtoll(score->str, NULL, 10)));
        char key[sizeof SESSION_KEY + STORE_MAX_ID_LEN];
        snprintf(key, sizeof key, SESSION_KEY "%s", id->str);
        const char *argv[] = {"HGET", key, "doc"};
        agents_req_command(r, 3, argv, NULL, queued_doc);
    }
    if (json_array_size(w->items) == 0)
        queue_answer(r);
}

void agents_ep_queue(agent_req *r)
{
    list_work *w = &r->list;
    const char *s = agents_req_param(r, "offset");
    char *end = NULL;
    long offset = s ? strtol(s, &end, 10) : 0;
    if (s && (*s == '\0' || *end != '\0' || offset < 0 || offset > AGENTS_QUEUE_MAX_OFFSET)) {
        agents_req_fail(r, 400, "bad_offset", "offset must be a whole number from 0.");
        return;
    }
    if (!agents_req_limit(r, AGENTS_LIST_DEFAULT, AGENTS_LIST_MAX, &w->limit))
        return;
    w->offset = offset;
    w->items = json_array();
    w->page = json_array();
    char from[24], to[24];
    snprintf(from, sizeof from, "%ld", offset);
    snprintf(to, sizeof to, "%ld", offset + w->limit - 1);
    const char *count[] = {"ZCARD", ENGINE_QUEUE_KEY};
    const char *range[] = {"ZRANGE", ENGINE_QUEUE_KEY, from, to, "WITHSCORES"};
    agents_req_command(r, 2, count, NULL, queue_counted);
    agents_req_command(r, 5, range, NULL, queue_ranged);
}

/* GET /v1/sessions/{id} ------------------------------------------------------------*/

static void context_part_done(agent_req *r)
{
    if (r->waiting > 0)
        return;
    if (r->failed != STORE_OK)
        agents_req_fail_store(r, r->failed);
    else if (r->doc == NULL)
        agents_req_fail(r, 404, "no_session", "No such session (or it expired).");
    else
        agents_req_reply(r, 200, agents_view_context(r->doc, r->events, r->held, agents_req_unmasked(r)));
}

static void context_doc(store_status st, json_t *doc, uint64_t revision, void *arg)
{
    agent_req *r = arg;
    (void)revision;
    if (!agents_req_back(r))
        return;
    if (st == STORE_OK)
        r->doc = json_incref(doc);
    else if (st != STORE_NOT_FOUND)
        r->failed = st;
    context_part_done(r);
}

static void context_events(store_status st, json_t *events, void *arg)
{
    agent_req *r = arg;
    if (!agents_req_back(r))
        return;
    if (st == STORE_OK)
        r->events = json_incref(events);
    else if (st != STORE_NOT_FOUND && st != STORE_BAD_DATA)
        r->failed = st;
    context_part_done(r);
}

static void context_held(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = arg;
    if (!agents_req_back(r))
        return;
    if (st != STORE_OK) {
        r->failed = st;
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        r->held = json_array();
        for (size_t i = 0; i < reply->elements; i++)
            if (reply->element[i]->type == REDIS_REPLY_STRING)
                json_array_append_new(r->held, json_stringn(reply->element[i]->str, reply->element[i]->len));
    }
    context_part_done(r);
}

void agents_ep_context(agent_req *r)
{
    if (!known_session(r))
        return;
    agents *a = r->owner;
    agents_req_wait(r);
    store_load(a->store, r->target, context_doc, r);
    agents_req_wait(r);
    store_load_events(a->store, r->target, context_events, r);
    if (strncmp(r->target, "sms:", 4) == 0) {
        char key[sizeof HELD_KEY + STORE_MAX_ID_LEN];
        snprintf(key, sizeof key, HELD_KEY "%s", r->target);
        const char *argv[] = {"LRANGE", key, "-" HELD_SHOWN, "-1"};
        agents_req_command(r, 4, argv, NULL, context_held);
    }
}

/* POST /v1/sessions/{id}/transfer --------------------------------------------------*/

static void transfer_part_done(agent_req *r)
{
    if (r->waiting > 0)
        return;
    json_t *out = json_pack("{s:s, s:o}", "state", doc_str(r->result, "state"), "node", json_null());
    if (r->doc) {
        char where[2 * 33 + 2];
        snprintf(where, sizeof where, "%s.%s", doc_str(r->doc, "flow"), doc_str(r->doc, "node"));
        json_object_set_new(out, "node", json_string(where));
    }
    if (strncmp(r->target, "sms:", 4) == 0)
        json_object_set_new(out, "sms_queued", json_boolean(r->sms_queued));
    agents_req_reply(r, 200, out);
}

static void transfer_reloaded(store_status st, json_t *doc, uint64_t revision, void *arg)
{
    agent_req *r = arg;
    (void)revision;
    if (!agents_req_back(r))
        return;
    json_decref(r->doc);
    r->doc = st == STORE_OK ? json_incref(doc) : NULL;
    transfer_part_done(r);
}

static void transfer_sms_added(outbox_add_status st, const char *entry_id, void *arg)
{
    agent_req *r = arg;
    (void)entry_id;
    if (!agents_req_back(r))
        return;
    r->sms_queued = sms_accepted(st);
    if (!r->sms_queued)
        log_warn("agents.sms_not_queued", "why=%s", outbox_add_status_name(st));
    transfer_part_done(r);
}

/* The output of an SMS session's hop goes to the caller as an SMS: there
 * is no request of the caller's to answer it. */
static void send_output_by_sms(agent_req *r)
{
    char text[SMS_OUT_MAX_TEXT + 1];
    size_t n = engine_render_text(r->owner->engine, r->result, CHANNEL_SMS, text, sizeof text);
    const char *to = doc_str(r->doc, "caller");
    if (n > 0 && *to != '\0')
        queue_sms(r, to, text, transfer_sms_added);
}

static void transfer_hopped(const engine_result *res, void *arg)
{
    agent_req *r = hop_back_ok(res, arg);
    if (r == NULL)
        return;
    agents_req_detail(r, "state=%s", doc_str(r->result, "state"));
    if (doc_is(r->doc, "channel", "sms"))
        send_output_by_sms(r);
    agents_req_wait(r);
    store_load(r->owner->store, r->target, transfer_reloaded, r);
}

static void transfer_loaded(agent_req *r)
{
    channel_kind ch;
    if (channel_parse(doc_str(r->doc, "channel"), &ch) != 0 || ch == CHANNEL_VOICE) {
        agents_req_fail(r, 400, "not_ussd_or_sms",
                        "Only USSD and SMS sessions are transferred here; voice uses resume.");
        return;
    }
    if (!with_agent(r))
        return;
    engine_event ev = {
        .kind = ENGINE_EV_TRANSFER_BACK,
        .channel = ch,
        .session_id = r->target,
        .node = r->node,
    };
    agents_req_wait(r);
    engine_hop(r->owner->engine, &ev, transfer_hopped, r);
}

void agents_ep_transfer(agent_req *r)
{
    if (known_session(r) && read_node(r))
        load_then(r, transfer_loaded);
}

/* POST /v1/sessions/{id}/resume -----------------------------------------------------*/

static void resume_stored(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = agents_req_back_ok(arg, st);
    if (r == NULL)
        return;
    if (reply->type != REDIS_REPLY_STATUS) {
        agents_req_fail(r, 503, "not_stored", "The resume token could not be stored; try again.");
    } else {
        char uri[sizeof r->token + sizeof r->owner->resume_at + 16];
        snprintf(uri, sizeof uri, "sip:resume-%s@%s", r->token, r->owner->resume_at);
        engine_note_change(r->owner->engine, r->target);
        agents_req_reply(r, 201, json_pack("{s:s, s:i}", "uri", uri, "expires_in_s", r->owner->resume_ttl_s));
    }
}

static bool new_token(char out[2 * TOKEN_BYTES + 1])
{
    unsigned char raw[TOKEN_BYTES];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return false;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    OPENSSL_cleanse(raw, sizeof raw);
    return true;
}

static void resume_loaded(agent_req *r)
{
    agents *a = r->owner;
    if (!doc_is(r->doc, "channel", "voice")) {
        agents_req_fail(r, 400, "not_voice", "Only voice sessions can be resumed.");
        return;
    }
    if (!new_token(r->token)) {
        agents_req_fail(r, 503, "no_randomness", "No token could be made; try again.");
        return;
    }
    json_t *value = json_pack("{s:s, s:s, s:s, s:s, s:I}", "session", r->target, "node", r->node, "agent",
                              r->who->name, "return_uri", r->who->sip_uri, "created_ms",
                              (json_int_t)walltime_ms());
    char *text = json_dumps(value, JSON_COMPACT);
    json_decref(value);
    char key[sizeof RESUME_KEY + sizeof r->token], ttl[16];
    snprintf(key, sizeof key, RESUME_KEY "%s", r->token);
    snprintf(ttl, sizeof ttl, "%d", a->resume_ttl_s);
    const char *argv[] = {"SET", key, text, "EX", ttl, "NX"};
    agents_req_command(r, 6, argv, NULL, resume_stored);
    free(text);
}

void agents_ep_resume(agent_req *r)
{
    if (!known_session(r) || !read_node(r))
        return;
    if (r->who->sip_uri[0] == '\0') {
        agents_req_fail(r, 400, "no_sip_uri", "The agent has no sip_uri in the tokens file to return the caller to.");
        return;
    }
    load_then(r, resume_loaded);
}

/* POST /v1/sessions/{id}/reply ------------------------------------------------------*/

static void reply_added(outbox_add_status st, const char *entry_id, void *arg)
{
    agent_req *r = arg;
    (void)entry_id;
    if (!agents_req_back(r))
        return;
    if (sms_accepted(st)) {
        engine_note_change(r->owner->engine, r->target);
        agents_req_reply(r, 202, json_pack("{s:b}", "queued", 1));
    }
    else {
        agents_req_fail(r, 503, "not_queued", "The reply could not be queued; try again.");
    }
}

static void reply_loaded(agent_req *r)
{
    if (!doc_is(r->doc, "channel", "sms")) {
        agents_req_fail(r, 400, "not_sms", "Only SMS sessions can be replied to.");
        return;
    }
    if (!with_agent(r))
        return;
    queue_sms(r, doc_str(r->doc, "caller"), json_string_value(json_object_get(r->body, "text")), reply_added);
}

void agents_ep_reply(agent_req *r)
{
    static const char *const allowed[] = {"text", NULL};
    if (!known_session(r))
        return;
    json_t *body = agents_req_json_body(r, allowed);
    if (body == NULL)
        return;
    json_t *text = json_object_get(body, "text");
    size_t len = json_string_length(text);
    if (!json_is_string(text) || len == 0 || len > AGENTS_REPLY_MAX || strlen(json_string_value(text)) != len) {
        agents_req_fail(r, 400, "bad_text", "text must be 1 to 480 bytes of UTF-8.");
        return;
    }
    agents_req_detail(r, "text_len=%zu", len);
    load_then(r, reply_loaded);
}

/* POST /v1/sessions/{id}/release ----------------------------------------------------*/

static void held_deleted(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = arg;
    (void)reply;
    if (!agents_req_back(r))
        return;
    if (st != STORE_OK)
        log_warn("agents.held_not_deleted", "why=%s", store_status_name(st));
    agents_req_reply(r, 200, json_pack("{s:s, s:b}", "state", doc_str(r->result, "state"), "held_deleted",
                                st == STORE_OK));
}

static void released(const engine_result *res, void *arg)
{
    agent_req *r = hop_back_ok(res, arg);
    if (r == NULL)
        return;
    char key[sizeof HELD_KEY + STORE_MAX_ID_LEN];
    snprintf(key, sizeof key, HELD_KEY "%s", r->target);
    const char *argv[] = {"DEL", key};
    agents_req_command(r, 2, argv, NULL, held_deleted);
}

static void release_loaded(agent_req *r)
{
    channel_kind ch;
    if (channel_parse(doc_str(r->doc, "channel"), &ch) != 0) {
        agents_req_fail(r, 409, "bad_session", "The session document names no channel.");
        return;
    }
    if (!with_agent(r))
        return;
    engine_event ev = {.kind = ENGINE_EV_HANGUP, .channel = ch, .session_id = r->target};
    agents_req_wait(r);
    engine_hop(r->owner->engine, &ev, released, r);
}

void agents_ep_release(agent_req *r)
{
    static const char *const allowed[] = {NULL};
    if (known_session(r) && agents_req_json_body(r, allowed))
        load_then(r, release_loaded);
}
