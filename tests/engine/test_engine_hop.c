/* test_engine_hop — the hop runner against a real redis-server and the real
 * registry-sim (demo seed): a whole PIN check through the registry (right
 * and locked), card status, replays
 * that run nothing twice, racing hops, Redis and registry outages, a reload
 * mid-session, malformed events, engine_free with hops or a handler call in flight, input
 * held while a session is with an agent, the
 * events saved with each hop (bounded, never twice, never a PIN), and the
 * PIN kept out of Redis and the log. The loop runs until the awaited
 * callbacks have come, under a bounded deadline; nothing depends on timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dialplan.h"
#include "engine.h"
#include "handlers.h"
#include "harness.h"
#include "loop.h"
#include "modules.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "store.h"

#define SET_DIR CL_SOURCE_DIR "/tests/engine/dialplans/main"
#define RELOADED_DIR CL_SOURCE_DIR "/tests/engine/dialplans/reloaded"
#define WAIT_MS 15000
#define WANG_ID "110101199003074514"
#define WANG_PIN "246810"
#define CHEN_ID "51010719880214226X"   /* the demo seed's locked card */
#define RACERS 8

typedef struct {
    tm_world m;               /* Redis, the simulator, their clients, the loop */
    tm_capture log;           /* the log lines of each test */
    handler_env env;          /* what handlers use */
    dialplan *dp;             /* the fixture set */
    engine *engine;           /* under test */
    int seq;                  /* hop keys */
} fixture;

typedef struct {
    int calls;                /* callbacks seen */
    engine_status status;     /* the last status */
    json_t *output;           /* the last output (kept) */
} answer;

static void on_answer(const engine_result *r, void *arg)
{
    answer *a = arg;
    a->calls++;
    a->status = r->status;
    json_decref(a->output);
    a->output = r->output ? json_deep_copy(r->output) : NULL;
}

typedef struct {
    const answer *a;          /* first of n answers */
    int n;                    /* how many */
} answer_set;

static bool all_answered(const void *arg)
{
    const answer_set *set = arg;
    for (int i = 0; i < set->n; i++)
        if (set->a[i].calls == 0)
            return false;
    return true;
}

/* Runs the loop until `answers` callbacks have all come (bounded). */
static void wait_all(fixture *f, answer *answers, int n)
{
    answer_set set = {answers, n};
    tl_run_until(f->m.base, all_answered, &set, WAIT_MS);
    for (int i = 0; i < n; i++)
        assert_int_equal(answers[i].calls, 1);
}

static engine *make_engine_kept(fixture *f, int max_cas_retries, int handler_timeout_ms, int events_kept)
{
    engine_options opt;
    engine_options_default(&opt);
    opt.max_events_kept = events_kept;
    opt.store = f->m.store;
    opt.handlers = &f->env;
    opt.max_cas_retries = max_cas_retries;
    opt.handler_timeout_ms = handler_timeout_ms;
    return engine_new(f->m.base, &opt, f->dp);
}

static engine *make_engine(fixture *f, int max_cas_retries, int handler_timeout_ms)
{
    engine_options opt;
    engine_options_default(&opt);
    return make_engine_kept(f, max_cas_retries, handler_timeout_ms, opt.max_events_kept);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    tm_capture_begin(&f->log, LOG_INFO);
    tm_start(&f->m, "engine", TM_REGISTRY);
    f->env.base = f->m.base;
    f->env.registry = f->m.registry;
    f->env.store = f->m.store;
    f->env.limits = (handler_limits){.identify_window_s = 3600, .identify_max_per_caller = 100, .identify_max_per_id = 100};
    dp_errors errs = {0};
    f->dp = dialplan_load(SET_DIR, handlers_find, &errs);
    dp_errors_free(&errs);
    assert_non_null(f->dp);
    f->engine = make_engine(f, 3, 3000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    engine_free(f->engine);
    dialplan_unref(f->dp);
    tm_stop(&f->m);
    tm_capture_end(&f->log);
    free(f->log.text);
    metrics_reset();
    free(f);
    return 0;
}

/* Hops -------------------------------------------------------------------------*/

static void hop_async(fixture *f, engine_event_kind kind, const char *sid, const char *input,
                      const char *key, answer *a)
{
    engine_event ev = {.kind = kind, .channel = CHANNEL_VOICE, .session_id = sid,
                       .caller = "13800000001", .entry = "12333", .input = input, .hop_key = key};
    engine_hop(f->engine, &ev, on_answer, a);
    assert_int_equal(a->calls, 0);   /* never inside engine_hop */
}

/* One hop, waited for; returns its answer (output freed by the caller). */
static answer hop(fixture *f, engine_event_kind kind, const char *sid, const char *input)
{
    char key[32];
    snprintf(key, sizeof key, "k%d", ++f->seq);
    answer a = {0};
    hop_async(f, kind, sid, input, key, &a);
    wait_all(f, &a, 1);
    return a;
}

static const char *prompt_ids(json_t *out)
{
    static char buf[512];
    buf[0] = '\0';
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(out, "prompts"), i, p) {
        if (i)
            strcat(buf, " ");
        strcat(buf, json_string_value(json_object_get(p, "id")));
    }
    return buf;
}

static void expect(fixture *f, engine_event_kind kind, const char *sid, const char *input,
                   const char *prompts)
{
    answer a = hop(f, kind, sid, input);
    assert_int_equal(a.status, ENGINE_OK);
    assert_string_equal(prompt_ids(a.output), prompts);
    json_decref(a.output);
}

static long pin_verifications(const fixture *f)
{
    return (long)th_sim_stat(&f->m.sim, "applied.pin_verifications");
}

static char *stored_field(const fixture *f, const char *sid, const char *field)
{
    char key[160];
    snprintf(key, sizeof key, "cl:s:%s", sid);
    const char *argv[] = {"HGET", key, field};
    return th_redis_cmd(&f->m.redis, 3, argv);
}

static long events_len(const fixture *f, const char *sid)
{
    char key[160];
    snprintf(key, sizeof key, "cl:e:%s", sid);
    const char *argv[] = {"LLEN", key};
    char *n = th_redis_cmd(&f->m.redis, 2, argv);
    assert_non_null(n);
    long len = strtol(n, NULL, 10);
    free(n);
    return len;
}

typedef struct {
    int calls;                /* callbacks seen */
    store_status st;          /* the status */
    char text[4096];          /* the events without timestamps, joined by "|" */
} events_answer;

static void on_events(store_status st, json_t *events, void *arg)
{
    events_answer *a = arg;
    a->calls++;
    a->st = st;
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) {
        /* "KIND NODE MS[ INPUT]" → "KIND NODE[ INPUT]" */
        const char *text = json_string_value(e);
        const char *ms = strchr(strchr(text, ' ') + 1, ' ') + 1;
        const char *rest = strchr(ms, ' ');
        if (i)
            strcat(a->text, "|");
        strncat(a->text, text, (size_t)(ms - 1 - text));
        if (rest)
            strcat(a->text, rest);
    }
}

/* The session's events as an agent reads them (store_load_events). */
static events_answer stored_events(fixture *f, const char *sid)
{
    events_answer a = {0};
    store_load_events(f->m.store, sid, on_events, &a);
    long deadline = th_now_ms() + WAIT_MS;
    while (a.calls == 0 && th_now_ms() < deadline)
        event_base_loop(f->m.base, EVLOOP_ONCE);
    assert_int_equal(a.calls, 1);
    return a;
}

static bool log_contains(fixture *f, const char *needle)
{
    fflush(f->log.stream);
    return f->log.text && strstr(f->log.text, needle) != NULL;
}

/* Tests ---------------------------------------------------------------------------*/

static void test_pin_check_through_registry(void **state)
{
    fixture *f = *state;
    expect(f, ENGINE_EV_START, "call-1", NULL, "welcome main_menu");
    expect(f, ENGINE_EV_INPUT, "call-1", "2", "enter_id");
    expect(f, ENGINE_EV_INPUT, "call-1", WANG_ID, "enter_pin");
    long before = pin_verifications(f);
    answer a = hop(f, ENGINE_EV_INPUT, "call-1", WANG_PIN);
    assert_int_equal(a.status, ENGINE_OK);
    assert_string_equal(prompt_ids(a.output), "verified goodbye");
    json_t *vars = json_object_get(json_array_get(json_object_get(a.output, "prompts"), 0), "vars");
    assert_string_equal(json_string_value(json_object_get(vars, "card")), "A52870316");
    assert_string_equal(json_string_value(json_object_get(a.output, "state")), "end");
    json_decref(a.output);
    assert_int_equal(pin_verifications(f), before + 1);

    /* The events were saved with each hop, the ID masked, the PIN only as "<secret>". */
    events_answer ev = stored_events(f, "call-1");
    assert_int_equal(ev.st, STORE_OK);
    assert_string_equal(ev.text, "start main.welcome|input main.main_menu 2|input verify.ask_id 110101********4514"
                                 "|input verify.ask_pin <secret>|result verify.check ok");

    /* The PIN is nowhere in Redis (documents and event lists) nor in the
     * log; the log has the hop lines. */
    char *redis = th_redis_dump(&f->m.redis);
    assert_non_null(redis);
    assert_non_null(strstr(redis, "A52870316"));
    assert_non_null(strstr(redis, "cl:e:call-1\n"));
    assert_non_null(strstr(redis, "<secret>"));
    assert_null(strstr(redis, WANG_PIN));
    free(redis);
    assert_true(log_contains(f, "event=engine.hop"));
    assert_false(log_contains(f, WANG_PIN));
    assert_false(log_contains(f, "13800000001"));

    /* The session ended: a new input finds none. */
    a = hop(f, ENGINE_EV_INPUT, "call-1", "1");
    assert_int_equal(a.status, ENGINE_NO_SESSION);
    assert_null(a.output);
}

static void test_replay_runs_nothing_twice(void **state)
{
    fixture *f = *state;
    expect(f, ENGINE_EV_START, "call-2", NULL, "welcome main_menu");
    expect(f, ENGINE_EV_INPUT, "call-2", "2", "enter_id");
    expect(f, ENGINE_EV_INPUT, "call-2", WANG_ID, "enter_pin");
    long before = pin_verifications(f);
    answer first = {0}, again = {0};
    hop_async(f, ENGINE_EV_INPUT, "call-2", "000000", "pin-hop", &first);
    wait_all(f, &first, 1);
    assert_int_equal(first.status, ENGINE_OK);
    assert_string_equal(prompt_ids(first.output), "wrong_pin enter_pin");
    char *rev = stored_field(f, "call-2", "rev");
    long events = events_len(f, "call-2");

    hop_async(f, ENGINE_EV_INPUT, "call-2", "000000", "pin-hop", &again);
    wait_all(f, &again, 1);
    assert_int_equal(again.status, ENGINE_OK);
    assert_true(json_equal(first.output, again.output));
    assert_int_equal(pin_verifications(f), before + 1);
    char *rev2 = stored_field(f, "call-2", "rev");
    assert_string_equal(rev, rev2);
    assert_int_equal(events_len(f, "call-2"), events);   /* a replay appends nothing */
    free(rev);
    free(rev2);
    json_decref(first.output);
    json_decref(again.output);
}

static void test_racing_same_hop_applies_once(void **state)
{
    fixture *f = *state;
    expect(f, ENGINE_EV_START, "call-3", NULL, "welcome main_menu");
    char *rev = stored_field(f, "call-3", "rev");
    answer a[RACERS] = {0};
    for (int i = 0; i < RACERS; i++)
        hop_async(f, ENGINE_EV_INPUT, "call-3", "9", "same-key", &a[i]);
    wait_all(f, a, RACERS);
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(a[i].status, ENGINE_OK);
        assert_true(json_equal(a[0].output, a[i].output));
    }
    for (int i = 0; i < RACERS; i++)
        json_decref(a[i].output);
    char *rev2 = stored_field(f, "call-3", "rev");
    assert_int_equal(strtol(rev2, NULL, 10), strtol(rev, NULL, 10) + 1);
    assert_int_equal(events_len(f, "call-3"), 2);   /* start + the one applied input */
    free(rev);
    free(rev2);
}

static void test_racing_hops_without_retries(void **state)
{
    fixture *f = *state;
    engine_free(f->engine);
    f->engine = make_engine(f, 0, 3000);
    expect(f, ENGINE_EV_START, "call-4", NULL, "welcome main_menu");
    answer a[RACERS] = {0};
    for (int i = 0; i < RACERS; i++) {
        char key[16];
        snprintf(key, sizeof key, "race-%d", i);
        hop_async(f, ENGINE_EV_INPUT, "call-4", "9", key, &a[i]);
    }
    wait_all(f, a, RACERS);
    int ok = 0, busy = 0;
    for (int i = 0; i < RACERS; i++) {
        ok += a[i].status == ENGINE_OK;
        busy += a[i].status == ENGINE_BUSY;
        json_decref(a[i].output);
    }
    assert_int_equal(ok, 1);
    assert_int_equal(busy, RACERS - 1);
    assert_int_equal(events_len(f, "call-4"), 2);   /* only the winner's event */
}

/* Hops that lose races re-run; only the attempt that is saved adds its
 * events, so each applied hop appears exactly once. */
static void test_cas_retries_append_once(void **state)
{
    fixture *f = *state;
    engine_free(f->engine);
    f->engine = make_engine(f, RACERS, 3000);
    expect(f, ENGINE_EV_START, "call-13", NULL, "welcome main_menu");
    answer a[RACERS] = {0};
    for (int i = 0; i < RACERS; i++) {
        char key[16];
        snprintf(key, sizeof key, "retry-%d", i);
        hop_async(f, ENGINE_EV_INPUT, "call-13", "9", key, &a[i]);
    }
    wait_all(f, a, RACERS);
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(a[i].status, ENGINE_OK);
        json_decref(a[i].output);
    }
    char *rev = stored_field(f, "call-13", "rev");
    assert_int_equal(strtol(rev, NULL, 10), 1 + RACERS);
    free(rev);
    assert_int_equal(events_len(f, "call-13"), 1 + RACERS);
    events_answer ev = stored_events(f, "call-13");
    assert_string_equal(ev.text, "start main.welcome|input main.main_menu 9|input main.main_menu 9|"
                                 "input main.main_menu 9|input main.main_menu 9|input main.main_menu 9|"
                                 "input main.main_menu 9|input main.main_menu 9|input main.main_menu 9");
}

/* The list keeps the newest max_events_kept and expires with the session. */
static void test_events_are_bounded(void **state)
{
    fixture *f = *state;
    engine_free(f->engine);
    f->engine = make_engine_kept(f, 3, 3000, 5);
    expect(f, ENGINE_EV_START, "call-14", NULL, "welcome main_menu");
    expect(f, ENGINE_EV_INPUT, "call-14", "3", "lang_set main_menu");
    for (int i = 0; i < 6; i++)
        expect(f, ENGINE_EV_INPUT, "call-14", "9", "lang_set main_menu"); /* 9 says it again */
    expect(f, ENGINE_EV_TIMEOUT, "call-14", NULL, "no_input main_menu");
    events_answer ev = stored_events(f, "call-14");
    assert_string_equal(ev.text, "input main.main_menu 9|input main.main_menu 9|input main.main_menu 9|"
                                 "input main.main_menu 9|timeout main.main_menu");
    /* The list expires with the session (their alignment is the store's
     * to prove, in test_store). */
    const char *list[] = {"PEXPIRETIME", "cl:e:call-14"};
    char *expires_at = th_redis_cmd(&f->m.redis, 2, list);
    assert_true(strtoll(expires_at, NULL, 10) > 0);
    free(expires_at);
    /* No document carries events any more. */
    char *doc = stored_field(f, "call-14", "doc");
    assert_null(strstr(doc, "\"events\""));
    free(doc);

    /* Kept 0: nothing is recorded. */
    engine_free(f->engine);
    f->engine = make_engine_kept(f, 3, 3000, 0);
    expect(f, ENGINE_EV_START, "call-15", NULL, "welcome main_menu");
    ev = stored_events(f, "call-15");
    assert_int_equal(ev.st, STORE_OK);
    assert_string_equal(ev.text, "");
    assert_int_equal(stored_events(f, "nobody").st, STORE_NOT_FOUND);
}

static void test_redis_down_is_unavailable(void **state)
{
    fixture *f = *state;
    expect(f, ENGINE_EV_START, "call-5", NULL, "welcome main_menu");
    th_stop(&f->m.redis, 2000);
    answer a = hop(f, ENGINE_EV_INPUT, "call-5", "1");
    assert_int_equal(a.status, ENGINE_UNAVAILABLE);
    assert_null(a.output);
}

static void test_registry_down_takes_unavailable_branch(void **state)
{
    fixture *f = *state;
    assert_int_equal(th_http(f->m.sim.port, "PUT", "/_sim/fault", "{\"status\": 503}", NULL, NULL), 200);
    expect(f, ENGINE_EV_START, "call-6", NULL, "welcome main_menu");
    expect(f, ENGINE_EV_INPUT, "call-6", "1", "enter_id");
    answer a = hop(f, ENGINE_EV_INPUT, "call-6", WANG_ID);
    assert_int_equal(a.status, ENGINE_OK);
    assert_string_equal(prompt_ids(a.output), "unavailable");
    assert_string_equal(json_string_value(json_object_get(a.output, "state")), "end");
    json_decref(a.output);
}

static void test_locked_pin(void **state)
{
    fixture *f = *state;
    expect(f, ENGINE_EV_START, "call-12", NULL, "welcome main_menu");
    expect(f, ENGINE_EV_INPUT, "call-12", "2", "enter_id");
    expect(f, ENGINE_EV_INPUT, "call-12", CHEN_ID, "enter_pin");
    expect(f, ENGINE_EV_INPUT, "call-12", "135790", "locked");
}

static void test_slow_handler_times_out(void **state)
{
    fixture *f = *state;
    engine_free(f->engine);
    f->engine = make_engine(f, 3, 300);
    assert_int_equal(th_http(f->m.sim.port, "PUT", "/_sim/fault", "{\"delay_ms\": 1500, \"count\": 1}", NULL, NULL), 200);
    expect(f, ENGINE_EV_START, "call-11", NULL, "welcome main_menu");
    expect(f, ENGINE_EV_INPUT, "call-11", "1", "enter_id");
    expect(f, ENGINE_EV_INPUT, "call-11", WANG_ID, "unavailable");
}

static long long sim_requests_before;

static bool sim_reached(const void *arg)
{
    const fixture *f = arg;
    return th_sim_stat(&f->m.sim, "requests") > sim_requests_before;
}

/* engine_free while a handler call is out: the hop is answered unavailable
 * once, the call is abandoned, and its late answer touches nothing. */
static void test_free_with_a_handler_call_in_flight(void **state)
{
    fixture *f = *state;
    engine_free(f->engine);
    f->engine = make_engine(f, 3, 30000);
    assert_int_equal(th_http(f->m.sim.port, "PUT", "/_sim/fault", "{\"delay_ms\": 300, \"count\": 1}", NULL, NULL), 200);
    expect(f, ENGINE_EV_START, "call-13", NULL, "welcome main_menu");
    expect(f, ENGINE_EV_INPUT, "call-13", "1", "enter_id");
    sim_requests_before = th_sim_stat(&f->m.sim, "requests");
    answer a = {0};
    hop_async(f, ENGINE_EV_INPUT, "call-13", WANG_ID, "k-late", &a);
    assert_true(tl_run_until(f->m.base, sim_reached, f, 5000));
    engine_free(f->engine);
    f->engine = NULL;
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, ENGINE_UNAVAILABLE);
    /* The delayed answer comes and is dropped. */
    tl_run_turns(f->m.base, 50);
    assert_int_equal(a.calls, 1);
}

static void test_card_status_ok(void **state)
{
    fixture *f = *state;
    expect(f, ENGINE_EV_START, "call-7", NULL, "welcome main_menu");
    expect(f, ENGINE_EV_INPUT, "call-7", "1", "enter_id");
    answer a = hop(f, ENGINE_EV_INPUT, "call-7", WANG_ID);
    assert_int_equal(a.status, ENGINE_OK);
    assert_string_equal(prompt_ids(a.output), "status_is after_menu");
    json_t *vars = json_object_get(json_array_get(json_object_get(a.output, "prompts"), 0), "vars");
    assert_string_equal(json_string_value(json_object_get(vars, "card")), "A52870316");
    /* A prompt carries only what its wordings use: status_is says the card,
     * not the bank's hotline the handler also set. */
    assert_null(json_object_get(vars, "bank_hotline"));
    json_decref(a.output);
}

static double store_ops(const char *op, const char *result)
{
    char labels[64];
    snprintf(labels, sizeof labels, "op=\"%s\",result=\"%s\"", op, result);
    return metrics_value(metrics_counter("cardline_store_ops_total", "", labels));
}

static double loads(void)
{
    return store_ops("load", "ok") + store_ops("load", "not_found");
}

/* A START on a new session id creates it in one round trip (no load); one
 * on an existing id learns so from the refused save and goes the usual
 * way: a retry is replayed, a new START replaces the session. */
static void test_start_creates_without_load(void **state)
{
    fixture *f = *state;
    double loaded = loads(), saved = store_ops("save", "ok");
    answer first = hop(f, ENGINE_EV_START, "call-new", NULL);
    assert_int_equal(first.status, ENGINE_OK);
    assert_string_equal(prompt_ids(first.output), "welcome main_menu");
    assert_true(loads() == loaded);
    assert_true(store_ops("save", "ok") == saved + 1);
    char *rev = stored_field(f, "call-new", "rev");
    assert_string_equal(rev, "1");
    free(rev);

    /* The same START again (its key is k<seq>): answered from last_hop. */
    answer again = {0};
    char key[32];
    snprintf(key, sizeof key, "k%d", f->seq);
    hop_async(f, ENGINE_EV_START, "call-new", NULL, key, &again);
    wait_all(f, &again, 1);
    assert_int_equal(again.status, ENGINE_OK);
    assert_true(json_equal(first.output, again.output));
    rev = stored_field(f, "call-new", "rev");
    assert_string_equal(rev, "1");
    free(rev);
    assert_int_equal(events_len(f, "call-new"), 1);
    assert_true(store_ops("save", "conflict") >= 1);

    /* A new START on it replaces the session, on the loaded revision. */
    expect(f, ENGINE_EV_INPUT, "call-new", "3", "lang_set main_menu");
    expect(f, ENGINE_EV_START, "call-new", NULL, "welcome main_menu");
    rev = stored_field(f, "call-new", "rev");
    assert_string_equal(rev, "3");
    free(rev);
    char *doc = stored_field(f, "call-new", "doc");
    assert_non_null(strstr(doc, "\"lang\":\"zh\""));
    free(doc);
    json_decref(first.output);
    json_decref(again.output);
}

/* A session keeps only as much of its entry as routes it: an SMS entry is
 * the whole text, which may hold a PIN; a voice number is kept whole. */
static void test_entry_kept_as_routed(void **state)
{
    fixture *f = *state;
    answer a = {0};
    engine_event ev = {.kind = ENGINE_EV_START, .channel = CHANNEL_SMS, .session_id = "sms:+8613800000001",
                       .caller = "+8613800000001", .entry = "cx " WANG_PIN, .hop_key = "k-sms"};
    engine_hop(f->engine, &ev, on_answer, &a);
    wait_all(f, &a, 1);
    assert_int_equal(a.status, ENGINE_OK);
    json_decref(a.output);
    char *doc = stored_field(f, "sms:+8613800000001", "doc");
    assert_non_null(strstr(doc, "\"entry\":\"cx\""));
    assert_null(strstr(doc, WANG_PIN));
    free(doc);
    expect(f, ENGINE_EV_START, "call-entry", NULL, "welcome main_menu");
    doc = stored_field(f, "call-entry", "doc");
    assert_non_null(strstr(doc, "\"entry\":\"12333\""));
    free(doc);
}

/* A session with an agent holds: the caller's input, timeout and no-input
 * and a START asking to keep it are answered ENGINE_HELD with the session
 * as it stands (its language and transfer, no prompts) and change nothing;
 * a plain START still replaces it, the agent's hand-back still moves it. */
static void test_transferred_session_holds_input(void **state)
{
    fixture *f = *state;
    expect(f, ENGINE_EV_START, "call-h", NULL, "welcome main_menu");
    expect(f, ENGINE_EV_INPUT, "call-h", "3", "lang_set main_menu");
    expect(f, ENGINE_EV_INPUT, "call-h", "0", "transferring");
    char *rev = stored_field(f, "call-h", "rev");
    long events = events_len(f, "call-h");
    const engine_event_kind held_kinds[] = {ENGINE_EV_INPUT, ENGINE_EV_TIMEOUT, ENGINE_EV_NO_INPUT};
    for (size_t i = 0; i < sizeof held_kinds / sizeof *held_kinds; i++) {
        answer a = hop(f, held_kinds[i], "call-h", "1");
        assert_int_equal(a.status, ENGINE_HELD);
        assert_non_null(a.output);
        assert_string_equal(json_string_value(json_object_get(a.output, "state")), "transfer");
        assert_string_equal(json_string_value(json_object_get(a.output, "lang")), "en");
        assert_string_equal(json_string_value(json_object_get(json_object_get(a.output, "transfer"), "queue")),
                            "general");
        assert_int_equal(json_array_size(json_object_get(a.output, "prompts")), 0);
        json_decref(a.output);
    }
    answer kept = {0};
    engine_event ev = {.kind = ENGINE_EV_START, .channel = CHANNEL_VOICE, .session_id = "call-h",
                       .caller = "13800000001", .entry = "12333", .keep_held = true};
    engine_hop(f->engine, &ev, on_answer, &kept);
    wait_all(f, &kept, 1);
    assert_int_equal(kept.status, ENGINE_HELD);
    json_decref(kept.output);
    char *rev2 = stored_field(f, "call-h", "rev");
    assert_string_equal(rev, rev2);
    assert_int_equal(events_len(f, "call-h"), events);
    assert_string_equal(engine_status_name(ENGINE_HELD), "held");

    /* The agent hands back at a node: input applies again. */
    answer back = {0};
    engine_event tb = {.kind = ENGINE_EV_TRANSFER_BACK, .channel = CHANNEL_VOICE, .session_id = "call-h",
                       .node = "main.main_menu"};
    engine_hop(f->engine, &tb, on_answer, &back);
    wait_all(f, &back, 1);
    assert_int_equal(back.status, ENGINE_OK);
    assert_string_equal(prompt_ids(back.output), "main_menu");
    json_decref(back.output);
    expect(f, ENGINE_EV_INPUT, "call-h", "0", "transferring");
    /* A START that does not keep the hold replaces the session. */
    expect(f, ENGINE_EV_START, "call-h", NULL, "welcome main_menu");
    free(rev);
    free(rev2);
}

static long registry_requests(const fixture *f)
{
    return (long)th_sim_stat(&f->m.sim, "requests");
}

/* A START whose flow calls a handler before it waits must not run the
 * handler before the load has ruled out a replay: a retried START runs
 * nothing, as any retried hop. */
static void test_start_calling_at_once_is_replayed(void **state)
{
    fixture *f = *state;
    char dir[300], prompts[512];
    snprintf(dir, sizeof dir, "%s/startcall", f->m.dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    th_write_file_in(dir, "00-settings.yaml",
               "settings:\n  languages: [zh, en]\n  timeout_ms: 5000\n  retries: 2\n"
               "routes:\n  - channel: voice\n    match: '^12333$'\n    flow: main\n");
    th_write_file_in(dir, "flows.yaml",
               "flows:\n  main:\n    nodes:\n"
               "      lookup:\n        call: card_status\n        args: { id: \"" WANG_ID "\" }\n"
               "        on:\n          default: menu\n"
               "      menu:\n        menu: main_menu\n        options:\n          \"1\": bye\n"
               "      bye:\n        end: goodbye\n");
    snprintf(prompts, sizeof prompts, "cp %s/prompts.yaml %s/", SET_DIR, dir);
    assert_int_equal(system(prompts), 0);
    dp_errors errs = {0};
    dialplan *dp = dialplan_load(dir, handlers_find, &errs);
    dp_errors_free(&errs);
    assert_non_null(dp);
    engine_set_dialplan(f->engine, dp);
    dialplan_unref(dp);

    long before = registry_requests(f);
    answer first = {0}, again = {0};
    hop_async(f, ENGINE_EV_START, "call-look", NULL, "start-key", &first);
    wait_all(f, &first, 1);
    assert_int_equal(first.status, ENGINE_OK);
    assert_string_equal(prompt_ids(first.output), "main_menu");
    assert_int_equal(registry_requests(f), before + 1);
    hop_async(f, ENGINE_EV_START, "call-look", NULL, "start-key", &again);
    wait_all(f, &again, 1);
    assert_int_equal(again.status, ENGINE_OK);
    assert_true(json_equal(first.output, again.output));
    assert_int_equal(registry_requests(f), before + 1);
    json_decref(first.output);
    json_decref(again.output);
}

static void test_reload_mid_session(void **state)
{
    fixture *f = *state;
    expect(f, ENGINE_EV_START, "call-8", NULL, "welcome main_menu");
    expect(f, ENGINE_EV_INPUT, "call-8", "1", "enter_id");
    dp_errors errs = {0};
    dialplan *reloaded = dialplan_load(RELOADED_DIR, handlers_find, &errs);
    dp_errors_free(&errs);
    assert_non_null(reloaded);
    engine_set_dialplan(f->engine, reloaded);
    dialplan_unref(reloaded);
    assert_ptr_equal(engine_dialplan(f->engine), reloaded);
    expect(f, ENGINE_EV_INPUT, "call-8", WANG_ID, "restarted enter_id");
    expect(f, ENGINE_EV_INPUT, "call-8", WANG_ID, "goodbye");
}

static void test_bad_events(void **state)
{
    fixture *f = *state;
    answer a = hop(f, ENGINE_EV_INPUT, "nobody", "1");
    assert_int_equal(a.status, ENGINE_NO_SESSION);
    a = hop(f, ENGINE_EV_INPUT, "has space", "1");
    assert_int_equal(a.status, ENGINE_BAD_EVENT);
    char big[600];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect(f, ENGINE_EV_START, "call-9", NULL, "welcome main_menu");
    a = hop(f, ENGINE_EV_INPUT, "call-9", big);
    assert_int_equal(a.status, ENGINE_BAD_EVENT);
    answer r = {0};
    engine_event ev = {.kind = ENGINE_EV_START, .channel = CHANNEL_VOICE, .session_id = "call-10",
                       .caller = "13800000001", .entry = "99999"};
    engine_hop(f->engine, &ev, on_answer, &r);
    wait_all(f, &r, 1);
    assert_int_equal(r.status, ENGINE_NO_ROUTE);
    /* The bad input changed nothing: the menu still answers (9: the welcome again, then the menu). */
    expect(f, ENGINE_EV_INPUT, "call-9", "9", "welcome main_menu");
}

typedef struct {
    int calls;                /* times the engine asked */
    char previous[64];        /* the previous hop key it gave */
    char note[64];            /* the note it gave ("" for none) */
    bool had_output;          /* it gave the last hop's output */
    const char *input;        /* what to answer, or NULL to refuse */
    bool answer;              /* ask for the last hop's answer instead */
} deriver;

static engine_derived derive(const engine_consumed *c, char *out, size_t size, void *arg)
{
    deriver *d = arg;
    d->calls++;
    snprintf(d->previous, sizeof d->previous, "%s", c->last_key);
    snprintf(d->note, sizeof d->note, "%s", c->note ? c->note : "");
    d->had_output = json_is_object(c->last_output);
    if (d->answer)
        return ENGINE_DERIVE_ANSWERED;
    if (!d->input)
        return ENGINE_DERIVE_REFUSED;
    snprintf(out, size, "%s", d->input);
    return ENGINE_DERIVED;
}

static void on_noted(store_status st, void *arg)
{
    *(store_status *)arg = st;
}

static bool note_done(const void *arg)
{
    return *(const store_status *)arg != STORE_TIMEOUT;
}

static answer derived_hop(fixture *f, const char *sid, const char *key, deriver *d)
{
    engine_event ev = {.kind = ENGINE_EV_INPUT, .channel = CHANNEL_VOICE, .session_id = sid,
                       .hop_key = key, .derive_input = derive, .derive_arg = d};
    answer a = {0};
    engine_hop(f->engine, &ev, on_answer, &a);
    wait_all(f, &a, 1);
    return a;
}

/* The channel derives the input from what the session consumed (the last
 * applied hop's key and output, its note), before the replay check: it
 * may ask for the stored answer again; a refusal changes nothing. */
static void test_derived_input(void **state)
{
    fixture *f = *state;
    expect(f, ENGINE_EV_START, "call-d", NULL, "welcome main_menu");   /* key "k1" */
    char *rev = stored_field(f, "call-d", "rev");

    deriver refuse = {0};
    answer a = derived_hop(f, "call-d", "d-1", &refuse);
    assert_int_equal(a.status, ENGINE_BAD_EVENT);
    assert_int_equal(refuse.calls, 1);
    assert_string_equal(refuse.previous, "k1");
    assert_true(refuse.had_output);
    assert_string_equal(refuse.note, "");
    char *rev2 = stored_field(f, "call-d", "rev");
    assert_string_equal(rev, rev2);

    deriver two = {.input = "2"};
    a = derived_hop(f, "call-d", "d-2", &two);
    assert_int_equal(a.status, ENGINE_OK);
    assert_string_equal(prompt_ids(a.output), "enter_id");
    assert_string_equal(two.previous, "k1");
    json_decref(a.output);

    store_status noted = STORE_TIMEOUT;
    store_note(f->m.store, "call-d", "held d-2", on_noted, &noted);
    tl_run_until(f->m.base, note_done, &noted, WAIT_MS);
    assert_int_equal(noted, STORE_OK);
    char *rev3 = stored_field(f, "call-d", "rev");
    deriver again = {.answer = true};
    a = derived_hop(f, "call-d", "d-2", &again);      /* asks for the stored answer: nothing runs */
    assert_int_equal(a.status, ENGINE_OK);
    assert_string_equal(prompt_ids(a.output), "enter_id");
    assert_int_equal(again.calls, 1);
    assert_string_equal(again.note, "held d-2");
    json_decref(a.output);
    char *rev4 = stored_field(f, "call-d", "rev");
    assert_string_equal(rev3, rev4);

    deriver id = {.input = WANG_ID};
    a = derived_hop(f, "call-d", "d-3", &id);
    assert_int_equal(a.status, ENGINE_OK);
    assert_string_equal(prompt_ids(a.output), "enter_pin");
    assert_string_equal(id.previous, "d-2");
    assert_string_equal(id.note, "held d-2");      /* saves leave the note alone */
    json_decref(a.output);
    free(rev);
    free(rev2);
    free(rev3);
    free(rev4);
}

static void test_free_with_hops_in_flight(void **state)
{
    fixture *f = *state;
    answer a[4] = {0};
    for (int i = 0; i < 4; i++) {
        char sid[16];
        snprintf(sid, sizeof sid, "gone-%d", i);
        hop_async(f, ENGINE_EV_START, sid, NULL, NULL, &a[i]);
    }
    engine_free(f->engine);
    f->engine = NULL;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].status, ENGINE_UNAVAILABLE);
    }
    /* The orphaned hops' store callbacks still come and free them. */
    long deadline = th_now_ms() + 2000;
    while (th_now_ms() < deadline)
        event_base_loop(f->m.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(a[i].calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pin_check_through_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_runs_nothing_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_racing_same_hop_applies_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_racing_hops_without_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cas_retries_append_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_down_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_down_takes_unavailable_branch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_pin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_handler_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_card_status_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_creates_without_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_kept_as_routed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_calling_at_once_is_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_mid_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_hops_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_a_handler_call_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_derived_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transferred_session_holds_input, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
