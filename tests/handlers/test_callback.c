/* test_callback — request_callback against a real redis-server, called the
 * way the engine calls it (handler_call_start): the stream entry and its
 * state hash with exactly the fields agents read, the context from the
 * stored session (verification masked), one callback per call key however
 * often a hop is replayed, and "unavailable" with Redis down or a caller
 * who is no phone number, and at most callbacks_per_number bookings per
 * number however many arrive at once ("too_many" past it). The loop runs until the awaited callback has
 * come, under a bounded deadline; nothing depends on timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler_call.h"
#include "handlers.h"
#include "harness.h"
#include "loop.h"
#include "modules.h"
#include "log.h"
#include "store.h"
#include "walltime.h"

#define WAIT_MS 15000
#define WANG_ID "110101199003074514"
#define SESSION "ussd:cb-test"
#define SEVEN_DAYS 604800
#define CALLBACKS_PER_NUMBER 3
#define FLOOD 100

typedef struct {
    tm_world m;               /* Redis, its client and the loop (no registry) */
    handler_env env;          /* what the handler uses */
} fixture;

typedef struct {
    bool done;                /* the call ended */
    char result[32];          /* with this result */
    char ref[32];             /* callback_ref, or "" */
} outcome;

static void on_done(const char *result, json_t *vars, void *arg)
{
    outcome *o = arg;
    o->done = true;
    snprintf(o->result, sizeof o->result, "%s", result);
    json_t *ref = json_object_get(vars, "callback_ref");
    snprintf(o->ref, sizeof o->ref, "%s", json_is_string(ref) ? json_string_value(ref) : "");
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    tm_start(&f->m, "callback", 0);
    f->env.base = f->m.base;
    f->env.store = f->m.store;
    f->env.limits.number_window_s = 3600;
    f->env.limits.callbacks_per_number = CALLBACKS_PER_NUMBER;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tm_stop(&f->m);
    free(f);
    return 0;
}

/* One call of request_callback with `call_key`; `at` may be NULL. */
static outcome call(fixture *f, const char *caller, const char *call_key, const char *at)
{
    json_t *args = json_pack("{s:s, s:s, s:s}", "caller", caller, "lang", "zh", "reason",
                             "caller asked for a callback at main.main_menu");
    if (at)
        json_object_set_new(args, "at", json_string(at));
    handler_call_spec spec = {
        .def = handlers_find("request_callback"),
        .env = &f->env,
        .channel = CHANNEL_USSD,
        .caller = caller,
        .session_id = SESSION,
        .call_key = call_key,
        .args = args,
    };
    assert_non_null(spec.def);
    outcome o = {0};
    handler_call_start(&spec, on_done, &o);
    assert_true(tl_run_until_true(f->m.base, &o.done, WAIT_MS));
    return o;
}

static char *redis(const fixture *f, int argc, const char **argv)
{
    char *out = th_redis_cmd(&f->m.redis, argc, argv);
    assert_non_null(out);
    return out;
}

static long stream_len(const fixture *f)
{
    const char *argv[] = {"XLEN", "cl:callbacks"};
    char *n = redis(f, 2, argv);
    long v = strtol(n, NULL, 10);
    free(n);
    return v;
}

/* Every field of every stream entry, "name=value" joined by "|". */
static char *stream_fields(const fixture *f)
{
    const char *script =
        "local out = {} "
        "for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do "
        "  for i = 1, #e[2], 2 do out[#out + 1] = e[2][i] .. '=' .. e[2][i + 1] end "
        "end return table.concat(out, '|')";
    const char *argv[] = {"EVAL", script, "1", "cl:callbacks"};
    return redis(f, 4, argv);
}

static void assert_ref_format(const char *ref)
{
    assert_int_equal(strlen(ref), 12);
    assert_memory_equal(ref, "CB", 2);
    for (size_t i = 2; i < 12; i++)
        assert_non_null(strchr("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", ref[i]));
}

typedef struct {
    bool done;                /* the save ended */
    store_status st;          /* with this status */
} saved;

static void on_saved(store_status st, uint64_t rev, void *arg)
{
    (void)rev;
    saved *r = arg;
    r->done = true;
    r->st = st;
}

static void save_session(fixture *f, json_t *doc)
{
    saved r = {0};
    store_save(f->m.store, SESSION, doc, 0, 300, NULL, on_saved, &r);
    assert_true(tl_run_until_true(f->m.base, &r.done, WAIT_MS));
    assert_int_equal(r.st, STORE_OK);
}

/* Tests -------------------------------------------------------------------------*/

static void test_queued_once_with_every_field(void **state)
{
    fixture *f = *state;
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "id", SESSION, "channel", "ussd", "flow",
                            "agent", "node", "offer_callback", "vars", "verified_id", WANG_ID, "lang", "zh");
    save_session(f, doc);
    json_decref(doc);
    long long before = walltime_ms();
    outcome first = call(f, "13800000001", "abc.1.1", "main.main_menu");
    assert_string_equal(first.result, "ok");
    assert_ref_format(first.ref);

    /* A replayed hop (the same call key) queues nothing and gets the same reference. */
    outcome again = call(f, "13800000001", "abc.1.1", "main.main_menu");
    assert_string_equal(again.result, "ok");
    assert_string_equal(again.ref, first.ref);
    assert_int_equal(stream_len(f), 1);

    char *fields = stream_fields(f);
    char want[1024];
    snprintf(want, sizeof want,
             "ref=%s|session=" SESSION "|caller=+8613800000001|lang=zh|"
             "reason=caller asked for a callback at main.main_menu|"
             "context={\"flow\":\"main\",\"node\":\"main_menu\",\"verified\":true,"
             "\"verified_id\":\"110101********4514\"}|created_ms=",
             first.ref);
    assert_memory_equal(fields, want, strlen(want));
    long long created = strtoll(fields + strlen(want), NULL, 10);
    assert_true(created >= before && created <= walltime_ms());
    assert_null(strstr(fields, WANG_ID));
    free(fields);

    char key[64];
    snprintf(key, sizeof key, "cl:cb:%s", first.ref);
    const char *state_argv[] = {"HGET", key, "state"};
    char *st = redis(f, 3, state_argv);
    assert_string_equal(st, "queued");
    free(st);
    const char *ttl_argv[] = {"TTL", key};
    char *ttl = redis(f, 2, ttl_argv);
    assert_true(atol(ttl) > SEVEN_DAYS - 60 && atol(ttl) <= SEVEN_DAYS);
    free(ttl);
    const char *dedupe_argv[] = {"GET", "cl:cb:k:abc.1.1"};
    char *dedupe = redis(f, 2, dedupe_argv);
    assert_string_equal(dedupe, first.ref);
    free(dedupe);

    /* Another call (another step of the session) is another callback. */
    outcome other = call(f, "+8613800000001", "abc.2.1", NULL);
    assert_string_equal(other.result, "ok");
    assert_string_not_equal(other.ref, first.ref);
    assert_int_equal(stream_len(f), 2);
}

/* No stored session (it expired) and no `at`: the request still queues,
 * with an empty place and no verification. */
static void test_context_without_a_session(void **state)
{
    fixture *f = *state;
    outcome o = call(f, "+8613800000002", "xyz.1.1", NULL);
    assert_string_equal(o.result, "ok");
    char *fields = stream_fields(f);
    assert_non_null(strstr(fields, "|context={\"flow\":\"\",\"node\":\"\",\"verified\":false,\"verified_id\":null}|"));
    free(fields);
}

static void test_not_a_phone_number_is_unavailable(void **state)
{
    fixture *f = *state;
    outcome o = call(f, "alice", "bad.1.1", NULL);
    assert_string_equal(o.result, "unavailable");
    assert_string_equal(o.ref, "");
    assert_int_equal(stream_len(f), 0);
}

/* 100 bookings for one number sent at once (distinct hops): only the
 * allowance is queued, whatever the interleaving; another number still
 * books. */
static void test_callbacks_limited_per_number(void **state)
{
    fixture *f = *state;
    static outcome outs[FLOOD];
    char keys[FLOOD][32];
    for (int i = 0; i < FLOOD; i++) {
        outs[i] = (outcome){0};
        snprintf(keys[i], sizeof keys[i], "flood.%d.1", i);
        handler_call_spec spec = {
            .def = handlers_find("request_callback"),
            .env = &f->env,
            .channel = CHANNEL_USSD,
            .caller = "+8613800000005",
            .session_id = SESSION,
            .call_key = keys[i],
            .args = json_pack("{s:s, s:s, s:s}", "caller", "+8613800000005", "lang", "zh", "reason", "flood"),
        };
        handler_call_start(&spec, on_done, &outs[i]);
    }
    int ok = 0;
    for (int i = 0; i < FLOOD; i++) {
        assert_true(tl_run_until_true(f->m.base, &outs[i].done, WAIT_MS));
        ok += strcmp(outs[i].result, "ok") == 0;
        if (strcmp(outs[i].result, "ok") != 0)
            assert_string_equal(outs[i].result, "too_many");
    }
    assert_int_equal(ok, CALLBACKS_PER_NUMBER);
    assert_int_equal(stream_len(f), CALLBACKS_PER_NUMBER);
    outcome o = call(f, "+8613800000006", "other.1.1", NULL);
    assert_string_equal(o.result, "ok");
}

static void test_redis_down_is_unavailable(void **state)
{
    fixture *f = *state;
    th_kill(&f->m.redis);
    tl_wait_store_lost(f->m.base, f->m.store, WAIT_MS);
    assert_false(store_connected(f->m.store));
    outcome o = call(f, "13800000001", "down.1.1", NULL);
    assert_string_equal(o.result, "unavailable");
    assert_string_equal(o.ref, "");
}

int main(void)
{
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queued_once_with_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_without_a_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_phone_number_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_down_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callbacks_limited_per_number, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
