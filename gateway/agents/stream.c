/* stream — GET /v1/stream: the live notifications of agent consoles
 * (text/event-stream on evhttp's chunked replies) and the one poller per
 * process that feeds them.
 *
 * The source of truth is Redis, so that what another gateway changes
 * shows too: every [agents] stream_poll_ms, while streams are open, one
 * XREAD of the change log (cl:console, written by the engine, the SMS
 * channel and this API) and of the callback stream reads what changed
 * since the last tick; only then are the queue's length (ZCARD cl:q) and
 * the open callbacks (a script over the listing's window) read. A tick
 * costs the same with one stream or two hundred: what it learns is
 * written to every stream. A stream opened since the last tick gets the
 * queue and callback counts at the next one, changed or not.
 *
 * A stream ends when its client goes away, when its unsent backlog passes
 * AGENTS_STREAM_MAX_BACKLOG (a slow reader must not grow our memory), or
 * at agents_free. Heartbeats (comments) keep proxies and the page's
 * watchdog content every [agents] stream_heartbeat_ms. */
#include "agents_int.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mem.h"
#include "walltime.h"

#define CHANGES_PER_TICK "256"        /* change-log entries read per tick */
#define SESSIONS_PER_TICK 32          /* distinct sessions announced per tick; more: a queue event */
#define OVERVIEW_EVERY_MS 5000        /* supervisors' overview tick when nothing changed */

/* The counts a tick's news calls for, -1 for those not asked: the queue's
 * length (ARGV[1] "1") and the callbacks not done among the newest ARGV[3]
 * of their stream, the listing's window (ARGV[2] "1"). KEYS: the queue,
 * the callback stream. ARGV[4]: the state key prefix. */
static const char counts_script[] =
    "local queue, open = -1, -1\n"
    "if ARGV[1] == '1' then queue = redis.call('ZCARD', KEYS[1]) end\n"
    "if ARGV[2] == '1' then\n"
    "  open = 0\n"
    "  for _, e in ipairs(redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[3])) do\n"
    "    local f = e[2]\n"
    "    for i = 1, #f - 1, 2 do\n"
    "      if f[i] == 'ref' and redis.call('HGET', ARGV[4] .. f[i + 1], 'state') ~= 'done' then open = open + 1 end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {queue, open}\n";

struct agent_stream {
    agents *owner;              /* the API */
    httpd_request *http;        /* the open reply */
    const auth_agent *who;      /* whose console */
    bool fresh;                 /* opened since the last tick: owed the counts */
    LIST_ENTRY(agent_stream) link; /* owner->streams */
};

/* One poll: its Redis replies and what they said. Freed when its last
 * reply is back, also after agents_free let go of it (owner NULL). */
struct stream_tick {
    agents *owner;              /* NULL once agents_free let go */
    int waiting;                /* replies still to come */
    bool queue_changed;         /* the queue gained or lost a session */
    bool callbacks_changed;     /* a callback was added, claimed or done */
    bool fresh;                 /* some stream is owed the counts */
    json_t *sessions;           /* ids of changed sessions (array, unique) */
    long long queue_len;        /* ZCARD cl:q, -1 unread */
    long long open_callbacks;   /* -1 unread */
    char version[48];           /* the newest change-log id */
};

/* Writing to streams --------------------------------------------------------------*/

static void count_streams(agents *a, size_t n)
{
    a->stream_count = n;
    metrics_set(a->streams_gauge, (double)n);
}

static void stream_free(agent_stream *s)
{
    LIST_REMOVE(s, link);
    count_streams(s->owner, s->owner->stream_count - 1);
    free(s);
}

/* The client left, or we dropped it: the request is over. */
static void stream_closed(void *arg)
{
    stream_free(arg);
}

static void send_text(agent_stream *s, const char *text, size_t len)
{
    if (httpd_stream_send(s->http, text, len) > AGENTS_STREAM_MAX_BACKLOG) {
        log_info("agents.stream_dropped", "agent=%s why=slow_reader", s->who->name);
        httpd_stream_drop(s->http); /* stream_closed frees s from here */
    }
}

/* One event, "event: NAME\ndata: JSON\n\n", to the streams `want` picks. */
static void send_event(agents *a, const char *name, json_t *data, bool (*want)(const agent_stream *))
{
    char *json = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    if (json == NULL)
        return;
    size_t size = strlen(json) + strlen(name) + 32;
    char *text = mem_malloc(size);
    int len = snprintf(text, size, "event: %s\ndata: %s\n\n", name, json);
    for (agent_stream *s = LIST_FIRST(&a->streams), *next; s; s = next) {
        next = LIST_NEXT(s, link);
        if (want == NULL || want(s))
            send_text(s, text, (size_t)len);
    }
    free(text);
    free(json);
}

static bool is_fresh(const agent_stream *s)
{
    return s->fresh;
}

static bool is_supervisor(const agent_stream *s)
{
    return s->who->role == AGENT_SUPERVISOR;
}

/* A heartbeat to every stream; the stream of an agent whose token expired
 * meanwhile ends instead (the page then meets the 401 itself). */
static void heartbeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    agents *a = arg;
    static const char beat[] = ": heartbeat\n\n";
    time_t now = time(NULL);
    for (agent_stream *s = LIST_FIRST(&a->streams), *next; s; s = next) {
        next = LIST_NEXT(s, link);
        if (s->who->expires != 0 && now >= s->who->expires) {
            log_info("agents.stream_ended", "agent=%s why=token_expired", s->who->name);
            httpd_stream_end(s->http);
            stream_free(s);
            continue;
        }
        send_text(s, beat, sizeof beat - 1);
    }
}

/* The tick's news, once every reply is back. A stream is owed the counts
 * until a tick read them (one opened while this tick was out, or when
 * Redis failed, gets them from the next). */
static void tick_publish(agents *a, stream_tick *t)
{
    if (t->queue_len >= 0)
        send_event(a, "queue", json_pack("{s:I, s:s}", "waiting", (json_int_t)t->queue_len, "version", t->version),
                   t->queue_changed ? NULL : is_fresh);
    if (t->open_callbacks >= 0)
        send_event(a, "callbacks", json_pack("{s:I}", "open", (json_int_t)t->open_callbacks),
                   t->callbacks_changed ? NULL : is_fresh);
    size_t i;
    json_t *id;
    json_array_foreach(t->sessions, i, id)
        send_event(a, "session", json_pack("{s:O}", "id", id), NULL);
    long now = (long)monotime_ms();
    bool changed = t->queue_changed || t->callbacks_changed || json_array_size(t->sessions) > 0;
    if (changed || t->fresh || now - a->overview_sent_ms >= OVERVIEW_EVERY_MS) {
        a->overview_sent_ms = now;
        send_event(a, "overview", json_pack("{s:I}", "at_ms", (json_int_t)walltime_ms()), is_supervisor);
    }
    if (t->queue_len < 0 || t->open_callbacks < 0)
        return;
    agent_stream *s;
    LIST_FOREACH(s, &a->streams, link)
        s->fresh = false;
}

/* Polling -------------------------------------------------------------------------*/

static void tick_free(stream_tick *t)
{
    json_decref(t->sessions);
    free(t);
}

/* Counts a reply back; the tick when it is still ours to finish. */
static agents *tick_back(stream_tick *t)
{
    t->waiting--;
    if (t->owner == NULL) {
        if (t->waiting == 0)
            tick_free(t);
        return NULL;
    }
    return t->owner;
}

static void tick_done(stream_tick *t)
{
    agents *a = t->owner;
    if (t->waiting > 0)
        return;
    a->tick = NULL;
    if (a->stream_count > 0)
        tick_publish(a, t);
    tick_free(t);
}

static void tick_command(stream_tick *t, int argc, const char **argv, store_reply_cb *cb)
{
    t->waiting++;
    store_command(t->owner->store, argc, argv, NULL, cb, t);
}

static void counts_read(store_status st, const redisReply *reply, void *arg)
{
    stream_tick *t = arg;
    if (tick_back(t) == NULL)
        return;
    if (st == STORE_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[1]->type == REDIS_REPLY_INTEGER) {
        t->queue_len = reply->element[0]->integer;
        t->open_callbacks = reply->element[1]->integer;
    }
    tick_done(t);
}

/* Reads the counts the news calls for, if any. */
static void read_counts(stream_tick *t)
{
    bool queue = t->queue_changed || t->fresh, callbacks = t->callbacks_changed || t->fresh;
    if (!queue && !callbacks)
        return;
    const char *argv[] = {"EVAL", counts_script, "2", ENGINE_QUEUE_KEY, AGENTS_CALLBACK_STREAM, queue ? "1" : "0",
                          callbacks ? "1" : "0", AGENTS_CALLBACK_WINDOW, AGENTS_CALLBACK_KEY};
    tick_command(t, 9, argv, counts_read);
}

static const char *field(const redisReply *fields, const char *name)
{
    for (size_t i = 0; fields->type == REDIS_REPLY_ARRAY && i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING && strcmp(fields->element[i]->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1]->str;
    return NULL;
}

static void note_session(stream_tick *t, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(t->sessions, i, v)
        if (strcmp(json_string_value(v), id) == 0)
            return;
    if (json_array_size(t->sessions) < SESSIONS_PER_TICK)
        json_array_append_new(t->sessions, json_string(id));
    else
        t->queue_changed = true; /* too much at once: the page re-reads its queue */
}

/* One XREAD stream's entries: [name, [[id, fields], …]]. */
static void read_entries(stream_tick *t, const redisReply *s)
{
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 || s->element[0]->type != REDIS_REPLY_STRING ||
        s->element[1]->type != REDIS_REPLY_ARRAY)
        return;
    agents *a = t->owner;
    bool changes = strcmp(s->element[0]->str, ENGINE_CHANGES_KEY) == 0;
    const redisReply *entries = s->element[1];
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        snprintf(changes ? a->seen_changes : a->seen_callbacks, sizeof a->seen_changes, "%s", e->element[0]->str);
        if (!changes) {
            t->callbacks_changed = true;
            continue;
        }
        const char *kind = field(e->element[1], "kind"), *id = field(e->element[1], "id");
        if (kind && strcmp(kind, "queue") == 0)
            t->queue_changed = true;
        else if (kind && strcmp(kind, "callbacks") == 0)
            t->callbacks_changed = true;
        if (id && kind && strcmp(kind, "callbacks") != 0)
            note_session(t, id);
    }
    snprintf(t->version, sizeof t->version, "%s", a->seen_changes);
}

static void changes_read(store_status st, const redisReply *reply, void *arg)
{
    stream_tick *t = arg;
    if (tick_back(t) == NULL)
        return;
    if (st != STORE_OK || (reply->type != REDIS_REPLY_ARRAY && reply->type != REDIS_REPLY_NIL)) {
        t->owner->tick = NULL; /* Redis is away: the next tick tries again */
        tick_free(t);
        return;
    }
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++)
        read_entries(t, reply->element[i]);
    read_counts(t);
    tick_done(t);
}

/* The newest id of a stream, where reading starts at the first tick. */
static void seed_read(store_status st, const redisReply *reply, void *arg)
{
    stream_tick *t = arg;
    agents *a = tick_back(t);
    if (a == NULL)
        return;
    if (st != STORE_OK || reply->type != REDIS_REPLY_ARRAY) {
        a->seed_failed = true;
    } else {
        char *seen = t->waiting == 1 ? a->seen_changes : a->seen_callbacks;
        const redisReply *e = reply->elements ? reply->element[0] : NULL;
        snprintf(seen, sizeof a->seen_changes, "%s",
                 e && e->type == REDIS_REPLY_ARRAY && e->elements == 2 && e->element[0]->type == REDIS_REPLY_STRING
                     ? e->element[0]->str
                     : "0-0");
    }
    if (t->waiting > 0)
        return;
    if (a->seed_failed) {
        a->seen_changes[0] = a->seen_callbacks[0] = '\0';
        a->tick = NULL;
        tick_free(t);
        return;
    }
    snprintf(t->version, sizeof t->version, "%s", a->seen_changes);
    read_counts(t);
    tick_done(t);
}

static void poll_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    agents *a = arg;
    if (a->stream_count == 0 || a->tick != NULL)
        return;
    stream_tick *t = mem_calloc(1, sizeof *t);
    *t = (stream_tick){.owner = a, .sessions = json_array(), .queue_len = -1, .open_callbacks = -1};
    agent_stream *s;
    LIST_FOREACH(s, &a->streams, link)
        t->fresh |= s->fresh;
    a->tick = t;
    if (a->seen_changes[0] == '\0') {
        /* Replies come back in order: the change log's first. */
        a->seed_failed = false;
        const char *changes[] = {"XREVRANGE", ENGINE_CHANGES_KEY, "+", "-", "COUNT", "1"};
        const char *callbacks[] = {"XREVRANGE", AGENTS_CALLBACK_STREAM, "+", "-", "COUNT", "1"};
        tick_command(t, 6, changes, seed_read);
        tick_command(t, 6, callbacks, seed_read);
        return;
    }
    const char *argv[] = {"XREAD", "COUNT", CHANGES_PER_TICK, "STREAMS", ENGINE_CHANGES_KEY, AGENTS_CALLBACK_STREAM,
                          a->seen_changes, a->seen_callbacks};
    tick_command(t, 8, argv, changes_read);
}

/* The endpoint and the life of the streams ------------------------------------------*/

void agents_ep_stream(agent_req *r)
{
    agents *a = r->owner;
    if (a->stream_count >= (size_t)a->max_streams) {
        agents_req_detail(r, "streams=%zu", a->stream_count);
        agents_req_fail(r, 503, "too_many_streams", "Too many consoles are open; try again later.");
        return;
    }
    agent_stream *s = mem_calloc(1, sizeof *s);
    *s = (agent_stream){.owner = a, .http = r->http, .who = r->who, .fresh = true};
    httpd_request *http = agents_req_detach(r);
    if (!httpd_stream_start(http, "text/event-stream; charset=utf-8", stream_closed, s)) {
        free(s);
        agents_req_reply(r, 503, NULL);
        return;
    }
    LIST_INSERT_HEAD(&a->streams, s, link);
    count_streams(a, a->stream_count + 1);
    static const char hello[] = ": open\n\n";
    httpd_stream_send(http, hello, sizeof hello - 1);
    agents_req_reply(r, 200, NULL);
}

bool agents_streams_start(agents *a, struct event_base *base)
{
    LIST_INIT(&a->streams);
    a->streams_gauge = metrics_gauge("cardline_agents_streams", "Agent consoles with GET /v1/stream open.", NULL);
    a->heartbeat = event_new(base, -1, EV_PERSIST, heartbeat, a);
    a->poll = event_new(base, -1, EV_PERSIST, poll_due, a);
    if (a->heartbeat == NULL || a->poll == NULL)
        return false;
    struct timeval beat = {a->heartbeat_ms / 1000, (a->heartbeat_ms % 1000) * 1000};
    struct timeval every = {a->poll_ms / 1000, (a->poll_ms % 1000) * 1000};
    return event_add(a->heartbeat, &beat) == 0 && event_add(a->poll, &every) == 0;
}

void agents_streams_stop(agents *a)
{
    if (a->heartbeat)
        event_free(a->heartbeat);
    if (a->poll)
        event_free(a->poll);
    a->heartbeat = a->poll = NULL;
    while (!LIST_EMPTY(&a->streams)) {
        agent_stream *s = LIST_FIRST(&a->streams);
        httpd_stream_end(s->http);
        stream_free(s);
    }
    if (a->tick)
        a->tick->owner = NULL;
    a->tick = NULL;
}
