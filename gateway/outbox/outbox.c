/* outbox — owns the stream `cl:outbox` (consumer group `cl:senders`), the
 * schedule `cl:ob:due` (a sorted set: entry id -> when it may next be
 * attempted, ms), the attempt counts `cl:ob:n` (a hash), the dead entries
 * `cl:outbox:dead` (a stream) and the dedupe keys `cl:ob:k:KEY`. Every
 * pending entry is in the schedule: while an attempt is open its score is
 * the lease's end, after a retry-later the backoff's end, so one query
 * finds retries that are due and attempts a crashed gateway left open.
 * Each step that touches several keys is one Lua script (atomic). Redis
 * operations run on the store's connection, each a core/pending op;
 * requests whose outbox was freed meanwhile are detached and only report
 * to their caller. */
#include "outbox.h"

#include "log.h"
#include "mem.h"
#include "walltime.h"
#include "metrics.h"
#include "pending.h"
#include "store.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <time.h>

#define OB_GROUP "cl:senders"
#define OB_DUE "cl:ob:due"
#define OB_ATTEMPTS "cl:ob:n"
#define OB_KEY_PREFIX "cl:ob:k:"
#define OB_MAX_CONSUMER 64
#define OB_MAX_ID 48

/* Adds one entry unless its dedupe key already names one. KEYS: stream,
 * dedupe key ("" = none). ARGV: kind, payload, created (ms), ttl. */
static const char add_script[] =
    "if KEYS[2] ~= '' then\n"
    "  local old = redis.call('GET', KEYS[2])\n"
    "  if old then return {0, old} end\n"
    "end\n"
    "local id = redis.call('XADD', KEYS[1], '*', 'kind', ARGV[1], 'payload', ARGV[2],\n"
    "                      'created', ARGV[3])\n"
    "if KEYS[2] ~= '' then redis.call('SET', KEYS[2], id, 'EX', ARGV[4]) end\n"
    "return {1, id}\n";

/* Takes up to ARGV[3] entries for this consumer: first those whose time
 * has come (retries due, leases run out), then new ones; each gets the
 * lease's end as its schedule and one more attempt. KEYS: stream,
 * schedule, counts. ARGV: group, consumer, count, now, lease end.
 * Returns {pending entries, {id, attempt, fields}...}. */
static const char take_script[] =
    "local out = {0}\n"
    "local function take(id, fields)\n"
    "  local n = redis.call('HINCRBY', KEYS[3], id, 1)\n"
    "  redis.call('ZADD', KEYS[2], ARGV[5], id)\n"
    "  out[#out + 1] = {id, n, fields}\n"
    "end\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4], 'LIMIT', 0, ARGV[3])\n"
    "for _, id in ipairs(due) do\n"
    "  local e = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)\n"
    "  if e[1] then take(e[1][1], e[1][2])\n"
    "  else redis.call('ZREM', KEYS[2], id); redis.call('HDEL', KEYS[3], id) end\n"
    "end\n"
    "local room = tonumber(ARGV[3]) - (#out - 1)\n"
    "if room > 0 then\n"
    "  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', room,\n"
    "                       'STREAMS', KEYS[1], '>')\n"
    "  if r then for _, e in ipairs(r[1][2]) do take(e[1], e[2]) end end\n"
    "end\n"
    "out[1] = redis.call('XLEN', KEYS[1])\n"
    "return out\n";

/* Ends an entry: acknowledged, removed, forgotten by the schedule; when
 * ARGV[3] is not empty it is first copied to the dead stream. KEYS:
 * stream, schedule, counts, dead stream. ARGV: group, id, reason, kind,
 * payload, created, attempts. */
static const char end_script[] =
    "if ARGV[3] ~= '' then\n"
    "  redis.call('XADD', KEYS[4], '*', 'entry', ARGV[2], 'kind', ARGV[4], 'payload', ARGV[5],\n"
    "             'created', ARGV[6], 'attempts', ARGV[7], 'reason', ARGV[3])\n"
    "end\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "redis.call('ZREM', KEYS[2], ARGV[2])\n"
    "redis.call('HDEL', KEYS[3], ARGV[2])\n"
    "return 1\n";

typedef struct {
    char kind[OUTBOX_MAX_KIND_LEN + 1]; /* the kind it delivers */
    outbox_deliver_fn *fn;              /* the deliverer */
    void *arg;                          /* its argument */
    outbox_limit limit;                 /* when failing entries are parked */
    metrics_series *delivered;          /* entries done */
    metrics_series *retried;            /* attempts ended retry-later */
    metrics_series *dead;               /* entries parked as dead */
} deliverer;

struct outbox_attempt {
    outbox *ob;                  /* NULL once the outbox was freed (detached) */
    pending_op op;               /* in the outbox's open attempts; completed
                                  * by outbox_finish with the outcome */
    const char *reason;          /* outbox_finish's, while the completion runs */
    char id[OB_MAX_ID];          /* stream entry id */
    char kind[OUTBOX_MAX_KIND_LEN + 1];
    int number;                  /* attempt number, 1 on the first */
    long long created_ms;        /* when the entry was added (wall clock) */
    char *payload_text;          /* the payload as stored */
    json_t *payload;             /* parsed, handed to the deliverer */
};

/* A Redis request made by the outbox; it outlives the outbox if need be. */
typedef struct ob_req ob_req;

/* What a request's reply means to the outbox; `q->ob` is NULL when the
 * outbox was freed meanwhile. */
typedef void req_then_fn(ob_req *q, store_status st, const struct redisReply *r);

struct ob_req {
    outbox *ob;               /* NULL when detached */
    pending_op op;            /* in the outbox's live requests */
    req_then_fn *then;        /* what its reply means */
    const struct redisReply *reply; /* the reply, while `then` runs */
    outbox_add_cb *add_cb;    /* an add: the caller's callback */
    void *add_arg;            /* and argument */
    bool refused;             /* an add refused before Redis: reports OUTBOX_INVALID soon */
    bool durable;             /* a durable add: sent with store_command_durable */
    bool replicated;          /* a durable add: enough replicas acknowledged it */
    metrics_series *added;    /* an add: the kind's counter */
};

struct outbox {
    struct event_base *base;     /* the main loop */
    store *st;                   /* the Redis connection */
    outbox_options opt;          /* validated copy; consumer owned */
    deliverer kinds[OUTBOX_MAX_KINDS]; /* registered deliverers */
    int nkinds;                  /* how many */
    pending_set open;            /* attempts handed out, not finished */
    pending_set reqs;            /* requests not yet answered, oldest first */
    bool group_ready;            /* the consumer group is known to exist */
    bool taking;                 /* a take is in flight */
    bool take_again;             /* outbox_poll_now came during a take: take once more */
    struct event *poll_ev;       /* persistent poll timer */
    metrics_series *pending;     /* gauge: entries in the stream */
    metrics_series *unknown_kind;/* entries of a kind with no deliverer */
};

/* Small helpers -------------------------------------------------------------*/

static bool valid_kind(const char *k)
{
    size_t n = k ? strnlen(k, OUTBOX_MAX_KIND_LEN + 1) : 0;
    return n > 0 && n <= OUTBOX_MAX_KIND_LEN &&
           strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

static bool valid_key(const char *k)
{
    size_t n = strnlen(k, OUTBOX_MAX_KEY_LEN + 1);
    if (n == 0 || n > OUTBOX_MAX_KEY_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] <= ' ' || k[i] == 0x7f)
            return false;
    return true;
}

static deliverer *find_kind(outbox *ob, const char *kind)
{
    for (int i = 0; i < ob->nkinds; i++)
        if (strcmp(ob->kinds[i].kind, kind) == 0)
            return &ob->kinds[i];
    return NULL;
}

static metrics_series *kind_counter(const char *name, const char *help, const char *kind)
{
    char labels[64];
    snprintf(labels, sizeof labels, "kind=\"%s\"", kind);
    return metrics_counter(name, help, labels);
}

static metrics_series *added_counter(const char *kind)
{
    return kind_counter("cardline_outbox_added_total", "Outbox entries added, by kind.", kind);
}

const char *outbox_add_status_name(outbox_add_status st)
{
    switch (st) {
    case OUTBOX_ADDED: return "added";
    case OUTBOX_DUPLICATE: return "duplicate";
    case OUTBOX_UNAVAILABLE: return "unavailable";
    case OUTBOX_INVALID: return "invalid";
    case OUTBOX_UNREPLICATED: return "unreplicated";
    }
    return "unknown";
}

/* Requests ------------------------------------------------------------------*/

/* The status a refused add completes with; the others are store_status. */
#define REQ_REFUSED (-1)

static void add_report(ob_req *q, outbox_add_status st, const char *id);

/* pending's completion, the only place a request ends: the reply's meaning,
 * then the memory. */
static void req_completed(pending_op *op, int status)
{
    ob_req *q = pending_owner(op, ob_req, op);
    if (status == REQ_REFUSED)
        add_report(q, OUTBOX_INVALID, NULL);
    else
        q->then(q, (store_status)status, q->reply);
    free(q);
}

static ob_req *req_new(outbox *ob, req_then_fn *then)
{
    ob_req *q = mem_calloc(1, sizeof *q);
    q->ob = ob;
    q->then = then;
    pending_start(&ob->reqs, &q->op, req_completed);
    return q;
}

/* The store's answer, for every request. */
static void req_replied(store_status st, const struct redisReply *r, void *arg)
{
    ob_req *q = arg;
    q->reply = r;
    pending_complete(&q->op, (int)st);
}

static void req_durable_replied(store_status st, const struct redisReply *r, store_durability d, void *arg)
{
    ob_req *q = arg;
    q->replicated = d.replicated;
    req_replied(st, r, arg);
}

static void send_command(ob_req *q, int argc, const char **argv, const size_t *lens)
{
    if (q->durable)
        store_command_durable(q->ob->st, argc, argv, lens, req_durable_replied, q);
    else
        store_command(q->ob->st, argc, argv, lens, req_replied, q);
}

static void send_script(ob_req *q, const char *script, size_t script_len, int nkeys,
                        int nargs, const char **args, const size_t *lens)
{
    const char *argv[16];
    size_t argvlen[16];
    char numkeys[8];
    snprintf(numkeys, sizeof numkeys, "%d", nkeys);
    argv[0] = "EVAL", argvlen[0] = 4;
    argv[1] = script, argvlen[1] = script_len;
    argv[2] = numkeys, argvlen[2] = strlen(numkeys);
    for (int i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
        argvlen[3 + i] = lens ? lens[i] : strlen(args[i]);
    }
    send_command(q, 3 + nargs, argv, argvlen);
}

/* Adding --------------------------------------------------------------------*/

static void add_report(ob_req *q, outbox_add_status st, const char *id)
{
    if (st == OUTBOX_ADDED || st == OUTBOX_UNREPLICATED)
        metrics_inc(q->added);
    q->add_cb(st, id, q->add_arg);
}

static void add_replied(ob_req *q, store_status st, const struct redisReply *r)
{
    if (st != STORE_OK || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_STRING || r->element[1]->len >= OB_MAX_ID) {
        if (st == STORE_OK)
            log_warn("outbox.add_failed", "reply_type=%d", r->type);
        add_report(q, OUTBOX_UNAVAILABLE, NULL);
        return;
    }
    char id[OB_MAX_ID];
    snprintf(id, sizeof id, "%.*s", (int)r->element[1]->len, r->element[1]->str);
    if (q->durable && !q->replicated)
        add_report(q, OUTBOX_UNREPLICATED, id);
    else
        add_report(q, r->element[0]->integer == 1 ? OUTBOX_ADDED : OUTBOX_DUPLICATE, id);
}

static void add_refuse(ob_req *q, const char *why)
{
    log_warn("outbox.add_refused", "reason=%s", why);
    q->refused = true;
    pending_complete_soon(&q->op, REQ_REFUSED);
}

static void add_entry(outbox *ob, const char *kind, json_t *payload, const char *dedupe_key, bool durable,
                      outbox_add_cb *cb, void *arg)
{
    ob_req *q = req_new(ob, add_replied);
    q->add_cb = cb;
    q->add_arg = arg;
    q->durable = durable;
    if (!valid_kind(kind)) {
        add_refuse(q, "kind");
        return;
    }
    if (dedupe_key && !valid_key(dedupe_key)) {
        add_refuse(q, "dedupe_key");
        return;
    }
    char *text = json_is_object(payload) ? json_dumps(payload, JSON_COMPACT) : NULL;
    if (text == NULL || strlen(text) > (size_t)ob->opt.max_payload_bytes) {
        free(text);
        add_refuse(q, "payload");
        return;
    }
    q->added = added_counter(kind);
    char key[sizeof OB_KEY_PREFIX + OUTBOX_MAX_KEY_LEN] = "";
    if (dedupe_key)
        snprintf(key, sizeof key, "%s%s", OB_KEY_PREFIX, dedupe_key);
    char created[24], ttl[16];
    snprintf(created, sizeof created, "%lld", (long long)walltime_ms());
    snprintf(ttl, sizeof ttl, "%d", ob->opt.dedupe_ttl_s);
    const char *args[] = {OUTBOX_STREAM_KEY, key, kind, text, created, ttl};
    send_script(q, add_script, sizeof add_script - 1, 2, 6, args, NULL);
    explicit_bzero(text, strlen(text));
    free(text);
}

void outbox_add(outbox *ob, const char *kind, json_t *payload, const char *dedupe_key,
                outbox_add_cb *cb, void *arg)
{
    add_entry(ob, kind, payload, dedupe_key, false, cb, arg);
}

void outbox_add_durable(outbox *ob, const char *kind, json_t *payload, const char *dedupe_key,
                        outbox_add_cb *cb, void *arg)
{
    add_entry(ob, kind, payload, dedupe_key, true, cb, arg);
}

/* Ending entries ------------------------------------------------------------*/

static void end_replied(ob_req *q, store_status st, const struct redisReply *r)
{
    (void)q;
    if (st != STORE_OK || r->type == REDIS_REPLY_ERROR)
        /* The entry stays pending and comes back after its lease. */
        log_warn("outbox.finish_not_recorded", "status=%s", store_status_name(st));
}

static void record_end(outbox *ob, const outbox_attempt *a, const char *dead_reason)
{
    char created[24], attempts[16];
    snprintf(created, sizeof created, "%lld", a->created_ms);
    snprintf(attempts, sizeof attempts, "%d", a->number);
    const char *args[] = {OUTBOX_STREAM_KEY, OB_DUE, OB_ATTEMPTS, OUTBOX_DEAD_KEY, OB_GROUP, a->id,
                          dead_reason ? dead_reason : "", a->kind, a->payload_text,
                          created, attempts};
    send_script(req_new(ob, end_replied), end_script, sizeof end_script - 1, 4, 11, args, NULL);
}

static void schedule_replied(ob_req *q, store_status st, const struct redisReply *r)
{
    (void)q;
    if (st != STORE_OK || r->type == REDIS_REPLY_ERROR)
        log_warn("outbox.retry_not_recorded", "status=%s", store_status_name(st));
}

/* Backoff doubling from min to max, then a random point in its upper half
 * so entries that failed together do not return together. */
static int backoff_ms(const outbox_options *o, int attempt)
{
    long long d = o->backoff_min_ms;
    for (int i = 1; i < attempt && d < o->backoff_max_ms; i++)
        d *= 2;
    if (d > o->backoff_max_ms)
        d = o->backoff_max_ms;
    unsigned r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        r = (unsigned)rand();
    return (int)(d / 2 + (long long)(r % (unsigned)(d / 2 + 1)));
}

static void record_retry(outbox *ob, const outbox_attempt *a, int delay_ms)
{
    char when[24];
    snprintf(when, sizeof when, "%lld", (long long)walltime_ms() + delay_ms);
    const char *argv[] = {"ZADD", OB_DUE, "XX", when, a->id};
    send_command(req_new(ob, schedule_replied), 5, argv, NULL);
}

static void attempt_free(outbox_attempt *a)
{
    json_decref(a->payload);
    if (a->payload_text) {
        explicit_bzero(a->payload_text, strlen(a->payload_text));
        free(a->payload_text);
    }
    free(a);
}

/* The status of an attempt dropped without an outcome: no deliverer here. */
#define ATTEMPT_DROPPED (-1)

static const char *outcome_name(outbox_outcome o)
{
    return o == OUTBOX_DONE ? "done" : o == OUTBOX_RETRY ? "retry" : "give_up";
}

static void record_outcome(outbox *ob, const outbox_attempt *a, outbox_outcome outcome,
                           const char *reason)
{
    deliverer *d = find_kind(ob, a->kind);
    const char *dead = NULL;
    if (outcome == OUTBOX_GIVE_UP)
        dead = "gave_up";
    else if (outcome == OUTBOX_RETRY && a->number >= ob->opt.max_attempts &&
             (d == NULL || d->limit == OUTBOX_LIMIT_ATTEMPTS_AND_AGE))
        dead = "max_attempts";
    else if (outcome == OUTBOX_RETRY &&
             (long long)walltime_ms() - a->created_ms > (long long)ob->opt.max_age_s * 1000)
        dead = "max_age";
    log_event(dead ? LOG_WARN : LOG_INFO, "outbox.attempt",
              "kind=%s entry=%s attempt=%d outcome=%s%s%s%s%s", a->kind, a->id, a->number,
              outcome_name(outcome), reason ? " reason=" : "", reason ? log_quote(reason).s : "",
              dead ? " dead=" : "", dead ? dead : "");
    if (outcome == OUTBOX_DONE) {
        metrics_inc(d ? d->delivered : NULL);
        record_end(ob, a, NULL);
    } else if (dead) {
        metrics_inc(d ? d->dead : NULL);
        record_end(ob, a, dead);
    } else {
        metrics_inc(d ? d->retried : NULL);
        record_retry(ob, a, backoff_ms(&ob->opt, a->number));
    }
}

/* pending's completion, the only place an attempt ends: what its outcome
 * means for the entry (nothing once the outbox is gone), then the memory. */
static void attempt_completed(pending_op *op, int status)
{
    outbox_attempt *a = pending_owner(op, outbox_attempt, op);
    if (a->ob && status != ATTEMPT_DROPPED)
        record_outcome(a->ob, a, (outbox_outcome)status, a->reason);
    attempt_free(a);
}

void outbox_finish(outbox_attempt *a, outbox_outcome outcome, const char *reason)
{
    a->reason = reason;
    pending_complete(&a->op, (int)outcome);
}

const char *outbox_attempt_id(const outbox_attempt *a) { return a->id; }
const char *outbox_attempt_kind(const outbox_attempt *a) { return a->kind; }
json_t *outbox_attempt_payload(const outbox_attempt *a) { return a->payload; }
int outbox_attempt_number(const outbox_attempt *a) { return a->number; }

/* Taking entries ------------------------------------------------------------*/

static bool attempt_open(const outbox *ob, const char *id)
{
    pending_op *op;
    TAILQ_FOREACH(op, &ob->open.ops, link)
        if (strcmp(pending_owner(op, outbox_attempt, op)->id, id) == 0)
            return true;
    return false;
}

static const redisReply *field(const redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1];
    }
    return NULL;
}

/* An attempt from one entry of the take script's reply, or NULL when the
 * entry is malformed (then parked as dead: it can never be delivered). */
static outbox_attempt *attempt_from(outbox *ob, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 3 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= OB_MAX_ID ||
        e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY)
        return NULL;
    outbox_attempt *a = mem_calloc(1, sizeof *a);
    a->ob = ob;
    snprintf(a->id, sizeof a->id, "%s", e->element[0]->str);
    a->number = (int)e->element[1]->integer;
    const redisReply *kind = field(e->element[2], "kind");
    const redisReply *payload = field(e->element[2], "payload");
    const redisReply *created = field(e->element[2], "created");
    if (kind && valid_kind(kind->str))
        snprintf(a->kind, sizeof a->kind, "%s", kind->str);
    a->created_ms = created ? strtoll(created->str, NULL, 10) : 0;
    a->payload_text = mem_strdup(payload ? payload->str : "");
    a->payload = json_loads(a->payload_text, 0, NULL);
    return a;
}

static void attempt_start(outbox *ob, outbox_attempt *a)
{
    pending_start(&ob->open, &a->op, attempt_completed);
    deliverer *d = find_kind(ob, a->kind);
    if (!json_is_object(a->payload) || a->kind[0] == '\0') {
        outbox_finish(a, OUTBOX_GIVE_UP, "malformed_entry");
    } else if (d == NULL) {
        /* Another gateway may know the kind: leave it to a later lease. */
        metrics_inc(ob->unknown_kind);
        log_warn("outbox.no_deliverer", "kind=%s entry=%s", a->kind, a->id);
        pending_complete(&a->op, ATTEMPT_DROPPED);
    } else {
        log_debug("outbox.attempt_start", "kind=%s entry=%s attempt=%d", a->kind, a->id,
                  a->number);
        d->fn(a, d->arg);
    }
}

static void take_replied(ob_req *q, store_status st, const struct redisReply *r)
{
    outbox *ob = q->ob;
    if (ob == NULL)
        return; /* what it took comes back after its lease */
    ob->taking = false;
    if (ob->take_again) {
        ob->take_again = false;
        event_active(ob->poll_ev, EV_TIMEOUT, 0);
    }
    if (st != STORE_OK)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        if (strstr(r->str, "NOGROUP"))
            ob->group_ready = false; /* Redis lost it (restart without AOF) */
        else
            log_warn("outbox.take_failed", "error=%s", log_quote(r->str).s);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return;
    metrics_set(ob->pending, (double)r->element[0]->integer);
    for (size_t i = 1; i < r->elements; i++) {
        outbox_attempt *a = attempt_from(ob, r->element[i]);
        if (a == NULL) {
            log_warn("outbox.bad_entry", "index=%zu", i);
            continue;
        }
        if (attempt_open(ob, a->id)) { /* our own lease ran out mid-attempt */
            attempt_free(a);
            continue;
        }
        attempt_start(ob, a);
    }
}

static void group_replied(ob_req *q, store_status st, const struct redisReply *r)
{
    outbox *ob = q->ob;
    if (ob == NULL || st != STORE_OK)
        return;
    if (r->type != REDIS_REPLY_ERROR || strstr(r->str, "BUSYGROUP"))
        ob->group_ready = true;
    else
        log_warn("outbox.group_failed", "error=%s", log_quote(r->str).s);
}

static void ensure_group(outbox *ob)
{
    const char *argv[] = {"XGROUP", "CREATE", OUTBOX_STREAM_KEY, OB_GROUP, "0", "MKSTREAM"};
    send_command(req_new(ob, group_replied), 6, argv, NULL);
}

static void take(outbox *ob)
{
    int room = ob->opt.max_in_flight - (int)ob->open.count;
    if (room <= 0)
        return;
    if (room > ob->opt.batch)
        room = ob->opt.batch;
    char count[16], now[24], lease[24];
    long long t = (long long)walltime_ms();
    snprintf(count, sizeof count, "%d", room);
    snprintf(now, sizeof now, "%lld", t);
    snprintf(lease, sizeof lease, "%lld", t + ob->opt.lease_ms);
    const char *args[] = {OUTBOX_STREAM_KEY, OB_DUE, OB_ATTEMPTS, OB_GROUP, ob->opt.consumer,
                          count, now, lease};
    ob->taking = true;
    send_script(req_new(ob, take_replied), take_script, sizeof take_script - 1, 3, 8, args, NULL);
}

static void poll_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    outbox *ob = arg;
    if (!store_connected(ob->st) || ob->taking)
        return;
    if (!ob->group_ready)
        ensure_group(ob);
    else
        take(ob);
}

void outbox_poll_now(outbox *ob)
{
    if (ob->taking)
        ob->take_again = true;
    else
        event_active(ob->poll_ev, EV_TIMEOUT, 0);
}

/* Registration --------------------------------------------------------------*/

int outbox_register(outbox *ob, const char *kind, outbox_limit limit, outbox_deliver_fn *fn,
                    void *arg)
{
    if (!valid_kind(kind) || fn == NULL || find_kind(ob, kind) || ob->nkinds == OUTBOX_MAX_KINDS)
        return -1;
    deliverer *d = &ob->kinds[ob->nkinds++];
    snprintf(d->kind, sizeof d->kind, "%s", kind);
    d->fn = fn;
    d->arg = arg;
    d->limit = limit;
    d->delivered = kind_counter("cardline_outbox_delivered_total",
                                "Outbox entries delivered, by kind.", kind);
    d->retried = kind_counter("cardline_outbox_retried_total",
                              "Outbox attempts ended retry-later, by kind.", kind);
    d->dead = kind_counter("cardline_outbox_dead_total",
                           "Outbox entries parked as dead, by kind.", kind);
    return 0;
}

/* Lifecycle -----------------------------------------------------------------*/

static const conf_key outbox_conf_keys[] = {
    CONF_KEY(outbox_options, "consumer", CONF_STRING, consumer, "cardline"),
    CONF_KEY_INT(outbox_options, "poll_interval_ms", poll_interval_ms, 10, 60000, "200"),
    CONF_KEY_INT(outbox_options, "batch", batch, 1, 1000, "32"),
    CONF_KEY_INT(outbox_options, "max_in_flight", max_in_flight, 1, 100000, "256"),
    CONF_KEY_INT(outbox_options, "lease_ms", lease_ms, 100, 3600000, "60000"),
    CONF_KEY_INT(outbox_options, "backoff_min_ms", backoff_min_ms, 1, 3600000, "1000"),
    CONF_KEY_INT(outbox_options, "backoff_max_ms", backoff_max_ms, 1, 86400000, "300000"),
    CONF_KEY_INT(outbox_options, "max_attempts", max_attempts, 1, 1000, "20"),
    CONF_KEY_INT(outbox_options, "max_age_s", max_age_s, 1, 2592000, "86400"),
    CONF_KEY_INT(outbox_options, "max_payload_bytes", max_payload_bytes, 2, 1048576, "16384"),
    CONF_KEY_INT(outbox_options, "dedupe_ttl_s", dedupe_ttl_s, 1, 2592000, "604800"),
};
/* Retry delays grow from backoff_min_ms up to backoff_max_ms. */
static const conf_order outbox_conf_orders[] = {{"backoff_min_ms", "backoff_max_ms", NULL}};

const conf_section outbox_config = CONF_SECTION_ORDERED("outbox", outbox_conf_keys, outbox_conf_orders);

void outbox_options_default(outbox_options *opt)
{
    memset(opt, 0, sizeof *opt);
    conf_section_defaults(&outbox_config, opt);
}

static const char *options_problem(const outbox_options *o, char *buf, size_t size)
{
    size_t n = o->consumer ? strnlen(o->consumer, OB_MAX_CONSUMER + 1) : 0;
    if (n == 0 || n > OB_MAX_CONSUMER ||
        strspn(o->consumer, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") != n)
        return "consumer must be 1-64 of [A-Za-z0-9_.:-]";
    return conf_section_problem(&outbox_config, o, buf, size);
}

outbox *outbox_new(struct event_base *base, store *st, const outbox_options *opt)
{
    char buf[96];
    const char *problem = options_problem(opt, buf, sizeof buf);
    if (problem) {
        log_error("outbox.config", "problem=%s", log_quote(problem).s);
        return NULL;
    }
    outbox *ob = mem_calloc(1, sizeof *ob);
    ob->base = base;
    ob->st = st;
    ob->opt = *opt;
    ob->opt.consumer = mem_strdup(opt->consumer);
    pending_set_init(&ob->reqs, base);
    pending_set_init(&ob->open, base);
    ob->poll_ev = event_new(base, -1, EV_PERSIST, poll_due, ob);
    if (ob->poll_ev == NULL)
        mem_out_of_memory("outbox: event_new");
    ob->pending = metrics_gauge("cardline_outbox_pending",
                                "Entries in the outbox stream (queued or being retried).", NULL);
    ob->unknown_kind = metrics_counter("cardline_outbox_unknown_kind_total",
                                       "Outbox entries taken with no deliverer for their kind.",
                                       NULL);
    struct timeval every = {opt->poll_interval_ms / 1000, (opt->poll_interval_ms % 1000) * 1000};
    event_add(ob->poll_ev, &every);
    return ob;
}

void outbox_free(outbox *ob)
{
    if (ob == NULL)
        return;
    event_free(ob->poll_ev);
    /* Open attempts end when their deliverers finish them. */
    while (!TAILQ_EMPTY(&ob->open.ops)) {
        outbox_attempt *a = pending_owner(TAILQ_FIRST(&ob->open.ops), outbox_attempt, op);
        a->ob = NULL;
        pending_detach(&a->op);
    }
    /* Refused adds report now; sent requests report when Redis answers. */
    while (!TAILQ_EMPTY(&ob->reqs.ops)) {
        ob_req *q = pending_owner(TAILQ_FIRST(&ob->reqs.ops), ob_req, op);
        q->ob = NULL;
        if (q->refused)
            pending_complete(&q->op, REQ_REFUSED);
        else
            pending_detach(&q->op);
    }
    free((char *)ob->opt.consumer);
    free(ob);
}
