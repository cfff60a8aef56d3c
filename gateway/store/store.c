/* store — owns the one hiredis connection to Redis and every operation in
 * flight on it: the connect, handshake, ping and reconnect cycle, each
 * operation's deadline (kept, with the in-flight and refused sets, by
 * core/pending), the matching of replies to callbacks, and the two
 * keys of a session (its document and its event list). Replies are
 * matched by operation id (hiredis privdata), never by pointer, because a
 * reply may arrive after its operation timed out. Nothing here logs a key,
 * a document or the Redis password. */
#include "store.h"

#include "compact.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "pending.h"
#include "utf8.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define STORE_KEY_PREFIX "cl:s:"
#define STORE_EVENTS_PREFIX "cl:e:" /* same length as STORE_KEY_PREFIX */
#define STORE_KEY_SIZE (sizeof STORE_KEY_PREFIX + STORE_MAX_ID_LEN) /* with the NUL */
#define STORE_SAVE_FIXED_ARGS 10 /* EVALSHA, sha, numkeys, 2 keys, 5 ARGV */
#define STORE_SHA_LEN 40         /* hex SHA1 of a script, as SCRIPT LOAD answers */

/* Compare-and-set in one atomic step. KEYS: the session, its event list.
 * ARGV: expected revision, new revision, document, TTL, keep ("" = no
 * events), then the events. Revisions are compared as decimal text, which
 * we always write canonically, so no Lua number ever holds one. Whatever
 * may fail (a list key of another type) runs before the document is
 * written: Redis does not roll a script back. Each redis.call costs the
 * server about 2 µs, so calls that would change nothing are skipped: the
 * trim when the push left the list within `keep`, the list's EXPIRE when
 * it was just deleted. */
static const char cas_script[] =
    "local cur = redis.call('HGET', KEYS[1], 'rev') or '0'\n"
    "if cur ~= ARGV[1] then return {0, cur} end\n"
    "local keep = tonumber(ARGV[5])\n"
    "if keep == 0 then\n"
    "  redis.call('DEL', KEYS[2])\n"
    "else\n"
    "  if keep then\n"
    "    local len = keep + 1\n"
    "    if #ARGV > 5 then len = redis.call('RPUSH', KEYS[2], unpack(ARGV, 6)) end\n"
    "    if len > keep then redis.call('LTRIM', KEYS[2], -keep, -1) end\n"
    "  end\n"
    "  redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'doc', ARGV[3])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "return {1}\n";

/* The event list, but only while the session exists (nil otherwise, where
 * a bare LRANGE could not tell "no session" from "no events"). ARGV: the
 * first index to read, counted from the end. */
static const char events_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
    "return redis.call('LRANGE', KEYS[2], ARGV[1], -1)\n";

typedef enum { OP_LOAD, OP_SAVE, OP_DELETE, OP_LOAD_EVENTS, OP_COMMAND, OP_KINDS } op_kind;

static const char *const op_kind_names[OP_KINDS] = {"load", "save", "delete", "load_events",
                                                      "command"};

#define STORE_STATUSES (STORE_BAD_DATA + 1)

typedef enum {
    CONN_DOWN,      /* no connection; a reconnect is scheduled (unless closing) */
    CONN_HANDSHAKE, /* connecting, or AUTH/SELECT/PING not answered yet */
    CONN_READY      /* answering; operations are sent */
} conn_state;

typedef union {
    store_load_cb *load;
    store_load_noted_cb *noted;
    store_save_cb *save;
    store_delete_cb *del;
    store_events_cb *events;
    store_reply_cb *reply;
} op_callback; /* the member named by the operation's kind */

typedef struct store_op store_op;

struct store_op {
    store *owner;              /* the store the operation belongs to */
    uintptr_t id;              /* privdata given to hiredis; 0 until sent */
    op_kind kind;              /* which member of `cb` is set */
    op_callback cb;            /* the caller's callback */
    void *arg;                 /* the caller's argument */
    uint64_t new_revision;     /* save: the revision written on success */
    char *cmd;                 /* save: the EVALSHA as sent, kept for one resend */
    size_t cmd_len;            /* its bytes */
    bool reloaded;             /* save: resent once after NOSCRIPT */
    bool noted;                /* load: reads the note too (cb.noted) */
    store_status refused_with; /* status of an operation refused before sending */
    pending_op p;              /* in the in-flight or the refused set */
    json_t *done_doc;          /* completing: load's document or load_events' array (borrowed) */
    uint64_t done_revision;    /* completing: the revision read or written */
    const redisReply *done_reply; /* completing: the reply (borrowed) */
};

struct store {
    struct event_base *base;     /* the main loop everything runs on */
    store_options opt;           /* copy; host and password owned */
    redisAsyncContext *ac;       /* current connection, NULL while down */
    conn_state state;            /* where the connection cycle stands */
    int backoff_ms;              /* delay before the next reconnect attempt */
    unsigned attempts;           /* reconnect attempts since the last success */
    bool closing;                /* store_free running: no reconnects */
    uintptr_t next_id;           /* id of the next operation sent, never 0 */
    pending_set inflight;        /* sent, unanswered operations in id order */
    pending_set refused;         /* refused before sending, reported on a later turn */
    struct event *reconnect_ev;  /* starts the next connect attempt */
    struct event *ping_ev;       /* persistent: sends a PING while ready */
    struct event *alive_ev;      /* deadline of the handshake or of the last PING */
    metrics_series *ops_total[OP_KINDS][STORE_STATUSES]; /* per op and result */
    metrics_series *connected;   /* gauge: 1 while ready */
    char cas_sha[STORE_SHA_LEN + 1]; /* the save script's SHA1, from SCRIPT LOAD */
    const struct timeval *op_timeout; /* op_timeout_ms as a libevent common timeout */
    compact_buf doc_text;        /* the document being saved, reused */
};

/* Small helpers -------------------------------------------------------------*/

static struct timeval ms_to_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static void timer_start(struct event *ev, int ms)
{
    struct timeval tv = ms_to_tv(ms);
    evtimer_add(ev, &tv);
}

const char *store_status_name(store_status st)
{
    switch (st) {
    case STORE_OK: return "ok";
    case STORE_NOT_FOUND: return "not_found";
    case STORE_CONFLICT: return "conflict";
    case STORE_UNAVAILABLE: return "unavailable";
    case STORE_TIMEOUT: return "timeout";
    case STORE_BAD_DATA: return "bad_data";
    }
    return "unknown";
}

/* A Redis error code ("WRONGTYPE", "NOAUTH") without the message, which may
 * quote arguments. */
static log_quoted error_code(const char *err)
{
    char code[32];
    size_t n = strcspn(err, " ");
    if (n >= sizeof code)
        n = sizeof code - 1;
    memcpy(code, err, n);
    code[n] = '\0';
    return log_quote(code);
}

/* Only the canonical form we write: a leading zero would compare unequal in
 * the script yet parse equal here, and the caller would conflict forever. */
static bool parse_revision(const redisReply *r, uint64_t *out)
{
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20 ||
        (r->len > 1 && r->str[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < r->len; i++) {
        unsigned d = (unsigned char)r->str[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Ids end up inside a Redis key: printable, no spaces, bounded. */
static bool valid_id(const char *id)
{
    if (id == NULL)
        return false;
    size_t len = strnlen(id, STORE_MAX_ID_LEN + 1);
    if (len == 0 || len > STORE_MAX_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

static size_t session_key(char out[STORE_KEY_SIZE], const char *id)
{
    return (size_t)snprintf(out, STORE_KEY_SIZE, "%s%s", STORE_KEY_PREFIX, id);
}

static size_t events_key(char out[STORE_KEY_SIZE], const char *id)
{
    return (size_t)snprintf(out, STORE_KEY_SIZE, "%s%s", STORE_EVENTS_PREFIX, id);
}

/* Operation lists ------------------------------------------------------------*/


/* Replies come back in the order sent, so the answer to an in-flight
 * operation is at or near the head; an id below the head's timed out. */
static store_op *inflight_find(store *s, uintptr_t id)
{
    for (pending_op *p = TAILQ_FIRST(&s->inflight.ops); p; p = TAILQ_NEXT(p, link)) {
        store_op *op = pending_owner(p, store_op, p);
        if (op->id > id)
            break;
        if (op->id == id)
            return op;
    }
    return NULL;
}

/* Completion: the only place callbacks are called ---------------------------*/

/* store_free's status for a refused op: the status it was refused with. */
#define OP_AS_REFUSED (-1)

static const char *load_note(const redisReply *r);

/* pending's completion. Frees the operation first so the callback may start
 * new ones or see a consistent store. The outcome is the one op_complete
 * kept on the op; `doc` stays owned by op_complete's caller. */
static void op_completed(pending_op *p, int status)
{
    store_op *op = pending_owner(p, store_op, p);
    store *s = op->owner;
    store_status st = status == OP_AS_REFUSED ? op->refused_with : (store_status)status;
    op_kind kind = op->kind;
    void *arg = op->arg;
    op_callback cb = op->cb;
    json_t *doc = op->done_doc;
    uint64_t revision = op->done_revision;
    const redisReply *reply = op->done_reply;
    bool noted = op->noted;
    redisFreeCommand(op->cmd);
    free(op);

    metrics_inc(s->ops_total[kind][st]);
    switch (kind) {
    case OP_LOAD:
        if (noted)
            cb.noted(st, st == STORE_OK ? doc : NULL, revision, st == STORE_OK ? load_note(reply) : NULL, arg);
        else
            cb.load(st, st == STORE_OK ? doc : NULL, revision, arg);
        break;
    case OP_SAVE:
        cb.save(st, st == STORE_OK || st == STORE_CONFLICT ? revision : 0, arg);
        break;
    case OP_LOAD_EVENTS:
        cb.events(st, st == STORE_OK ? doc : NULL, arg);
        break;
    case OP_COMMAND:
        cb.reply(st, st == STORE_OK ? reply : NULL, arg);
        break;
    default:
        cb.del(st, arg);
        break;
    }
}

/* Completes a pending op with its outcome. `doc` (load: the document,
 * load_events: the array) stays owned by the caller. */
static void op_complete(store_op *op, store_status st, json_t *doc, uint64_t revision,
                        const redisReply *reply)
{
    op->done_doc = doc;
    op->done_revision = revision;
    op->done_reply = reply;
    pending_complete(&op->p, (int)st);
}

static void fail_inflight(store *s, store_status st)
{
    pending_complete_all(&s->inflight, (int)st);
}

/* Never reports inside the caller's store_* call: the refusal is delivered
 * on a later loop turn. */
static void op_refuse(store_op *op, store_status st)
{
    store *s = op->owner;
    op->refused_with = st;
    pending_start(&s->refused, &op->p, op_completed);
    pending_complete_soon(&op->p, (int)st);
}

static store_op *op_new(store *s, op_kind kind, void *arg)
{
    store_op *op = mem_calloc(1, sizeof *op);
    op->owner = s;
    op->kind = kind;
    op->arg = arg;
    return op;
}

/* Replies ---------------------------------------------------------------------*/

/* What a reply means for the operation; `bad` names the defect of a
 * BAD_DATA outcome for the log. */
typedef struct {
    store_status st;   /* the status to report */
    json_t *doc;       /* load: the parsed document, load_events: the array
                        * (owned), else NULL */
    uint64_t revision; /* as store.h defines it per operation */
    const char *bad;   /* why the data is bad, or NULL */
} outcome;

static outcome bad_outcome(const char *why)
{
    return (outcome){.st = STORE_BAD_DATA, .bad = why};
}

static outcome error_outcome(op_kind kind, const redisReply *r)
{
    if (strstr(r->str, "WRONGTYPE") != NULL)
        return bad_outcome("wrong_type");
    log_warn("store.redis_error", "op=%s code=%s", op_kind_names[kind], error_code(r->str).s);
    return (outcome){.st = STORE_UNAVAILABLE};
}

/* The note of a noted load's reply (its third element), or NULL. */
static const char *load_note(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return NULL;
    const redisReply *note = r->element[2];
    return note->type == REDIS_REPLY_STRING && note->len <= STORE_MAX_NOTE_BYTES ? note->str : NULL;
}

static outcome load_outcome(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->elements > 3)
        return bad_outcome("unexpected_reply");
    const redisReply *rev = r->element[0], *text = r->element[1];
    if (rev->type == REDIS_REPLY_NIL && text->type == REDIS_REPLY_NIL)
        return (outcome){.st = STORE_NOT_FOUND};
    uint64_t revision;
    if (!parse_revision(rev, &revision))
        return bad_outcome("revision");
    if (text->type != REDIS_REPLY_STRING || text->len > STORE_MAX_DOC_BYTES)
        return bad_outcome("document");
    json_error_t err;
    json_t *doc = json_loadb(text->str, text->len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return bad_outcome("document");
    }
    return (outcome){.st = STORE_OK, .doc = doc, .revision = revision};
}

static outcome save_outcome(const redisReply *r, uint64_t new_revision)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return bad_outcome("unexpected_reply");
    if (r->element[0]->integer == 1)
        return (outcome){.st = STORE_OK, .revision = new_revision};
    uint64_t current;
    if (r->elements != 2 || !parse_revision(r->element[1], &current))
        return bad_outcome("revision");
    return (outcome){.st = STORE_CONFLICT, .revision = current};
}

static outcome delete_outcome(const redisReply *r)
{
    if (r->type != REDIS_REPLY_INTEGER)
        return bad_outcome("unexpected_reply");
    return (outcome){.st = r->integer > 0 ? STORE_OK : STORE_NOT_FOUND};
}

static outcome events_outcome(const redisReply *r)
{
    if (r->type == REDIS_REPLY_NIL)
        return (outcome){.st = STORE_NOT_FOUND};
    if (r->type != REDIS_REPLY_ARRAY || r->elements > STORE_MAX_EVENTS_KEPT)
        return bad_outcome("unexpected_reply");
    json_t *events = json_array();
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        json_t *text = e->type == REDIS_REPLY_STRING && e->len <= STORE_MAX_EVENT_BYTES
                           ? json_stringn(e->str, e->len)
                           : NULL;
        if (text == NULL) {
            json_decref(events);
            return bad_outcome("events");
        }
        json_array_append_new(events, text);
    }
    return (outcome){.st = STORE_OK, .doc = events};
}

static outcome reply_outcome(const store_op *op, const redisReply *r)
{
    if (r == NULL)
        return (outcome){.st = STORE_UNAVAILABLE};
    if (op->kind == OP_COMMAND)
        return (outcome){.st = STORE_OK};
    if (r->type == REDIS_REPLY_ERROR)
        return error_outcome(op->kind, r);
    switch (op->kind) {
    case OP_LOAD:
        return load_outcome(r);
    case OP_SAVE:
        return save_outcome(r, op->new_revision);
    case OP_LOAD_EVENTS:
        return events_outcome(r);
    default:
        return delete_outcome(r);
    }
}

static bool op_resend(store_op *op);

/* Redis lost the save script (SCRIPT FLUSH, a failover to a server that
 * never saw it): nothing ran. Load it again and resend the same command
 * behind it, once; Redis runs them in order on this connection. */
static bool noscript(const store_op *op, const redisReply *r)
{
    return op->kind == OP_SAVE && r != NULL && r->type == REDIS_REPLY_ERROR &&
           strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Called by hiredis with the reply, or with NULL when the connection goes
 * away; ac->data is NULL once the store has let go of this connection. */
static void op_replied(redisAsyncContext *ac, void *reply, void *privdata)
{
    store *s = ac->data;
    if (s == NULL)
        return;
    store_op *op = inflight_find(s, (uintptr_t)privdata);
    if (op == NULL)
        return;
    if (noscript(op, reply) && !op->reloaded && op_resend(op))
        return;
    outcome o = reply_outcome(op, reply);
    if (o.bad)
        log_warn("store.bad_data", "op=%s reason=%s", op_kind_names[op->kind], o.bad);
    op_complete(op, o.st, o.doc, o.revision, reply);
    json_decref(o.doc);
}

static bool op_can_send(store_op *op)
{
    store *s = op->owner;
    if (s->state != CONN_READY || s->inflight.count >= (size_t)s->opt.max_pending) {
        op_refuse(op, STORE_UNAVAILABLE);
        return false;
    }
    op->id = s->next_id++;
    return true;
}

static void op_sent(store_op *op, int status)
{
    if (status != REDIS_OK) {
        op_refuse(op, STORE_UNAVAILABLE);
        return;
    }
    pending_start(&op->owner->inflight, &op->p, op_completed);
    pending_deadline_tv(&op->p, op->owner->op_timeout, STORE_TIMEOUT);
}

/* Sends the command, or refuses the operation when the store cannot. */
static void op_send(store_op *op, int argc, const char **argv, const size_t *lens)
{
    if (op_can_send(op))
        op_sent(op, redisAsyncCommandArgv(op->owner->ac, op_replied, (void *)op->id, argc, argv, lens));
}

/* Sends op->cmd, formatted by the caller and kept for a resend. */
static void op_send_formatted(store_op *op)
{
    if (op_can_send(op))
        op_sent(op, redisAsyncFormattedCommand(op->owner->ac, op_replied, (void *)op->id, op->cmd, op->cmd_len));
}

static void script_loaded(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    const redisReply *r = reply;
    if (ac->data != NULL && r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("store.redis_error", "op=script_load code=%s", error_code(r->str).s);
}

/* The resend gets a new id (the in-flight set stays in send order) and
 * keeps its deadline. False when it cannot go out (the op is then still
 * in flight, for the caller to complete). */
static bool op_resend(store_op *op)
{
    store *s = op->owner;
    const char *argv[] = {"SCRIPT", "LOAD", cas_script};
    const size_t lens[] = {6, 4, sizeof cas_script - 1};
    op->reloaded = true;
    log_info("store.script_reloaded", NULL);
    if (redisAsyncCommandArgv(s->ac, script_loaded, NULL, 3, argv, lens) != REDIS_OK)
        return false;
    op->id = s->next_id++;
    if (redisAsyncFormattedCommand(s->ac, op_replied, (void *)op->id, op->cmd, op->cmd_len) != REDIS_OK)
        return false;
    pending_requeue(&op->p);
    return true;
}

/* Connection cycle ------------------------------------------------------------*/

static void set_state(store *s, conn_state st)
{
    s->state = st;
    metrics_set(s->connected, st == CONN_READY ? 1 : 0);
}

static void schedule_reconnect(store *s)
{
    if (s->closing)
        return;
    s->attempts++;
    log_warn("store.reconnect", "attempt=%u delay_ms=%d", s->attempts, s->backoff_ms);
    timer_start(s->reconnect_ev, s->backoff_ms);
    s->backoff_ms = s->backoff_ms > s->opt.reconnect_max_ms / 2 ? s->opt.reconnect_max_ms
                                                                 : s->backoff_ms * 2;
}

/* Forgets the connection without touching it: hiredis frees it itself. */
static void conn_lost(store *s)
{
    s->ac = NULL;
    set_state(s, CONN_DOWN);
    evtimer_del(s->alive_ev);
    event_del(s->ping_ev);
    fail_inflight(s, STORE_UNAVAILABLE);
    schedule_reconnect(s);
}

/* Closes the connection on our initiative. redisAsyncFree rather than
 * redisAsyncDisconnect: the latter waits for every pending reply, which a
 * hung server never sends. Inside a hiredis callback the free is deferred
 * by hiredis until the callback returns. */
static void conn_drop(store *s)
{
    redisAsyncContext *ac = s->ac;
    ac->data = NULL;
    redisAsyncFree(ac);
    conn_lost(s);
}

static void conn_ready(store *s)
{
    evtimer_del(s->alive_ev);
    set_state(s, CONN_READY);
    s->backoff_ms = s->opt.reconnect_min_ms;
    s->attempts = 0;
    struct timeval every = ms_to_tv(s->opt.ping_interval_ms);
    event_add(s->ping_ev, &every);
    log_info("store.connected", "host=%s port=%d db=%d", log_quote(s->opt.host).s,
             s->opt.port, s->opt.db);
}

/* privdata names the handshake step; the PING, sent last, completes it. */
static void handshake_replied(redisAsyncContext *ac, void *reply, void *privdata)
{
    store *s = ac->data;
    const redisReply *r = reply;
    if (s == NULL || r == NULL)
        return;
    const char *step = privdata;
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("store.handshake_failed", "step=%s code=%s", step, error_code(r->str).s);
        conn_drop(s);
    } else if (strcmp(step, "script") == 0) {
        if (r->type != REDIS_REPLY_STRING || r->len != STORE_SHA_LEN) {
            log_warn("store.handshake_failed", "step=%s code=%s", step, log_quote("unexpected_reply").s);
            conn_drop(s);
            return;
        }
        memcpy(s->cas_sha, r->str, STORE_SHA_LEN);
        s->cas_sha[STORE_SHA_LEN] = '\0';
    } else if (strcmp(step, "ping") == 0) {
        conn_ready(s);
    }
}

static void send_handshake(store *s)
{
    if (s->opt.password) {
        const char *argv[] = {"AUTH", s->opt.password};
        redisAsyncCommandArgv(s->ac, handshake_replied, "auth", 2, argv, NULL);
    }
    if (s->opt.db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", s->opt.db);
        const char *argv[] = {"SELECT", db};
        redisAsyncCommandArgv(s->ac, handshake_replied, "select", 2, argv, NULL);
    }
    /* Saves go out as EVALSHA: the ~600-byte script is not sent, nor
     * hashed by Redis, on every save. */
    const char *load[] = {"SCRIPT", "LOAD", cas_script};
    const size_t load_lens[] = {6, 4, sizeof cas_script - 1};
    redisAsyncCommandArgv(s->ac, handshake_replied, "script", 3, load, load_lens);
    const char *argv[] = {"PING"};
    redisAsyncCommandArgv(s->ac, handshake_replied, "ping", 1, argv, NULL);
}

/* hiredis frees the context after a failed connect: never free it here. */
static void on_connect(const redisAsyncContext *ac, int status)
{
    store *s = ac->data;
    if (s == NULL)
        return;
    if (status != REDIS_OK) {
        log_warn("store.connect_failed", "error=%s", log_quote(ac->errstr).s);
        conn_lost(s);
    } else {
        send_handshake(s);
    }
}

/* hiredis has already failed the pending commands and frees the context
 * when this returns. */
static void on_disconnect(const redisAsyncContext *ac, int status)
{
    store *s = ac->data;
    if (s == NULL)
        return;
    log_warn("store.disconnected", "error=%s",
             log_quote(status == REDIS_OK ? "none" : ac->errstr).s);
    conn_lost(s);
}

static void conn_start(store *s)
{
    redisAsyncContext *ac = redisAsyncConnect(s->opt.host, s->opt.port);
    if (ac == NULL)
        mem_out_of_memory("store: redisAsyncConnect");
    if (ac->err) {
        log_warn("store.connect_failed", "error=%s", log_quote(ac->errstr).s);
        redisAsyncFree(ac);
        schedule_reconnect(s);
        return;
    }
    ac->data = s;
    redisLibeventAttach(ac, s->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->ac = ac;
    set_state(s, CONN_HANDSHAKE);
    timer_start(s->alive_ev, s->opt.op_timeout_ms);
}

static void reconnect_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    conn_start(arg);
}

static void alive_deadline_passed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    store *s = arg;
    log_warn("store.unresponsive", "state=%s timeout_ms=%d",
             s->state == CONN_READY ? "ready" : "handshake", s->opt.op_timeout_ms);
    conn_drop(s);
}

static void ping_replied(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    store *s = ac->data;
    if (s != NULL && reply != NULL)
        evtimer_del(s->alive_ev);
}

static void ping_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    store *s = arg;
    if (evtimer_pending(s->alive_ev, NULL))
        return;
    const char *argv[] = {"PING"};
    if (redisAsyncCommandArgv(s->ac, ping_replied, NULL, 1, argv, NULL) == REDIS_OK)
        timer_start(s->alive_ev, s->opt.op_timeout_ms);
}

/* Lifecycle -------------------------------------------------------------------*/

static const conf_key store_conf_keys[] = {
    CONF_KEY(store_options, "host", CONF_HOST, host, "127.0.0.1"),
    CONF_KEY_INT(store_options, "port", port, 1, 65535, "6379"),
    CONF_KEY(store_options, "password", CONF_STRING, password, ""),
    CONF_KEY_INT(store_options, "db", db, 0, 15, "0"),
    CONF_KEY_INT(store_options, "op_timeout_ms", op_timeout_ms, 1, 60000, "250"),
    CONF_KEY_INT(store_options, "reconnect_min_ms", reconnect_min_ms, 1, 60000, "100"),
    CONF_KEY_INT(store_options, "reconnect_max_ms", reconnect_max_ms, 1, 600000, "5000"),
    CONF_KEY_INT(store_options, "ping_interval_ms", ping_interval_ms, 10, 600000, "1000"),
    CONF_KEY_INT(store_options, "max_pending", max_pending, 1, 1000000, "10000"),
};

/* The backoff runs from reconnect_min_ms up to reconnect_max_ms. */
static const conf_order store_conf_orders[] = {{"reconnect_min_ms", "reconnect_max_ms", NULL}};

const conf_section store_config = CONF_SECTION_ORDERED("redis", store_conf_keys, store_conf_orders);

void store_options_default(store_options *opt)
{
    memset(opt, 0, sizeof *opt);
    conf_section_defaults(&store_config, opt);
}

static void register_metrics(store *s)
{
    for (int k = 0; k < OP_KINDS; k++) {
        for (int st = 0; st < STORE_STATUSES; st++) {
            char labels[64];
            snprintf(labels, sizeof labels, "op=\"%s\",result=\"%s\"", op_kind_names[k],
                     store_status_name((store_status)st));
            s->ops_total[k][st] = metrics_counter(
                "cardline_store_ops_total", "Session store operations by operation and result.",
                labels);
        }
    }
    s->connected = metrics_gauge("cardline_store_connected",
                                 "1 while the session store's Redis connection is ready.", NULL);
}

static void free_password(char *pw)
{
    if (pw) {
        explicit_bzero(pw, strlen(pw));
        free(pw);
    }
}

static void store_release(store *s)
{
    if (s->reconnect_ev)
        event_free(s->reconnect_ev);
    if (s->ping_ev)
        event_free(s->ping_ev);
    if (s->alive_ev)
        event_free(s->alive_ev);
    free((char *)s->opt.host);
    free_password((char *)s->opt.password);
    store_compact_free(&s->doc_text);
    free(s);
}

store *store_new(struct event_base *base, const store_options *opt)
{
    /* [redis]'s table refuses anything else at load. */
    if (opt->host == NULL || opt->op_timeout_ms < 1 || opt->reconnect_min_ms < 1 ||
        opt->reconnect_max_ms < opt->reconnect_min_ms || opt->ping_interval_ms < 1 || opt->max_pending < 1) {
        log_error("store.option_invalid", NULL);
        return NULL;
    }
    store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->base = base;
    s->opt = *opt;
    pending_set_init(&s->inflight, base);
    pending_set_init(&s->refused, base);
    s->opt.host = strdup(s->opt.host);
    s->opt.password = opt->password && *opt->password ? strdup(opt->password) : NULL;
    s->reconnect_ev = evtimer_new(base, reconnect_due, s);
    s->ping_ev = event_new(base, -1, EV_PERSIST, ping_due, s);
    s->alive_ev = evtimer_new(base, alive_deadline_passed, s);
    if (!s->opt.host || (opt->password && *opt->password && !s->opt.password) || !s->reconnect_ev ||
        !s->ping_ev || !s->alive_ev) {
        store_release(s);
        return NULL;
    }
    /* Every operation has the same deadline: a common timeout keeps them in
     * a queue (O(1) add and delete) instead of the timer heap. */
    struct timeval op_tv = ms_to_tv(s->opt.op_timeout_ms);
    s->op_timeout = event_base_init_common_timeout(base, &op_tv);
    if (!s->op_timeout) {
        store_release(s);
        return NULL;
    }
    s->next_id = 1;
    s->backoff_ms = s->opt.reconnect_min_ms;
    register_metrics(s);
    set_state(s, CONN_DOWN);
    conn_start(s);
    return s;
}

void store_free(store *s)
{
    if (s == NULL)
        return;
    s->closing = true;
    if (s->ac)
        conn_drop(s);
    pending_complete_all(&s->refused, OP_AS_REFUSED);
    store_release(s);
}

bool store_connected(const store *s)
{
    return s->state == CONN_READY;
}

/* Operations ------------------------------------------------------------------*/

/* HMGET of the revision and the document, and of the note when the op
 * reads it: one round trip either way. */
static void load_send(store_op *op, const char *id)
{
    if (!valid_id(id)) {
        log_warn("store.invalid_request", "op=load reason=id");
        op_refuse(op, STORE_BAD_DATA);
        return;
    }
    char key[STORE_KEY_SIZE];
    size_t key_len = session_key(key, id);
    const char *argv[] = {"HMGET", key, "rev", "doc", "note"};
    const size_t lens[] = {5, key_len, 3, 3, 4};
    op_send(op, op->noted ? 5 : 4, argv, lens);
}

void store_load(store *s, const char *id, store_load_cb *cb, void *arg)
{
    store_op *op = op_new(s, OP_LOAD, arg);
    op->cb.load = cb;
    load_send(op, id);
}

void store_load_noted(store *s, const char *id, store_load_noted_cb *cb, void *arg)
{
    store_op *op = op_new(s, OP_LOAD, arg);
    op->cb.noted = cb;
    op->noted = true;
    load_send(op, id);
}

/* Writes the note only beside an existing session, so it never makes a
 * key without a TTL; it then expires with the session. */
static const char note_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'note', ARGV[1])\n"
    "return 1\n";

/* A note travels through store_command: the caller's callback and argument. */
typedef struct {
    store_delete_cb *cb;   /* the caller's */
    void *arg;             /* its argument */
} note_op;

static void on_noted(store_status st, const redisReply *reply, void *arg)
{
    note_op n = *(note_op *)arg;
    free(arg);
    if (st == STORE_OK && reply->type == REDIS_REPLY_ERROR) {
        log_warn("store.redis_error", "op=note code=%s", error_code(reply->str).s);
        st = STORE_UNAVAILABLE;
    } else if (st == STORE_OK) {
        st = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1 ? STORE_OK : STORE_NOT_FOUND;
    }
    n.cb(st, n.arg);
}

static bool note_ok(const char *note)
{
    size_t len = note ? strnlen(note, STORE_MAX_NOTE_BYTES + 1) : 0;
    if (len == 0 || len > STORE_MAX_NOTE_BYTES)
        return false;
    for (size_t i = 0; i < len; i++)
        if (note[i] < ' ' || note[i] > '~')
            return false;
    return true;
}

void store_note(store *s, const char *id, const char *note, store_delete_cb *cb, void *arg)
{
    note_op *n = mem_calloc(1, sizeof *n);
    n->cb = cb;
    n->arg = arg;
    if (!valid_id(id) || !note_ok(note)) {
        log_warn("store.invalid_request", "op=note reason=%s", valid_id(id) ? "note" : "id");
        store_op *op = op_new(s, OP_COMMAND, n);
        op->cb.reply = on_noted;
        op_refuse(op, STORE_BAD_DATA);
        return;
    }
    char key[STORE_KEY_SIZE];
    session_key(key, id);
    const char *argv[] = {"EVAL", note_script, "1", key, note};
    store_command(s, 5, argv, NULL, on_noted, n);
}

static const char *events_problem(const store_events *ev)
{
    if (ev->count > STORE_MAX_SAVE_EVENTS || (ev->count > 0 && ev->items == NULL))
        return "event_count";
    if (ev->keep < 0 || ev->keep > STORE_MAX_EVENTS_KEPT)
        return "event_keep";
    for (size_t i = 0; i < ev->count; i++) {
        const char *text = ev->items[i];
        size_t len = text ? strnlen(text, STORE_MAX_EVENT_BYTES + 1) : 0;
        /* Events come back as JSON strings: only UTF-8 is stored. */
        if (text == NULL || len > STORE_MAX_EVENT_BYTES || !utf8_valid(text))
            return "event";
    }
    return NULL;
}

/* Checks what can be checked before Redis is asked; returns the reason the
 * request is refused, or NULL. */
static const char *save_request_problem(const char *id, json_t *doc, uint64_t expected, int ttl_s,
                                        const store_events *events)
{
    if (!valid_id(id))
        return "id";
    if (!json_is_object(doc))
        return "document_not_object";
    if (expected == UINT64_MAX)
        return "revision";
    if (ttl_s <= 0 || ttl_s > STORE_MAX_TTL_S)
        return "ttl";
    return events ? events_problem(events) : NULL;
}

void store_save(store *s, const char *id, json_t *doc, uint64_t expected_revision,
                int ttl_s, const store_events *events, store_save_cb *cb, void *arg)
{
    store_op *op = op_new(s, OP_SAVE, arg);
    op->cb.save = cb;
    const char *problem = save_request_problem(id, doc, expected_revision, ttl_s, events);
    if (!problem && !store_compact_dump(&s->doc_text, doc, STORE_MAX_DOC_BYTES))
        problem = "document_size";
    if (problem) {
        log_warn("store.invalid_request", "op=save reason=%s", problem);
        op_refuse(op, STORE_BAD_DATA);
        return;
    }
    op->new_revision = expected_revision + 1;
    char key[STORE_KEY_SIZE], ekey[STORE_KEY_SIZE];
    char expected[24], next[24], ttl[16], keep[16] = "";
    snprintf(expected, sizeof expected, "%" PRIu64, expected_revision);
    snprintf(next, sizeof next, "%" PRIu64, op->new_revision);
    snprintf(ttl, sizeof ttl, "%d", ttl_s);
    if (events)
        snprintf(keep, sizeof keep, "%d", events->keep);
    size_t key_len = session_key(key, id);
    size_t ekey_len = events_key(ekey, id);
    const char *argv[STORE_SAVE_FIXED_ARGS + STORE_MAX_SAVE_EVENTS] = {
        "EVALSHA", s->cas_sha, "2", key, ekey, expected, next, s->doc_text.data, ttl, keep};
    size_t lens[STORE_SAVE_FIXED_ARGS + STORE_MAX_SAVE_EVENTS] = {
        7, STORE_SHA_LEN, 1, key_len, ekey_len,
        strlen(expected), strlen(next), s->doc_text.len, strlen(ttl), strlen(keep)};
    int argc = STORE_SAVE_FIXED_ARGS;
    for (size_t i = 0; events && i < events->count; i++, argc++) {
        argv[argc] = events->items[i];
        lens[argc] = strlen(events->items[i]);
    }
    int len = redisFormatCommandArgv(&op->cmd, argc, argv, lens);
    if (len < 0)
        mem_out_of_memory("store: redisFormatCommandArgv");
    op->cmd_len = (size_t)len;
    op_send_formatted(op);
}

void store_load_events(store *s, const char *id, store_events_cb *cb, void *arg)
{
    store_op *op = op_new(s, OP_LOAD_EVENTS, arg);
    op->cb.events = cb;
    if (!valid_id(id)) {
        log_warn("store.invalid_request", "op=load_events reason=id");
        op_refuse(op, STORE_BAD_DATA);
        return;
    }
    char key[STORE_KEY_SIZE], ekey[STORE_KEY_SIZE], first[16];
    size_t key_len = session_key(key, id);
    size_t ekey_len = events_key(ekey, id);
    snprintf(first, sizeof first, "%d", -STORE_MAX_EVENTS_KEPT);
    const char *argv[] = {"EVAL", events_script, "2", key, ekey, first};
    const size_t lens[] = {4, sizeof events_script - 1, 1, key_len, ekey_len, strlen(first)};
    op_send(op, 6, argv, lens);
}

void store_delete(store *s, const char *id, store_delete_cb *cb, void *arg)
{
    store_op *op = op_new(s, OP_DELETE, arg);
    op->cb.del = cb;
    if (!valid_id(id)) {
        log_warn("store.invalid_request", "op=delete reason=id");
        op_refuse(op, STORE_BAD_DATA);
        return;
    }
    char key[STORE_KEY_SIZE], ekey[STORE_KEY_SIZE];
    size_t key_len = session_key(key, id);
    size_t ekey_len = events_key(ekey, id);
    const char *argv[] = {"DEL", key, ekey};
    const size_t lens[] = {3, key_len, ekey_len};
    op_send(op, 3, argv, lens);
}

void store_command(store *s, int argc, const char **argv, const size_t *argvlen,
                   store_reply_cb *cb, void *arg)
{
    store_op *op = op_new(s, OP_COMMAND, arg);
    op->cb.reply = cb;
    if (argc < 1 || argc > STORE_MAX_COMMAND_ARGS || argv == NULL) {
        log_warn("store.invalid_request", "op=command reason=argc");
        op_refuse(op, STORE_BAD_DATA);
        return;
    }
    for (int i = 0; i < argc; i++) {
        if (argv[i] == NULL || (argvlen && argvlen[i] > STORE_MAX_COMMAND_BYTES) ||
            (!argvlen && strnlen(argv[i], STORE_MAX_COMMAND_BYTES + 1) > STORE_MAX_COMMAND_BYTES)) {
            log_warn("store.invalid_request", "op=command reason=argument");
            op_refuse(op, STORE_BAD_DATA);
            return;
        }
    }
    op_send(op, argc, argv, argvlen);
}
