/* test_outbox — the durable outbox against a real redis-server: add,
 * deliver and acknowledge; dedupe keys; retry-later with backoff until
 * done; give-up and too many attempts parked as dead; refused adds; a
 * gateway that vanished mid-attempt (its entries reclaimed by a successor
 * and delivered exactly once); Redis SIGKILLed and restarted from its AOF
 * with entries pending. The loop runs until a condition holds, with a
 * bounded deadline; no assertion depends on timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "harness.h"
#include "loop.h"
#include "modules.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "store.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 20000
#define MAX_SEEN 64

typedef struct {
    tm_world m;              /* Redis (AOF on), the loop and the connection the outbox runs on */
} fixture;

static fixture *F; /* for the conditions the loop waits for: one fixture at a time */

/* What a test deliverer saw and how it answers. */
typedef struct {
    int attempts;                  /* deliverer calls */
    int done;                      /* attempts finished DONE */
    char ids[MAX_SEEN][48];        /* entry id of each call */
    int numbers[MAX_SEEN];         /* attempt number of each call */
    int fail_first;                /* answer RETRY to this many calls first */
    bool always_retry;             /* answer RETRY to every call */
    bool give_up;                  /* answer GIVE_UP */
    bool hold;                     /* keep the attempt open (a hung or dying gateway) */
    outbox_attempt *held[MAX_SEEN];/* the attempts kept open */
    int nheld;                     /* how many */
} sink;

static void deliver(outbox_attempt *a, void *arg)
{
    sink *s = arg;
    int i = s->attempts++;
    if (i < MAX_SEEN) {
        snprintf(s->ids[i], sizeof s->ids[i], "%s", outbox_attempt_id(a));
        s->numbers[i] = outbox_attempt_number(a);
    }
    assert_non_null(json_object_get(outbox_attempt_payload(a), "n"));
    if (s->hold) {
        s->held[s->nheld++] = a;
    } else if (s->give_up) {
        outbox_finish(a, OUTBOX_GIVE_UP, "test");
    } else if (s->always_retry || i < s->fail_first) {
        outbox_finish(a, OUTBOX_RETRY, "test");
    } else {
        s->done++;
        outbox_finish(a, OUTBOX_DONE, NULL);
    }
}

typedef struct {
    int calls;                   /* callbacks run */
    outbox_add_status st;        /* last status */
    char id[48];                 /* last entry id */
} added;

static void on_added(outbox_add_status st, const char *id, void *arg)
{
    added *a = arg;
    a->calls++;
    a->st = st;
    snprintf(a->id, sizeof a->id, "%s", id ? id : "");
}

/* Driving the loop ------------------------------------------------------------*/

static long redis_int(fixture *f, int argc, const char **argv)
{
    char *text = th_redis_cmd(&f->m.redis, argc, argv);
    assert_non_null(text);
    long v = strtol(text, NULL, 10);
    free(text);
    return v;
}

static long stream_len(fixture *f, const char *key)
{
    const char *argv[] = {"XLEN", key};
    return redis_int(f, 2, argv);
}

static bool stream_empty(const void *arg)
{
    (void)arg;
    return stream_len(F, "cl:outbox") == 0;
}

static bool sink_done(const void *arg)
{
    const int *want = ((const int *const *)arg)[1];
    return ((const sink *const *)arg)[0]->done >= *want;
}

static bool sink_attempted(const void *arg)
{
    const int *want = ((const int *const *)arg)[1];
    return ((const sink *const *)arg)[0]->attempts >= *want;
}

static void wait_done(fixture *f, sink *s, int n)
{
    const void *arg[2] = {s, &n};
    assert_true(tl_run_until(f->m.base, sink_done, arg, WAIT_MS));
}

static bool called(const void *arg)
{
    return ((const added *)arg)->calls > 0;
}

static added add_one(fixture *f, outbox *ob, const char *kind, int n, const char *key)
{
    added a = {0};
    json_t *p = json_pack("{s:i,s:s}", "n", n, "to", "+15550001111");
    outbox_add(ob, kind, p, key, on_added, &a);
    json_decref(p);
    assert_int_equal(a.calls, 0); /* never inside the call */
    assert_true(tl_run_until(f->m.base, called, &a, WAIT_MS));
    assert_int_equal(a.calls, 1);
    return a;
}

/* Fixture -----------------------------------------------------------------------*/

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    F = f;
    metrics_reset();
    tm_start(&f->m, "cl-outbox", TM_AOF | TM_FAST_RECONNECT);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tm_stop(&f->m);
    metrics_reset();
    free(f);
    return 0;
}

static outbox_options fast_options(const char *consumer)
{
    outbox_options o;
    outbox_options_default(&o);
    o.consumer = consumer;
    o.poll_interval_ms = 20;
    o.backoff_min_ms = 20;
    o.backoff_max_ms = 80;
    o.lease_ms = 300;
    return o;
}

static outbox *open_outbox(fixture *f, const char *consumer, sink *s)
{
    outbox_options o = fast_options(consumer);
    outbox *ob = outbox_new(f->m.base, f->m.store, &o);
    assert_non_null(ob);
    assert_int_equal(outbox_register(ob, "test", OUTBOX_LIMIT_ATTEMPTS_AND_AGE, deliver, s), 0);
    return ob;
}

static double kind_metric(const char *name)
{
    return metrics_value(metrics_counter(name, "", "kind=\"test\""));
}

/* Tests -------------------------------------------------------------------------*/

static void test_add_deliver_ack(void **state)
{
    fixture *f = *state;
    sink s = {0};
    outbox *ob = open_outbox(f, "gw1", &s);
    assert_int_equal(outbox_register(ob, "test", OUTBOX_LIMIT_ATTEMPTS_AND_AGE, deliver, &s), -1); /* one per kind */
    for (int i = 0; i < 3; i++) {
        added a = add_one(f, ob, "test", i, NULL);
        assert_int_equal(a.st, OUTBOX_ADDED);
        assert_true(strchr(a.id, '-') != NULL);
    }
    wait_done(f, &s, 3);
    assert_true(tl_run_until(f->m.base, stream_empty, NULL, WAIT_MS));
    assert_int_equal(s.attempts, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(s.numbers[i], 1);
    assert_int_equal(kind_metric("cardline_outbox_added_total"), 3);
    assert_int_equal(kind_metric("cardline_outbox_delivered_total"), 3);
    const char *due[] = {"ZCARD", "cl:ob:due"};
    const char *pel[] = {"EVAL", "return redis.call('XPENDING', KEYS[1], ARGV[1])[1]", "1",
                         "cl:outbox", "cl:senders"};
    assert_int_equal(redis_int(f, 2, due), 0);
    assert_int_equal(redis_int(f, 5, pel), 0);
    outbox_free(ob);
}

static void test_dedupe_key(void **state)
{
    fixture *f = *state;
    sink s = {.hold = true};
    outbox *ob = open_outbox(f, "gw1", &s);
    added first = add_one(f, ob, "test", 1, "loss:R-1");
    added again = add_one(f, ob, "test", 2, "loss:R-1");
    added other = add_one(f, ob, "test", 3, "loss:R-2");
    assert_int_equal(first.st, OUTBOX_ADDED);
    assert_int_equal(again.st, OUTBOX_DUPLICATE);
    assert_string_equal(again.id, first.id);
    assert_int_equal(other.st, OUTBOX_ADDED);
    assert_string_not_equal(other.id, first.id);
    assert_int_equal(stream_len(f, "cl:outbox"), 2);
    assert_int_equal(kind_metric("cardline_outbox_added_total"), 2);
    for (int i = 0; i < s.nheld; i++)
        outbox_finish(s.held[i], OUTBOX_DONE, NULL);
    outbox_free(ob);
}

static void test_retry_with_backoff_until_done(void **state)
{
    fixture *f = *state;
    sink s = {.fail_first = 3};
    outbox *ob = open_outbox(f, "gw1", &s);
    add_one(f, ob, "test", 1, NULL);
    wait_done(f, &s, 1);
    assert_true(tl_run_until(f->m.base, stream_empty, NULL, WAIT_MS));
    assert_int_equal(s.attempts, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s.numbers[i], i + 1);
        assert_string_equal(s.ids[i], s.ids[0]);
    }
    assert_int_equal(kind_metric("cardline_outbox_retried_total"), 3);
    assert_int_equal(kind_metric("cardline_outbox_delivered_total"), 1);
    outbox_free(ob);
}

static bool dead_count(const void *arg)
{
    return stream_len(F, "cl:outbox:dead") >= *(const long *)arg;
}

static void test_give_up_and_max_attempts_park_dead(void **state)
{
    fixture *f = *state;
    sink quitter = {.give_up = true};
    outbox *ob = open_outbox(f, "gw1", &quitter);
    add_one(f, ob, "test", 1, NULL);
    long one = 1;
    assert_true(tl_run_until(f->m.base, dead_count, &one, WAIT_MS));
    assert_int_equal(quitter.attempts, 1);
    outbox_free(ob);

    sink stubborn = {.always_retry = true};
    outbox_options o = fast_options("gw2");
    o.max_attempts = 3;
    ob = outbox_new(f->m.base, f->m.store, &o);
    outbox_register(ob, "test", OUTBOX_LIMIT_ATTEMPTS_AND_AGE, deliver, &stubborn);
    add_one(f, ob, "test", 2, NULL);
    long two = 2;
    assert_true(tl_run_until(f->m.base, dead_count, &two, WAIT_MS));
    assert_int_equal(stubborn.attempts, 3);
    assert_true(tl_run_until(f->m.base, stream_empty, NULL, WAIT_MS));
    assert_int_equal(kind_metric("cardline_outbox_dead_total"), 2);

    /* Kept with its data and why it died. */
    const char *range[] = {"EVAL",
                           "local e = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
                           "return table.concat(e[1][2], ' ')",
                           "1", "cl:outbox:dead"};
    char *last = th_redis_cmd(&f->m.redis, 4, range);
    assert_non_null(last);
    assert_non_null(strstr(last, "max_attempts"));
    assert_non_null(strstr(last, "\"n\":2"));
    free(last);
    outbox_free(ob);
}

/* A kind registered age-only (loss reports) keeps retrying past
 * max_attempts: a long registry outage parks nothing. */
static void test_age_only_kind_outlives_max_attempts(void **state)
{
    fixture *f = *state;
    sink patient = {.fail_first = 6};
    outbox_options o = fast_options("gw1");
    o.max_attempts = 2;
    outbox *ob = outbox_new(f->m.base, f->m.store, &o);
    assert_int_equal(outbox_register(ob, "test", OUTBOX_LIMIT_AGE_ONLY, deliver, &patient), 0);
    add_one(f, ob, "test", 1, NULL);
    wait_done(f, &patient, 1);
    assert_int_equal(patient.attempts, 7);
    assert_int_equal(stream_len(f, "cl:outbox:dead"), 0);
    assert_true(tl_run_until(f->m.base, stream_empty, NULL, WAIT_MS));
    outbox_free(ob);
}

static void test_invalid_adds_change_nothing(void **state)
{
    fixture *f = *state;
    sink s = {0};
    outbox_options o = fast_options("gw1");
    o.max_payload_bytes = 64;
    outbox *ob = outbox_new(f->m.base, f->m.store, &o);
    outbox_register(ob, "test", OUTBOX_LIMIT_ATTEMPTS_AND_AGE, deliver, &s);
    added a = add_one(f, ob, "Bad Kind", 1, NULL);
    assert_int_equal(a.st, OUTBOX_INVALID);
    a = add_one(f, ob, "test", 1, "key with space");
    assert_int_equal(a.st, OUTBOX_INVALID);
    added big = {0};
    json_t *p = json_pack("{s:s}", "n", "0123456789012345678901234567890123456789012345678901234567890123");
    outbox_add(ob, "test", p, NULL, on_added, &big);
    json_decref(p);
    added arr = {0};
    json_t *list = json_array();
    outbox_add(ob, "test", list, NULL, on_added, &arr);
    json_decref(list);
    assert_true(tl_run_until(f->m.base, called, &big, WAIT_MS) && tl_run_until(f->m.base, called, &arr, WAIT_MS));
    assert_int_equal(big.st, OUTBOX_INVALID);
    assert_int_equal(arr.st, OUTBOX_INVALID);
    assert_int_equal(stream_len(f, "cl:outbox"), 0);
    assert_int_equal(s.attempts, 0);

    outbox_options bad = fast_options("has space");
    assert_null(outbox_new(f->m.base, f->m.store, &bad));
    outbox_free(ob);
}

static void test_crashed_gateway_entries_delivered_once(void **state)
{
    fixture *f = *state;
    enum { N = 5 };
    sink dying = {.hold = true};
    outbox *first = open_outbox(f, "gw-dying", &dying);
    for (int i = 0; i < N; i++)
        add_one(f, first, "test", i, NULL);
    int n = N;
    const void *held_arg[2] = {&dying, &n};
    assert_true(tl_run_until(f->m.base, sink_attempted, held_arg, WAIT_MS)); /* all mid-attempt */
    outbox_free(first); /* the gateway is gone: nothing acknowledged */

    sink heir = {0};
    outbox *second = open_outbox(f, "gw-heir", &heir);
    wait_done(f, &heir, N);
    assert_true(tl_run_until(f->m.base, stream_empty, NULL, WAIT_MS));
    /* Let further polls run: nothing is delivered twice. */
    sink *h = &heir;
    tl_run_turns(f->m.base, 50);
    assert_int_equal(h->attempts, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(h->numbers[i], 2); /* the first attempt was the dead gateway's */
        for (int j = 0; j < i; j++)
            assert_string_not_equal(h->ids[i], h->ids[j]);
    }
    /* The dying gateway's deliverer finishing late changes nothing. */
    for (int i = 0; i < dying.nheld; i++)
        outbox_finish(dying.held[i], OUTBOX_DONE, NULL);
    assert_int_equal(stream_len(f, "cl:outbox"), 0);
    outbox_free(second);
}

static void test_redis_restart_with_aof_loses_nothing(void **state)
{
    fixture *f = *state;
    enum { N = 5 };
    sink s = {.always_retry = true};
    outbox *ob = open_outbox(f, "gw1", &s);
    for (int i = 0; i < N; i++)
        assert_int_equal(add_one(f, ob, "test", i, NULL).st, OUTBOX_ADDED);
    int n = N;
    const void *tried[2] = {&s, &n};
    assert_true(tl_run_until(f->m.base, sink_attempted, tried, WAIT_MS)); /* each failed once */
    th_kill(&f->m.redis);
    assert_true(th_redis_start(&f->m.redis, f->m.redis.dir, true));
    assert_true(tl_wait_store(f->m.base, f->m.store, WAIT_MS));
    s.always_retry = false;
    wait_done(f, &s, N);
    assert_true(tl_run_until(f->m.base, stream_empty, NULL, WAIT_MS));
    outbox_free(ob);
}

int main(void)
{
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_deliver_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_with_backoff_until_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_give_up_and_max_attempts_park_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_age_only_kind_outlives_max_attempts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_adds_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crashed_gateway_entries_delivered_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_restart_with_aof_loses_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
