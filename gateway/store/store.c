/* store — owns the hiredis connections to the Redis master (the main lane
 * and, with replicas configured, the durable lane whose writes a WAIT
 * follows) and every operation in flight on them: the connect, handshake,
 * ping and reconnect cycle, where the master is (sentinel.c asks), each
 * operation's deadline (kept, with the in-flight and refused sets, by
 * core/pending), the matching of replies to callbacks, and the two
 * keys of a session (its document and its event list). Replies are
 * matched by operation id (hiredis privdata), never by pointer, because a
 * reply may arrive after its operation timed out. Nothing here logs a key,
 * a document or a password. */
#include "store.h"

#include "compact.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "pending.h"
#include "sentinel.h"
#include "utf8.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
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

typedef enum { OP_LOAD, OP_SAVE, OP_DELETE, OP_LOAD_EVENTS, OP_COMMAND, OP_DURABLE, OP_KINDS } op_kind;

static const char *const op_kind_names[OP_KINDS] = {"load", "save", "delete", "load_events",
                                                      "command", "durable"};

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
    store_durable_cb *durable;
} op_callback; /* the member named by the operation's kind */

typedef struct store_op store_op;
typedef struct lane lane;

struct store_op {
    store *owner;              /* the store the operation belongs to */
    lane *lane;                /* the connection it goes out on */
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
    bool waited;               /* durable: a WAIT covers it */
    redisReply *held;          /* durable: a copy of its reply, kept until the WAIT answers */
    int acked;                 /* durable: replicas that acknowledged, from the WAIT */
};

/* One connection to the master and what is in flight on it. The main
 * lane carries every operation but durable commands; the durable lane,
 * opened only with replicas > 0, carries those and the WAITs behind them,
 * so a WAIT never holds up a session operation. Both follow the master. */
struct lane {
    store *owner;                /* the store it belongs to */
    const char *name;            /* "main" or "durable", for logs */
    redisAsyncContext *ac;       /* current connection, NULL while down */
    conn_state state;            /* where the connection cycle stands */
    int backoff_ms;              /* delay before the next reconnect attempt */
    unsigned attempts;           /* reconnect attempts since the last success */
    uintptr_t next_id;           /* id of the next command sent, never 0 */
    pending_set inflight;        /* sent, unanswered operations in id order */
    struct event *reconnect_ev;  /* starts the next connect attempt */
    struct event *ping_ev;       /* persistent: sends a PING while ready */
    struct event *alive_ev;      /* deadline of the handshake or of the last PING */
    const struct timeval *op_timeout; /* each operation's deadline, a libevent common timeout */
    int ping_timeout_ms;         /* a PING's deadline: on the durable lane it may queue
                                  * behind one WAIT, so op_timeout_ms + replica_wait_ms */
    bool waits;                  /* durable lane: each command is covered by a WAIT */
    uintptr_t wait_id;           /* the WAIT in flight (its id), 0 = none */
    bool wait_needed;            /* commands went out after that WAIT */
    bool awaiting_master;        /* down until the Sentinels name the master */
};

struct store {
    struct event_base *base;     /* the main loop everything runs on */
    store_options opt;           /* copy; its strings owned */
    lane main;                   /* every operation but durable commands */
    lane durable;                /* durable commands, when opt.replicas > 0 */
    bool closing;                /* store_free running: no reconnects */
    pending_set refused;         /* refused before sending, reported on a later turn */
    sentinel *sentinels;         /* asks where the master is; NULL without [redis] sentinels */
    char master_host[SENTINEL_HOST_MAX]; /* with Sentinels: the master, "" = ask */
    int master_port;             /* its port */
    char ready_host[SENTINEL_HOST_MAX];  /* where the main lane was last ready, to count failovers */
    int ready_port;              /* its port */
    metrics_series *ops_total[OP_KINDS][STORE_STATUSES]; /* per op and result */
    metrics_series *connected;   /* gauge: 1 while store_connected */
    metrics_series *failovers;   /* the master the main lane reached changed */
    metrics_series *replica_wait[2]; /* durable commands whose WAIT came back ok, short */
    char cas_sha[STORE_SHA_LEN + 1]; /* the save script's SHA1, from SCRIPT LOAD */
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
static store_op *inflight_find(lane *ln, uintptr_t id)
{
    for (pending_op *p = TAILQ_FIRST(&ln->inflight.ops); p; p = TAILQ_NEXT(p, link)) {
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
    redisReply *held = op->held;
    bool waited = op->waited;
    store_durability d = {.acked = op->acked,
                          .replicated = st == STORE_OK && (!waited || op->acked >= s->opt.replicas)};
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
    case OP_DURABLE:
        if (waited && st == STORE_OK && reply->type != REDIS_REPLY_ERROR)
            metrics_inc(s->replica_wait[d.replicated ? 0 : 1]);
        cb.durable(st, st == STORE_OK ? reply : NULL, d, arg);
        if (held)
            freeReplyObject(held);
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

static void fail_inflight(lane *ln, store_status st)
{
    pending_complete_all(&ln->inflight, (int)st);
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
    op->lane = &s->main;
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
    if (op->kind == OP_COMMAND || op->kind == OP_DURABLE)
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
static void reask(store *s, const char *why);
static void wait_replied(lane *ln, const redisReply *r);

/* Redis lost the save script (SCRIPT FLUSH, a failover to a server that
 * never saw it): nothing ran. Load it again and resend the same command
 * behind it, once; Redis runs them in order on this connection. */
static bool noscript(const store_op *op, const redisReply *r)
{
    return op->kind == OP_SAVE && r != NULL && r->type == REDIS_REPLY_ERROR &&
           strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Errors of a server that is not (or not yet) a working master: a replica
 * after a failover, one still loading, one whose master is down. */
static const char *not_master_error(const redisReply *r)
{
    static const char *const codes[] = {"READONLY", "LOADING", "MASTERDOWN"};
    if (r == NULL || r->type != REDIS_REPLY_ERROR)
        return NULL;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strncmp(r->str, codes[i], strlen(codes[i])) == 0)
            return codes[i];
    return NULL;
}

/* A deep copy, freed with freeReplyObject: hiredis frees a reply when its
 * callback returns, and a durable command's must wait for its WAIT. */
static redisReply *reply_copy(const redisReply *r)
{
    redisReply *c = mem_calloc(1, sizeof *c);
    c->type = r->type;
    c->integer = r->integer;
    c->len = r->len;
    if (r->str) {
        c->str = mem_malloc(r->len + 1);
        memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
    }
    if (r->elements > 0) {
        c->element = mem_calloc(r->elements, sizeof *c->element);
        c->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++)
            c->element[i] = reply_copy(r->element[i]);
    }
    return c;
}

/* Called by hiredis with the reply, or with NULL when the connection goes
 * away; ac->data is NULL once the store has let go of this connection. */
static void op_replied(redisAsyncContext *ac, void *reply, void *privdata)
{
    lane *ln = ac->data;
    if (ln == NULL)
        return;
    if (ln->wait_id != 0 && (uintptr_t)privdata == ln->wait_id) {
        wait_replied(ln, reply);
        return;
    }
    store_op *op = inflight_find(ln, (uintptr_t)privdata);
    if (op == NULL)
        return;
    if (noscript(op, reply) && !op->reloaded && op_resend(op))
        return;
    const redisReply *r = reply;
    if (op->waited && r != NULL && r->type != REDIS_REPLY_ERROR) {
        op->held = reply_copy(r);
        return;
    }
    outcome o = reply_outcome(op, r);
    if (o.bad)
        log_warn("store.bad_data", "op=%s reason=%s", op_kind_names[op->kind], o.bad);
    store *s = ln->owner;
    op_complete(op, o.st, o.doc, o.revision, r);
    json_decref(o.doc);
    const char *code = not_master_error(r);
    if (code)
        reask(s, code);
}

static bool op_can_send(store_op *op)
{
    lane *ln = op->lane;
    if (ln->state != CONN_READY || ln->inflight.count >= (size_t)op->owner->opt.max_pending) {
        op_refuse(op, STORE_UNAVAILABLE);
        return false;
    }
    op->id = ln->next_id++;
    return true;
}

static bool op_sent(store_op *op, int status)
{
    if (status != REDIS_OK) {
        op_refuse(op, STORE_UNAVAILABLE);
        return false;
    }
    pending_start(&op->lane->inflight, &op->p, op_completed);
    pending_deadline_tv(&op->p, op->lane->op_timeout, STORE_TIMEOUT);
    return true;
}

/* Sends the command, or refuses the operation when the store cannot;
 * true when it went out. */
static bool op_send(store_op *op, int argc, const char **argv, const size_t *lens)
{
    return op_can_send(op) &&
           op_sent(op, redisAsyncCommandArgv(op->lane->ac, op_replied, (void *)op->id, argc, argv, lens));
}

/* Sends op->cmd, formatted by the caller and kept for a resend. */
static void op_send_formatted(store_op *op)
{
    if (op_can_send(op))
        op_sent(op, redisAsyncFormattedCommand(op->lane->ac, op_replied, (void *)op->id, op->cmd, op->cmd_len));
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
    lane *ln = op->lane;
    const char *argv[] = {"SCRIPT", "LOAD", cas_script};
    const size_t lens[] = {6, 4, sizeof cas_script - 1};
    op->reloaded = true;
    log_info("store.script_reloaded", NULL);
    if (redisAsyncCommandArgv(ln->ac, script_loaded, NULL, 3, argv, lens) != REDIS_OK)
        return false;
    op->id = ln->next_id++;
    if (redisAsyncFormattedCommand(ln->ac, op_replied, (void *)op->id, op->cmd, op->cmd_len) != REDIS_OK)
        return false;
    pending_requeue(&op->p);
    return true;
}

/* WAIT ---------------------------------------------------------------------------*/

/* WAIT covers every earlier write of its connection, so one WAIT answers
 * for all the durable commands sent before it. */
static void wait_send(lane *ln)
{
    char replicas[16], ms[16];
    snprintf(replicas, sizeof replicas, "%d", ln->owner->opt.replicas);
    snprintf(ms, sizeof ms, "%d", ln->owner->opt.replica_wait_ms);
    const char *argv[] = {"WAIT", replicas, ms};
    uintptr_t id = ln->next_id++;
    ln->wait_needed = false;
    if (redisAsyncCommandArgv(ln->ac, op_replied, (void *)id, 3, argv, NULL) == REDIS_OK)
        ln->wait_id = id;
}

/* A durable command just went out: covered by the next WAIT. */
static void wait_cover(lane *ln)
{
    if (ln->wait_id != 0)
        ln->wait_needed = true;
    else
        wait_send(ln);
}

/* Ends the durable commands sent before this WAIT, oldest first (each
 * callback may start more, which go out behind it). */
static void wait_replied(lane *ln, const redisReply *r)
{
    if (r == NULL) /* the connection went: conn_lost fails what is in flight */
        return;
    uintptr_t upto = ln->wait_id;
    ln->wait_id = 0;
    int acked = 0;
    if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        acked = r->integer > INT_MAX ? INT_MAX : (int)r->integer;
    else if (r->type == REDIS_REPLY_ERROR)
        log_warn("store.redis_error", "op=wait code=%s", error_code(r->str).s);
    pending_op *p;
    while ((p = TAILQ_FIRST(&ln->inflight.ops)) != NULL) {
        store_op *op = pending_owner(p, store_op, p);
        if (op->id > upto || op->held == NULL)
            break;
        op->acked = acked;
        op_complete(op, STORE_OK, NULL, 0, op->held);
    }
    if (ln->ac && ln->wait_id == 0 && ln->wait_needed)
        wait_send(ln);
}

/* Connection cycle ------------------------------------------------------------*/

/* The durable lane is left unset (no owner) without replicas. */
static bool lane_used(const store *s, const lane *ln)
{
    return ln == &s->main || s->opt.replicas > 0;
}

static void set_state(lane *ln, conn_state st)
{
    ln->state = st;
    metrics_set(ln->owner->connected, store_connected(ln->owner) ? 1 : 0);
}

static void schedule_reconnect(lane *ln)
{
    if (ln->owner->closing)
        return;
    ln->attempts++;
    log_warn("store.reconnect", "attempt=%u delay_ms=%d lane=%s", ln->attempts, ln->backoff_ms, ln->name);
    timer_start(ln->reconnect_ev, ln->backoff_ms);
    int max = ln->owner->opt.reconnect_max_ms;
    ln->backoff_ms = ln->backoff_ms > max / 2 ? max : ln->backoff_ms * 2;
}

/* Forgets the connection without touching it: hiredis frees it itself.
 * With Sentinels the master is asked for again before the next connect:
 * a lost master may have been replaced. */
static void conn_lost(lane *ln)
{
    ln->ac = NULL;
    set_state(ln, CONN_DOWN);
    evtimer_del(ln->alive_ev);
    event_del(ln->ping_ev);
    ln->wait_id = 0;
    ln->wait_needed = false;
    if (ln->owner->sentinels)
        ln->owner->master_host[0] = '\0';
    fail_inflight(ln, STORE_UNAVAILABLE);
    schedule_reconnect(ln);
}

/* Closes the connection on our initiative. redisAsyncFree rather than
 * redisAsyncDisconnect: the latter waits for every pending reply, which a
 * hung server never sends. Inside a hiredis callback the free is deferred
 * by hiredis until the callback returns. */
static void conn_drop(lane *ln)
{
    redisAsyncContext *ac = ln->ac;
    ac->data = NULL;
    redisAsyncFree(ac);
    conn_lost(ln);
}

static void lanes_drop(store *s)
{
    if (s->main.ac)
        conn_drop(&s->main);
    if (s->durable.ac)
        conn_drop(&s->durable);
}

/* The server is not a working master (a replica's ROLE, READONLY,
 * LOADING, MASTERDOWN): with Sentinels, drop both lanes and ask where the
 * master is now. Without, nothing changes. */
static void reask(store *s, const char *why)
{
    if (s->sentinels == NULL)
        return;
    log_warn("store.reask", "why=%s", log_quote(why).s);
    lanes_drop(s);
}

static void conn_ready(lane *ln)
{
    store *s = ln->owner;
    evtimer_del(ln->alive_ev);
    set_state(ln, CONN_READY);
    ln->backoff_ms = s->opt.reconnect_min_ms;
    ln->attempts = 0;
    struct timeval every = ms_to_tv(s->opt.ping_interval_ms);
    event_add(ln->ping_ev, &every);
    const char *host = s->sentinels ? s->master_host : s->opt.host;
    int port = s->sentinels ? s->master_port : s->opt.port;
    if (ln == &s->main) {
        if (s->ready_host[0] && (strcmp(s->ready_host, host) != 0 || s->ready_port != port))
            metrics_inc(s->failovers);
        snprintf(s->ready_host, sizeof s->ready_host, "%s", host);
        s->ready_port = port;
    }
    log_info("store.connected", "host=%s port=%d db=%d lane=%s", log_quote(host).s, port, s->opt.db,
             ln->name);
}

/* ROLE's first element names what the server is. */
static bool role_is_master(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0]->type == REDIS_REPLY_STRING &&
           strcmp(r->element[0]->str, "master") == 0;
}

/* privdata names the handshake step; the PING, sent last, completes it. */
static void handshake_replied(redisAsyncContext *ac, void *reply, void *privdata)
{
    lane *ln = ac->data;
    const redisReply *r = reply;
    if (ln == NULL || r == NULL)
        return;
    const char *step = privdata;
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("store.handshake_failed", "step=%s code=%s", step, error_code(r->str).s);
        conn_drop(ln);
    } else if (strcmp(step, "role") == 0) {
        if (!role_is_master(r)) {
            log_warn("store.not_master", "lane=%s", ln->name);
            reask(ln->owner, "role");
        }
    } else if (strcmp(step, "script") == 0) {
        if (r->type != REDIS_REPLY_STRING || r->len != STORE_SHA_LEN) {
            log_warn("store.handshake_failed", "step=%s code=%s", step, log_quote("unexpected_reply").s);
            conn_drop(ln);
            return;
        }
        memcpy(ln->owner->cas_sha, r->str, STORE_SHA_LEN);
        ln->owner->cas_sha[STORE_SHA_LEN] = '\0';
    } else if (strcmp(step, "ping") == 0) {
        conn_ready(ln);
    }
}

static void send_handshake(lane *ln)
{
    store *s = ln->owner;
    if (s->opt.password) {
        const char *argv[] = {"AUTH", s->opt.password};
        redisAsyncCommandArgv(ln->ac, handshake_replied, "auth", 2, argv, NULL);
    }
    if (s->opt.db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", s->opt.db);
        const char *argv[] = {"SELECT", db};
        redisAsyncCommandArgv(ln->ac, handshake_replied, "select", 2, argv, NULL);
    }
    /* A Sentinel's answer may be stale (the failover is still running):
     * the server itself says whether it is the master. */
    if (s->sentinels) {
        const char *argv[] = {"ROLE"};
        redisAsyncCommandArgv(ln->ac, handshake_replied, "role", 1, argv, NULL);
    }
    /* Saves go out as EVALSHA: the ~600-byte script is not sent, nor
     * hashed by Redis, on every save. */
    const char *load[] = {"SCRIPT", "LOAD", cas_script};
    const size_t load_lens[] = {6, 4, sizeof cas_script - 1};
    redisAsyncCommandArgv(ln->ac, handshake_replied, "script", 3, load, load_lens);
    const char *argv[] = {"PING"};
    redisAsyncCommandArgv(ln->ac, handshake_replied, "ping", 1, argv, NULL);
}

/* hiredis frees the context after a failed connect: never free it here. */
static void on_connect(const redisAsyncContext *ac, int status)
{
    lane *ln = ac->data;
    if (ln == NULL)
        return;
    if (status != REDIS_OK) {
        log_warn("store.connect_failed", "error=%s lane=%s", log_quote(ac->errstr).s, ln->name);
        conn_lost(ln);
    } else {
        send_handshake(ln);
    }
}

/* hiredis has already failed the pending commands and frees the context
 * when this returns. */
static void on_disconnect(const redisAsyncContext *ac, int status)
{
    lane *ln = ac->data;
    if (ln == NULL)
        return;
    log_warn("store.disconnected", "error=%s lane=%s",
             log_quote(status == REDIS_OK ? "none" : ac->errstr).s, ln->name);
    conn_lost(ln);
}

static void conn_start(lane *ln)
{
    store *s = ln->owner;
    const char *host = s->opt.host;
    int port = s->opt.port;
    if (s->sentinels) {
        if (s->master_host[0] == '\0') {
            ln->awaiting_master = true;
            sentinel_ask(s->sentinels);
            return;
        }
        host = s->master_host;
        port = s->master_port;
    }
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (ac == NULL)
        mem_out_of_memory("store: redisAsyncConnect");
    if (ac->err) {
        log_warn("store.connect_failed", "error=%s lane=%s", log_quote(ac->errstr).s, ln->name);
        redisAsyncFree(ac);
        schedule_reconnect(ln);
        return;
    }
    ac->data = ln;
    redisLibeventAttach(ac, s->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    ln->ac = ac;
    set_state(ln, CONN_HANDSHAKE);
    timer_start(ln->alive_ev, s->opt.op_timeout_ms);
}

static void reconnect_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    conn_start(arg);
}

static void alive_deadline_passed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    lane *ln = arg;
    log_warn("store.unresponsive", "state=%s timeout_ms=%d lane=%s",
             ln->state == CONN_READY ? "ready" : "handshake",
             ln->state == CONN_READY ? ln->ping_timeout_ms : ln->owner->opt.op_timeout_ms, ln->name);
    conn_drop(ln);
}

static void ping_replied(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    lane *ln = ac->data;
    if (ln != NULL && reply != NULL)
        evtimer_del(ln->alive_ev);
}

static void ping_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    lane *ln = arg;
    if (evtimer_pending(ln->alive_ev, NULL))
        return;
    const char *argv[] = {"PING"};
    if (redisAsyncCommandArgv(ln->ac, ping_replied, NULL, 1, argv, NULL) == REDIS_OK)
        timer_start(ln->alive_ev, ln->ping_timeout_ms);
}

/* Sentinels ---------------------------------------------------------------------*/

static void master_set(store *s, const char *host, int port)
{
    snprintf(s->master_host, sizeof s->master_host, "%s", host);
    s->master_port = port;
}

/* The answer of a round of asking: the lanes waiting for it connect, or
 * back off when no Sentinel named a master. */
static void master_found(const char *host, int port, void *arg)
{
    store *s = arg;
    lane *lanes[] = {&s->main, &s->durable};
    if (!s->main.awaiting_master && !s->durable.awaiting_master)
        return; /* a +switch-master came first */
    if (host) {
        log_info("store.master_found", "host=%s port=%d", log_quote(host).s, port);
        master_set(s, host, port);
    }
    for (size_t i = 0; i < 2; i++) {
        lane *ln = lanes[i];
        if (!ln->awaiting_master)
            continue;
        ln->awaiting_master = false;
        if (host)
            conn_start(ln);
        else
            schedule_reconnect(ln);
    }
}

/* +switch-master for our master: both lanes move to the new one at once
 * (operations in flight end STORE_UNAVAILABLE); the handshake's ROLE
 * still checks it. */
static void master_switched(const char *host, int port, void *arg)
{
    store *s = arg;
    log_warn("store.switch_master", "host=%s port=%d", log_quote(host).s, port);
    if (s->main.state == CONN_READY && strcmp(s->master_host, host) == 0 && s->master_port == port)
        return;
    lanes_drop(s);
    master_set(s, host, port);
    lane *lanes[] = {&s->main, &s->durable};
    for (size_t i = 0; i < 2; i++) {
        lane *ln = lanes[i];
        if (!lane_used(s, ln))
            continue;
        evtimer_del(ln->reconnect_ev);
        ln->awaiting_master = false;
        ln->backoff_ms = s->opt.reconnect_min_ms;
        ln->attempts = 0;
        conn_start(ln);
    }
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
    CONF_KEY(store_options, "sentinels", CONF_IP_PORT_LIST, sentinels, ""),
    CONF_KEY_TEXT(store_options, "master_name", master_name, 1, 64, "cardline"),
    CONF_KEY(store_options, "sentinel_password", CONF_STRING, sentinel_password, ""),
    CONF_KEY_INT(store_options, "replicas", replicas, 0, 16, "0"),
    CONF_KEY_INT(store_options, "replica_wait_ms", replica_wait_ms, 1, 60000, "500"),
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
    s->failovers = metrics_counter("cardline_store_failovers_total",
                                   "Times the store found its master at a new address.", NULL);
    static const char *const results[2] = {"result=\"ok\"", "result=\"short\""};
    for (int i = 0; i < 2; i++)
        s->replica_wait[i] = metrics_counter(
            "cardline_store_replica_wait_total",
            "Durable writes by whether enough replicas acknowledged them in time.", results[i]);
}

static void free_password(char *pw)
{
    if (pw) {
        explicit_bzero(pw, strlen(pw));
        free(pw);
    }
}

static void lane_release(lane *ln)
{
    if (ln->reconnect_ev)
        event_free(ln->reconnect_ev);
    if (ln->ping_ev)
        event_free(ln->ping_ev);
    if (ln->alive_ev)
        event_free(ln->alive_ev);
}

static void store_release(store *s)
{
    lane_release(&s->main);
    lane_release(&s->durable);
    sentinel_free(s->sentinels);
    free((char *)s->opt.host);
    free((char *)s->opt.sentinels);
    free((char *)s->opt.master_name);
    free_password((char *)s->opt.password);
    free_password((char *)s->opt.sentinel_password);
    store_compact_free(&s->doc_text);
    free(s);
}

/* Every operation of a lane has the same deadline: a common timeout keeps
 * them in a queue (O(1) add and delete) instead of the timer heap. */
static bool lane_init(store *s, lane *ln, const char *name, int op_timeout_ms, int ping_timeout_ms)
{
    ln->owner = s;
    ln->ping_timeout_ms = ping_timeout_ms;
    ln->name = name;
    ln->next_id = 1;
    ln->backoff_ms = s->opt.reconnect_min_ms;
    pending_set_init(&ln->inflight, s->base);
    ln->reconnect_ev = evtimer_new(s->base, reconnect_due, ln);
    ln->ping_ev = event_new(s->base, -1, EV_PERSIST, ping_due, ln);
    ln->alive_ev = evtimer_new(s->base, alive_deadline_passed, ln);
    struct timeval op_tv = ms_to_tv(op_timeout_ms);
    ln->op_timeout = event_base_init_common_timeout(s->base, &op_tv);
    set_state(ln, CONN_DOWN);
    return ln->reconnect_ev && ln->ping_ev && ln->alive_ev && ln->op_timeout;
}

static char *copy_or_null(const char *text)
{
    return text && *text ? mem_strdup(text) : NULL;
}

/* What store_new cannot run with; [redis]'s table refuses it at load. */
static const char *options_problem(const store_options *opt)
{
    conf_ip_port sentinels[CONF_IP_PORT_LIST_MAX];
    int count;
    if (opt->host == NULL || opt->op_timeout_ms < 1 || opt->reconnect_min_ms < 1 ||
        opt->reconnect_max_ms < opt->reconnect_min_ms || opt->ping_interval_ms < 1 || opt->max_pending < 1)
        return "timers";
    if (opt->replicas < 0 || (opt->replicas > 0 && opt->replica_wait_ms < 1))
        return "replicas";
    if (opt->sentinels && *opt->sentinels &&
        (conf_ip_port_list_split(opt->sentinels, sentinels, &count) || opt->master_name == NULL || !*opt->master_name))
        return "sentinels";
    return NULL;
}

store *store_new(struct event_base *base, const store_options *opt)
{
    const char *problem = options_problem(opt);
    if (problem) {
        log_error("store.option_invalid", "reason=%s", problem);
        return NULL;
    }
    store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->base = base;
    s->opt = *opt;
    s->opt.host = mem_strdup(opt->host);
    s->opt.password = copy_or_null(opt->password);
    s->opt.sentinels = copy_or_null(opt->sentinels);
    s->opt.master_name = copy_or_null(opt->master_name);
    s->opt.sentinel_password = copy_or_null(opt->sentinel_password);
    pending_set_init(&s->refused, base);
    register_metrics(s);
    bool ok = lane_init(s, &s->main, "main", s->opt.op_timeout_ms, s->opt.op_timeout_ms);
    if (s->opt.replicas > 0) {
        ok = ok && lane_init(s, &s->durable, "durable", s->opt.op_timeout_ms + 2 * s->opt.replica_wait_ms,
                             s->opt.op_timeout_ms + s->opt.replica_wait_ms);
        s->durable.waits = true;
    }
    if (ok && s->opt.sentinels) {
        sentinel_options so = {
            .addresses = s->opt.sentinels,
            .master_name = s->opt.master_name,
            .password = s->opt.sentinel_password,
            .timeout_ms = s->opt.op_timeout_ms,
            .retry_ms = s->opt.reconnect_min_ms,
            .found = master_found,
            .switched = master_switched,
            .arg = s,
        };
        ok = (s->sentinels = sentinel_new(base, &so)) != NULL;
    }
    if (!ok) {
        store_release(s);
        return NULL;
    }
    conn_start(&s->main);
    if (s->opt.replicas > 0)
        conn_start(&s->durable);
    return s;
}

void store_free(store *s)
{
    if (s == NULL)
        return;
    s->closing = true;
    sentinel_free(s->sentinels);
    s->sentinels = NULL;
    lanes_drop(s);
    pending_complete_all(&s->refused, OP_AS_REFUSED);
    store_release(s);
}

bool store_connected(const store *s)
{
    return s->main.state == CONN_READY && (s->opt.replicas == 0 || s->durable.state == CONN_READY);
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

/* Refuses a command beyond the limits; true when it may go out. */
static bool command_valid(store_op *op, int argc, const char **argv, const size_t *argvlen)
{
    const char *kind = op_kind_names[op->kind];
    if (argc < 1 || argc > STORE_MAX_COMMAND_ARGS || argv == NULL) {
        log_warn("store.invalid_request", "op=%s reason=argc", kind);
        op_refuse(op, STORE_BAD_DATA);
        return false;
    }
    for (int i = 0; i < argc; i++) {
        if (argv[i] == NULL || (argvlen && argvlen[i] > STORE_MAX_COMMAND_BYTES) ||
            (!argvlen && strnlen(argv[i], STORE_MAX_COMMAND_BYTES + 1) > STORE_MAX_COMMAND_BYTES)) {
            log_warn("store.invalid_request", "op=%s reason=argument", kind);
            op_refuse(op, STORE_BAD_DATA);
            return false;
        }
    }
    return true;
}

void store_command(store *s, int argc, const char **argv, const size_t *argvlen,
                   store_reply_cb *cb, void *arg)
{
    store_op *op = op_new(s, OP_COMMAND, arg);
    op->cb.reply = cb;
    if (command_valid(op, argc, argv, argvlen))
        op_send(op, argc, argv, argvlen);
}

void store_command_durable(store *s, int argc, const char **argv, const size_t *argvlen,
                           store_durable_cb *cb, void *arg)
{
    store_op *op = op_new(s, OP_DURABLE, arg);
    op->cb.durable = cb;
    if (s->opt.replicas > 0)
        op->lane = &s->durable;
    if (!command_valid(op, argc, argv, argvlen) || !op_send(op, argc, argv, argvlen))
        return;
    if (op->lane->waits) {
        op->waited = true;
        wait_cover(op->lane);
    }
}
