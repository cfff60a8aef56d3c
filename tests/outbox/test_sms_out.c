/* test_sms_out — SMS out through the outbox against real servers: the DLR
 * endpoint over real HTTP on a real Redis, and end to end through a real
 * Kannel (bearerbox, smsbox, the fake SMSC and fakesmsc): messages added
 * while Kannel is down are retried, arrive at the handset exactly once
 * when it is up, and the delivery reports Kannel sends back are recorded.
 * Waiting is bounded polling on conditions; nothing asserts on timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "harness.h"
#include "loop.h"
#include "modules.h"
#include "httpd.h"
#include "kannel.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "sms_out.h"
#include "store.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 30000

typedef struct {
    tm_world m;              /* Redis (AOF on), the loop and its connection */
    outbox *ob;              /* the outbox */
    httpd *http;             /* the listener with /sms/dlr */
    sms_out *so;             /* the sms deliverer (NULL until a test makes it) */
} fixture;

static fixture *F; /* for the conditions the loop waits for: one fixture at a time */

/* Loop helpers --------------------------------------------------------------*/

static char *redis_text(fixture *f, int argc, const char **argv)
{
    return th_redis_cmd(&f->m.redis, argc, argv);
}

static bool field_is(fixture *f, const char *id, const char *name, const char *want)
{
    char key[80];
    snprintf(key, sizeof key, "cl:m:%s", id);
    const char *argv[] = {"HGET", key, name};
    char *got = redis_text(f, 3, argv);
    bool same = got && strcmp(got, want) == 0;
    free(got);
    return same;
}

/* A blocking HTTP GET run in a thread while the loop serves it. */
typedef struct {
    int port;          /* our listener */
    const char *path;  /* path and query */
    long status;       /* the answer's status */
    char *body;        /* the answer's body (malloc'd) */
    bool finished;     /* set by the thread */
} http_call;

static void *http_thread(void *arg)
{
    http_call *c = arg;
    c->status = th_http_get(c->port, c->path, &c->body);
    __atomic_store_n(&c->finished, true, __ATOMIC_RELEASE);
    return NULL;
}

static bool call_finished(const void *arg)
{
    return __atomic_load_n(&((const http_call *)arg)->finished, __ATOMIC_ACQUIRE);
}

/* GETs `path`; the status, and the body in `body` when given (caller frees). */
static long get_body(fixture *f, const char *path, char **body)
{
    http_call c = {.port = httpd_port(f->http), .path = path};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, http_thread, &c), 0);
    bool done = tl_run_until(f->m.base, call_finished, &c, WAIT_MS);
    pthread_join(t, NULL);
    assert_true(done);
    if (body)
        *body = c.body;
    else
        free(c.body);
    return c.status;
}

static long get(fixture *f, const char *path)
{
    return get_body(f, path, NULL);
}

/* Fixture -------------------------------------------------------------------*/

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    F = f;
    metrics_reset();
    tm_start(&f->m, "cl-sms-out", TM_AOF);
    outbox_options oo;
    outbox_options_default(&oo);
    oo.consumer = "gw-test";
    oo.poll_interval_ms = 20;
    oo.backoff_min_ms = 50;
    oo.backoff_max_ms = 200;
    oo.lease_ms = 10000;
    f->ob = outbox_new(f->m.base, f->m.store, &oo);
    httpd_options ho = {.name = "main", .host = "127.0.0.1", .port = 0,
                        .max_body_bytes = 4096, .max_header_bytes = 8192,
                        .max_connections = 64, .idle_timeout_ms = 5000,
                        .request_timeout_ms = 5000};
    f->http = httpd_new(f->m.base, &ho);
    assert_non_null(f->ob);
    assert_non_null(f->http);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sms_out_free(f->so);
    outbox_free(f->ob);
    httpd_free(f->http);
    tm_stop(&f->m);
    metrics_reset();
    free(f);
    return 0;
}

static sms_out *open_sms_out(fixture *f, int sendsms_port, const char *user, const char *pass)
{
    char url[128], dlr[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/cgi-bin/sendsms", sendsms_port);
    snprintf(dlr, sizeof dlr, "http://127.0.0.1:%d/sms/dlr", httpd_port(f->http));
    sms_out_options o;
    sms_out_options_default(&o);
    o.sendsms_url = url;
    o.username = user;
    o.password = pass;
    o.from = "1234";
    o.dlr_url = dlr;
    o.timeout_ms = 2000;
    sms_out *so = sms_out_new(f->m.base, f->m.store, f->ob, &o);
    assert_non_null(so);
    assert_int_equal(sms_out_dlr_route(so, f->http), 0);
    return so;
}

/* Tests ---------------------------------------------------------------------*/

static void test_dlr_endpoint_records_states(void **state)
{
    fixture *f = *state;
    f->so = open_sms_out(f, 9, "u", "p"); /* Kannel is not needed here */
#define TOKEN "0123456789abcdef0123456789abcdef"
#define MSG "/sms/dlr?id=1700000000000-0&token=" TOKEN
    const char *seed[] = {"HSET", "cl:m:1700000000000-0", "state", "sent", "to", "+15550001", "dlr_token", TOKEN};
    free(redis_text(f, 8, seed));

    assert_int_equal(get(f, MSG "&status=8&ts=1700000001"), 200);
    assert_true(field_is(f, "1700000000000-0", "state", "smsc_accepted"));
    assert_int_equal(get(f, MSG "&status=1&ts=1700000002"), 200);
    assert_true(field_is(f, "1700000000000-0", "state", "delivered"));
    assert_true(field_is(f, "1700000000000-0", "dlr_ts", "1700000002"));
    /* The first final report stands: neither a late intermediate report
     * nor a second final one changes it. */
    char *body = NULL;
    assert_int_equal(get_body(f, MSG "&status=4", &body), 200);
    assert_non_null(strstr(body, "false"));
    free(body);
    assert_int_equal(get(f, MSG "&status=2&ts=1700000009"), 200);
    assert_true(field_is(f, "1700000000000-0", "state", "delivered"));
    assert_true(field_is(f, "1700000000000-0", "dlr_status", "1"));
    assert_true(field_is(f, "1700000000000-0", "dlr_ts", "1700000002"));

    /* Without the message's token: one answer whether the id exists or
     * not, and nothing recorded. */
    char *unknown = NULL, *wrong = NULL, *missing = NULL;
    assert_int_equal(get_body(f, "/sms/dlr?id=1700000000001-0&token=" TOKEN "&status=2", &unknown), 401);
    assert_int_equal(get_body(f, "/sms/dlr?id=1700000000000-0&token=0123456789abcdef0123456789abcdee&status=2",
                              &wrong), 401);
    assert_int_equal(get_body(f, "/sms/dlr?id=1700000000000-0&status=2", &missing), 401);
    assert_string_equal(unknown, wrong);
    assert_string_equal(unknown, missing);
    assert_non_null(strstr(unknown, "unauthorized"));
    free(unknown);
    free(wrong);
    free(missing);
    assert_true(metrics_value(metrics_counter("cardline_peer_refused_total",
                                              "Peer requests refused before anything was done, by channel and reason.",
                                              "channel=\"dlr\",reason=\"token\"")) == 3);

    assert_int_equal(get(f, MSG "&status=3"), 400);
    assert_int_equal(get(f, "/sms/dlr?id=../etc&status=1"), 400);
    assert_int_equal(get(f, MSG "&status=1&ts=soon"), 400);
    assert_int_equal(get(f, "/sms/dlr"), 400);
    /* Bad requests changed nothing. */
    assert_true(field_is(f, "1700000000000-0", "dlr_status", "1"));
    const char *exists[] = {"EXISTS", "cl:m:1700000000001-0"};
    char *n = redis_text(f, 2, exists);
    assert_string_equal(n, "0");
    free(n);
}

typedef struct {
    int calls;        /* add callbacks run */
    char ids[8][48];  /* the entry ids, in add order */
} adds;

static void on_added(outbox_add_status st, const char *id, void *arg)
{
    adds *a = arg;
    assert_int_equal(st, OUTBOX_ADDED);
    snprintf(a->ids[a->calls++], sizeof a->ids[0], "%s", id);
}

static bool all_added(const void *arg)
{
    return ((const adds *)arg)->calls == 3;
}

static double sms_metric(const char *name)
{
    return metrics_value(metrics_counter(name, "", "kind=\"sms\""));
}

static bool retried_once_each(const void *arg)
{
    (void)arg;
    return sms_metric("cardline_outbox_retried_total") >= 3;
}

/* The message state is written beside the retry, so it is waited for too.
 * Usually the connection is refused; under parallel tests another server
 * may have taken the freed sendsms port and answered: either way Kannel
 * took nothing. */
static bool kept_for_retry(const void *arg)
{
    fixture *f = F;
    const adds *a = arg;
    return field_is(f, a->ids[0], "state", "queued") &&
           (field_is(f, a->ids[0], "last_error", "kannel_unreachable") ||
            field_is(f, a->ids[0], "last_error", "kannel_http_error"));
}

static bool delivered_all(const void *arg)
{
    (void)arg;
    return sms_metric("cardline_outbox_delivered_total") >= 3;
}

static bool reports_recorded(const void *arg)
{
    fixture *f = F;
    const adds *a = arg;
    /* The fake SMSC reports "accepted" (8) and then "delivered" (1). */
    for (int i = 0; i < 3; i++)
        if (!field_is(f, a->ids[i], "state", "delivered") &&
            !field_is(f, a->ids[i], "state", "smsc_accepted"))
            return false;
    return true;
}

static void test_kannel_down_then_up_delivers_once(void **state)
{
    fixture *f = *state;
    if (!tk_available())
        skip();
    tk_kannel k;
    tk_options ko = {.get_url = "http://127.0.0.1:9/sms/kannel?from=%p&to=%P&text=%a"};
    assert_true(tk_start(&k, &ko));
    tk_boxes_down(&k);
    f->so = open_sms_out(f, k.sendsms_port, k.user, k.pass);

    static const char *const texts[] = {"Your card 1234 is blocked", "Kód: 482913",
                                        "Report R-77 accepted"};
    adds a = {0};
    for (int i = 0; i < 3; i++) {
        char to[32];
        snprintf(to, sizeof to, "+4670000000%d", i);
        json_t *p = json_pack("{s:s,s:s,s:s}", "to", to, "text", texts[i], "ref", "t");
        outbox_add(f->ob, "sms", p, NULL, on_added, &a);
        json_decref(p);
    }
    assert_true(tl_run_until(f->m.base, all_added, &a, WAIT_MS));
    assert_true(tl_run_until(f->m.base, retried_once_each, NULL, WAIT_MS)); /* Kannel down: retry later */
    assert_true(tl_run_until(f->m.base, kept_for_retry, &a, WAIT_MS));

    assert_true(tk_boxes_up(&k));
    assert_true(tk_smsc_connect(&k));
    assert_true(tl_run_until(f->m.base, delivered_all, NULL, WAIT_MS));
    assert_true(tl_run_until(f->m.base, reports_recorded, &a, WAIT_MS)); /* Kannel called our dlr-url */

    bool seen[3] = {false, false, false};
    for (int i = 0; i < 3; i++) {
        tk_mt mt;
        assert_true(tk_wait_mt(&k, NULL, WAIT_MS, &mt));
        int which = mt.to[strlen(mt.to) - 1] - '0';
        assert_true(which >= 0 && which < 3);
        assert_false(seen[which]);
        seen[which] = true;
        assert_string_equal(mt.text, texts[which]);
        tk_mt_free(&mt);
    }
    /* Further polls send nothing more: each arrived exactly once. */
    tl_run_turns(f->m.base, 50);
    assert_int_equal(tk_pending_mt(&k), 0);
    assert_int_equal(sms_metric("cardline_outbox_delivered_total"), 3);
    tk_stop(&k);
}

static void test_kannel_refusing_credentials_gives_up(void **state)
{
    fixture *f = *state;
    if (!tk_available())
        skip();
    tk_kannel k;
    tk_options ko = {.get_url = "http://127.0.0.1:9/sms/kannel?from=%p&to=%P&text=%a"};
    assert_true(tk_start(&k, &ko));
    f->so = open_sms_out(f, k.sendsms_port, k.user, "wrong-password");
    adds a = {0};
    json_t *p = json_pack("{s:s,s:s}", "to", "+46700000009", "text", "hello");
    outbox_add(f->ob, "sms", p, NULL, on_added, &a);
    json_decref(p);
    const char *dead[] = {"XLEN", "cl:outbox:dead"};
    long n = 0;
    for (long deadline = th_now_ms() + WAIT_MS; n == 0 && th_now_ms() < deadline;) {
        tl_run_turns(f->m.base, 1);
        char *t = redis_text(f, 2, dead);
        n = t ? strtol(t, NULL, 10) : 0;
        free(t);
    }
    assert_int_equal(n, 1);
    assert_true(field_is(f, a.ids[0], "state", "failed"));
    assert_true(field_is(f, a.ids[0], "last_error", "kannel_refused"));
    tk_stop(&k);
}

int main(void)
{
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dlr_endpoint_records_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kannel_down_then_up_delivers_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kannel_refusing_credentials_gives_up, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
