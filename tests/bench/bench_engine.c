/* bench-engine — how fast the engine walks dialplans, alone and through
 * Redis, each next to a baseline measured in the same run:
 *
 *   step alone     steps/s of the pure step (many sessions in memory, a
 *                  menu answered over and over, output, replay record and
 *                  the hop's events built as the hop runner does) vs
 *                  json_dumps of a session
 *   with Redis     hops/s through engine_hop with N sessions in flight on
 *                  the one hiredis connection vs a bare GET+SET round trip
 *                  at the same concurrency through hiredis async
 *
 * Usage: bench-engine --dialplans DIR --redis-port PORT [--seconds S]
 *                     [--sessions N] [--concurrency N] [--events N]
 * Needs a redis-server it may write to (keys under cl:s:bench-*,
 * cl:e:bench-*, bench:*). */
#include <event2/event.h>
#include <getopt.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dialplan.h"
#include "engine.h"
#include "handlers.h"
#include "log.h"
#include "session.h"
#include "step.h"
#include "store.h"

#define BENCH_MAX_CONCURRENCY 1024
#define BENCH_MAX_SESSIONS 100000
#define BENCH_ENTRY "12333"
#define BENCH_INPUT "9"        /* the fixture's repeat key: one menu asked again */

typedef struct {
    const char *dialplans;     /* the set to walk */
    int redis_port;            /* where Redis listens */
    double seconds;            /* length of each measurement */
    int sessions;              /* sessions kept in memory for the step alone */
    int concurrency;           /* hops (or round trips) in flight */
    int events;                /* events kept per session (engine default 20) */
} bench_options;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *what, double rate, const char *unit, double baseline, const char *base_what)
{
    printf("%-34s %12.0f %s/s   (baseline %s: %.0f/s, %.0f%%)\n", what, rate, unit, base_what, baseline,
           baseline > 0 ? 100.0 * rate / baseline : 0.0);
}

/* The step alone ---------------------------------------------------------------*/

static json_t **start_sessions(dialplan *dp, int n)
{
    json_t **docs = calloc((size_t)n, sizeof *docs);
    const dp_flow *flow = dialplan_route(dp, CHANNEL_VOICE, BENCH_ENTRY);
    if (!docs || !flow)
        return NULL;
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "bench-%d", i);
        docs[i] = engine_session_new(dp, id, CHANNEL_VOICE, "13800000001", BENCH_ENTRY, NULL);
        step st;
        engine_step_init(&st, dp, docs[i], 64, 20);
        engine_step_start(&st, flow);
        engine_step_done(&st);
    }
    return docs;
}

/* One hop's worth of pure work: the step, its output, replay record and
 * events. */
static int one_step(dialplan *dp, json_t *doc, int max_events)
{
    engine_event ev = {.kind = ENGINE_EV_INPUT, .session_id = "bench", .input = BENCH_INPUT};
    step st;
    engine_step_init(&st, dp, doc, 64, max_events);
    engine_step_event(&st, &ev);
    json_t *out = engine_step_output(&st);
    engine_session_set_last_hop(doc, "k", out);
    json_decref(out);
    json_decref(engine_step_take_events(&st));
    int steps = st.steps;
    engine_step_done(&st);
    return steps;
}

static double step_rate(dialplan *dp, json_t **docs, int n, int max_events, double seconds)
{
    long steps = 0;
    double t0 = now_s(), t;
    int i = 0;
    do {
        for (int k = 0; k < 1000; k++, i = (i + 1) % n)
            steps += one_step(dp, docs[i], max_events);
        t = now_s();
    } while (t - t0 < seconds);
    return (double)steps / (t - t0);
}

static double dumps_rate(json_t **docs, int n, double seconds)
{
    long count = 0;
    double t0 = now_s(), t;
    int i = 0;
    do {
        for (int k = 0; k < 1000; k++, i = (i + 1) % n, count++)
            free(json_dumps(docs[i], JSON_COMPACT));
        t = now_s();
    } while (t - t0 < seconds);
    return (double)count / (t - t0);
}

/* Hops through Redis -------------------------------------------------------------*/

typedef struct hop_bench hop_bench;

typedef struct {
    hop_bench *b;              /* the run */
    char id[32];               /* its session */
    long seq;                  /* hop keys */
} bench_session;

struct hop_bench {
    struct event_base *base;   /* the loop */
    engine *engine;            /* under test */
    double deadline;           /* stop issuing hops after this */
    long ok, failed;           /* answers seen while measuring */
    int in_flight;             /* hops not answered yet */
    bool measuring;            /* past the warm-up start hops */
};

static void next_hop(bench_session *s);

static void on_hop(const engine_result *r, void *arg)
{
    bench_session *s = arg;
    hop_bench *b = s->b;
    b->in_flight--;
    if (b->measuring) {
        if (r->status == ENGINE_OK)
            b->ok++;
        else
            b->failed++;
    }
    if (b->measuring && now_s() < b->deadline)
        next_hop(s);
    else if (b->in_flight == 0)
        event_base_loopbreak(b->base);
}

static void send_event(bench_session *s, engine_event_kind kind)
{
    char key[64];
    snprintf(key, sizeof key, "%s-%ld", s->id, ++s->seq);
    engine_event ev = {.kind = kind, .channel = CHANNEL_VOICE, .session_id = s->id,
                       .caller = "13800000001", .entry = BENCH_ENTRY, .input = BENCH_INPUT,
                       .hop_key = key};
    s->b->in_flight++;
    engine_hop(s->b->engine, &ev, on_hop, s);
}

static void next_hop(bench_session *s)
{
    send_event(s, ENGINE_EV_INPUT);
}

static bool wait_connected(struct event_base *base, store *st)
{
    double deadline = now_s() + 5;
    while (!store_connected(st) && now_s() < deadline)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    return store_connected(st);
}

static double hop_rate(const bench_options *o, dialplan *dp, long *failed)
{
    struct event_base *base = event_base_new();
    store_options so;
    store_options_default(&so);
    so.port = o->redis_port;
    so.op_timeout_ms = 5000;
    store *st = store_new(base, &so);
    if (!wait_connected(base, st)) {
        fprintf(stderr, "bench-engine: Redis on port %d does not answer\n", o->redis_port);
        exit(1);
    }
    handler_env env = {.base = base};
    engine_options eo;
    engine_options_default(&eo);
    eo.store = st;
    eo.handlers = &env;
    eo.max_events_kept = o->events;
    hop_bench b = {.base = base, .engine = engine_new(base, &eo, dp)};
    bench_session *ss = calloc((size_t)o->concurrency, sizeof *ss);
    for (int i = 0; i < o->concurrency; i++) {
        ss[i].b = &b;
        snprintf(ss[i].id, sizeof ss[i].id, "bench-%d-%d", (int)getpid(), i);
        send_event(&ss[i], ENGINE_EV_START);
    }
    event_base_dispatch(base);          /* until every session has started */
    b.measuring = true;
    double t0 = now_s();
    b.deadline = t0 + o->seconds;
    for (int i = 0; i < o->concurrency; i++)
        next_hop(&ss[i]);
    event_base_dispatch(base);
    double rate = (double)b.ok / (now_s() - t0);
    *failed = b.failed;
    engine_free(b.engine);
    store_free(st);
    free(ss);
    event_base_free(base);
    return rate;
}

/* The Redis baseline: GET then SET of a session-sized value, N in flight. */
typedef struct {
    redisAsyncContext *ac;     /* the one connection */
    struct event_base *base;
    double deadline;
    long done;                 /* round trips completed */
    int in_flight;
    char value[1024];          /* what is SET */
} rt_bench;

static void rt_next(rt_bench *r, long i);

static void on_set(redisAsyncContext *ac, void *reply, void *arg)
{
    rt_bench *r = ac->data;
    r->in_flight--;
    if (reply)
        r->done++;
    if (reply && now_s() < r->deadline)
        rt_next(r, (long)(intptr_t)arg);
    else if (r->in_flight == 0)
        event_base_loopbreak(r->base);
}

static void on_get(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)reply;
    rt_bench *r = ac->data;
    char key[32];
    snprintf(key, sizeof key, "bench:%ld", (long)(intptr_t)arg);
    redisAsyncCommand(ac, on_set, arg, "SET %s %s EX 60", key, r->value);
}

static void rt_next(rt_bench *r, long i)
{
    char key[32];
    snprintf(key, sizeof key, "bench:%ld", i);
    r->in_flight++;
    redisAsyncCommand(r->ac, on_get, (void *)(intptr_t)i, "GET %s", key);
}

static double roundtrip_rate(const bench_options *o)
{
    rt_bench r = {0};
    r.base = event_base_new();
    memset(r.value, 'x', sizeof r.value - 1);
    r.ac = redisAsyncConnect("127.0.0.1", o->redis_port);
    if (!r.ac || r.ac->err) {
        fprintf(stderr, "bench-engine: cannot connect to Redis\n");
        exit(1);
    }
    r.ac->data = &r;
    redisLibeventAttach(r.ac, r.base);
    double t0 = now_s();
    r.deadline = t0 + o->seconds;
    for (long i = 0; i < o->concurrency; i++)
        rt_next(&r, i);
    event_base_dispatch(r.base);
    double rate = (double)r.done / (now_s() - t0);
    redisAsyncFree(r.ac);
    event_base_free(r.base);
    return rate;
}

/* Main -----------------------------------------------------------------------------*/

static void usage(void)
{
    fprintf(stderr, "usage: bench-engine --dialplans DIR --redis-port PORT [--seconds S] "
                    "[--sessions N] [--concurrency N] [--events N]\n");
    exit(2);
}

static void parse_args(int argc, char **argv, bench_options *o)
{
    static const struct option longs[] = {
        {"dialplans", required_argument, NULL, 'd'}, {"redis-port", required_argument, NULL, 'p'},
        {"seconds", required_argument, NULL, 's'},   {"sessions", required_argument, NULL, 'n'},
        {"concurrency", required_argument, NULL, 'c'}, {"events", required_argument, NULL, 'e'},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'd': o->dialplans = optarg; break;
        case 'p': o->redis_port = atoi(optarg); break;
        case 's': o->seconds = atof(optarg); break;
        case 'n': o->sessions = atoi(optarg); break;
        case 'c': o->concurrency = atoi(optarg); break;
        case 'e': o->events = atoi(optarg); break;
        default: usage();
        }
    }
    if (!o->dialplans || o->redis_port <= 0 || o->redis_port > 65535 || o->seconds <= 0 || o->seconds > 600 ||
        o->sessions < 1 || o->sessions > BENCH_MAX_SESSIONS || o->concurrency < 1 ||
        o->concurrency > BENCH_MAX_CONCURRENCY || o->events < 0 || o->events > 1000)
        usage();
}

int main(int argc, char **argv)
{
    bench_options o = {.seconds = 3, .sessions = 10000, .concurrency = 64, .events = 20};
    parse_args(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);
    /* Hop log lines are formatted as in production, then thrown away. */
    FILE *devnull = fopen("/dev/null", "w");
    log_set_stream(devnull);

    dp_errors errs = {0};
    dialplan *dp = dialplan_load(o.dialplans, handlers_find, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    dp_errors_free(&errs);
    if (!dp)
        return 1;

    json_t **docs = start_sessions(dp, o.sessions);
    if (!docs) {
        fprintf(stderr, "bench-engine: no voice route for %s in %s\n", BENCH_ENTRY, o.dialplans);
        return 1;
    }
    double steps = step_rate(dp, docs, o.sessions, o.events, o.seconds);
    double dumps = dumps_rate(docs, o.sessions, o.seconds);
    for (int i = 0; i < o.sessions; i++)
        json_decref(docs[i]);
    free(docs);

    long failed = 0;
    double hops = hop_rate(&o, dp, &failed);
    double rts = roundtrip_rate(&o);

    printf("engine bench: %d sessions in memory, %d in flight, %d events kept, %.0f s each\n", o.sessions,
           o.concurrency, o.events, o.seconds);
    report("step alone", steps, "steps", dumps, "json_dumps of a session");
    report("hops through Redis", hops, "hops", rts, "GET+SET round trip");
    printf("targets: >= 100000 steps/s alone, >= 20000 hops/s with Redis; failed hops: %ld\n", failed);
    dialplan_unref(dp);
    log_set_stream(stderr);
    fclose(devnull);
    return failed == 0 ? 0 : 1;
}
