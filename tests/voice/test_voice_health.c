/* test_voice_health — /healthz names voice: the real ops endpoints on a real
 * listener, watching a real SIP thread (sip.h) whose liveness ping runs
 * every 50 ms. Redis and the registry are deliberately absent (nothing
 * listens on their ports), so /healthz is 503 throughout; what is asserted
 * is the voice part: "up" and not in `down` while the thread answers, "down"
 * and named in `down` while it is frozen, "up" again once it answers. The
 * HTTP client is libevent's, on the same loop, so nothing blocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "harness.h"
#include "ops.h"
#include "sip.h"

#define PING_MS 50
#define WAIT_MS 15000

typedef struct {
    struct event_base *base;
    httpd *http;
    int http_port;
    store *store;
    registry *registry;
    ops *ops;
    voice_sip *sip;
    int status;                    /* the last /healthz answer's status, 0 while waiting */
    char body[512];                /* its body */
} world;

static void on_sip_event(const voice_sip_event *ev, void *arg)
{
    (void)ev, (void)arg;
}

static bool sip_up(const void *arg)
{
    return voice_sip_alive(arg);
}

static void on_health(struct evhttp_request *req, void *arg)
{
    world *w = arg;
    w->status = req ? evhttp_request_get_response_code(req) : -1;
    struct evbuffer *in = req ? evhttp_request_get_input_buffer(req) : NULL;
    size_t n = in ? evbuffer_get_length(in) : 0;
    if (n >= sizeof w->body)
        n = sizeof w->body - 1;
    if (in)
        evbuffer_copyout(in, w->body, n);
    w->body[n] = '\0';
    event_base_loopbreak(w->base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    event_base_loopbreak(arg);
}

/* Runs the loop for at most `ms`, or until a callback breaks it. */
static void run_for(world *w, int ms)
{
    struct event *t = evtimer_new(w->base, on_deadline, w->base);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    event_base_dispatch(w->base);
    event_free(t);
}

static void get_health(world *w)
{
    struct evhttp_connection *conn =
        evhttp_connection_base_new(w->base, NULL, "127.0.0.1", (unsigned short)w->http_port);
    struct evhttp_request *req = evhttp_request_new(on_health, w);
    w->status = 0;
    evhttp_make_request(conn, req, EVHTTP_REQ_GET, "/healthz");
    for (long deadline = th_now_ms() + WAIT_MS; w->status == 0 && th_now_ms() < deadline;)
        run_for(w, WAIT_MS);
    evhttp_connection_free(conn);
    assert_int_equal(w->status, 503);
}

static void wait_alive(world *w, bool want)
{
    for (long deadline = th_now_ms() + WAIT_MS;
         voice_sip_alive(w->sip) != want && th_now_ms() < deadline;)
        run_for(w, PING_MS);
    assert_true(voice_sip_alive(w->sip) == want);
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    w->base = event_base_new();
    w->http_port = th_free_port();
    httpd_options ho = {.name = "ops", .host = "127.0.0.1", .port = w->http_port,
                        .max_body_bytes = 1024, .max_header_bytes = 4096,
                        .max_connections = 8, .idle_timeout_ms = 5000,
                        .request_timeout_ms = 5000};
    store_options so = {.host = "127.0.0.1", .port = th_free_port(), .op_timeout_ms = 1000,
                        .reconnect_min_ms = 1000, .reconnect_max_ms = 5000,
                        .ping_interval_ms = 1000, .max_pending = 8};
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", th_free_port());
    registry_options ro = {.base_url = url, .timeout_ms = 1000, .connect_timeout_ms = 500,
                           .max_connections = 2, .max_pending = 8, .health_interval_ms = 1000};
    voice_sip_options vo = {.bind_addr = "127.0.0.1", .port = th_free_port(), .trunks = "127.0.0.1",
                            .max_calls = 4, .session_expires_s = 1800,
                            .refer_timeout_ms = 500, .ping_interval_ms = PING_MS};
    w->http = httpd_new(w->base, &ho);
    w->store = store_new(w->base, &so);
    w->registry = registry_new(w->base, &ro);
    assert_non_null(w->http);
    assert_non_null(w->store);
    assert_non_null(w->registry);
    w->ops = ops_new(w->base, w->http, w->store, w->registry, 1000);
    w->sip = voice_sip_start(w->base, &vo, on_sip_event, w);
    assert_non_null(w->ops);
    assert_non_null(w->sip);
    assert_true(ops_watch(w->ops, "voice", sip_up, w->sip));
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    voice_sip_stop(w->sip);
    registry_free(w->registry);
    ops_free(w->ops);
    store_free(w->store);
    httpd_free(w->http);
    event_base_free(w->base);
    free(w);
    return 0;
}

static void test_healthz_names_voice(void **state)
{
    world *w = *state;
    get_health(w);
    assert_non_null(strstr(w->body, "\"voice\":\"up\""));
    assert_null(strstr(w->body, "\"voice\"]"));

    voice_sip_freeze(w->sip, 40 * PING_MS);
    wait_alive(w, false);
    get_health(w);
    assert_non_null(strstr(w->body, "\"voice\":\"down\""));
    assert_non_null(strstr(w->body, "\"voice\"]"));

    wait_alive(w, true);
    get_health(w);
    assert_non_null(strstr(w->body, "\"voice\":\"up\""));
}

static bool never(const void *arg)
{
    (void)arg;
    return false;
}

static void test_watches_are_bounded(void **state)
{
    world *w = *state;
    for (int i = 1; i < OPS_MAX_WATCHES; i++)
        assert_true(ops_watch(w->ops, "other", never, NULL));
    assert_false(ops_watch(w->ops, "one-too-many", never, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_healthz_names_voice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watches_are_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
