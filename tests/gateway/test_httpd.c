/* httpd in process, on real loopback sockets: draining stops accepting,
 * lets a request in flight finish and answer (with Connection: close), and
 * gives up on a stuck one at the grace deadline. The daemon-level tests
 * (test_gateway) cannot hold a request in flight on purpose; these can,
 * with a handler that answers only when the test says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>

#include "httpd.h"
#include "metrics.h"
#include "rawhttp.h"

typedef struct {
    struct event_base *base;   /* the loop the listener runs on */
    struct event *tick;        /* wakes the loop so pumping is bounded */
    httpd *h;                  /* listener under test */
    httpd_request *held;       /* the request the handler kept */
    int drained;               /* times the drain callback ran */
} fixture;

static void hold(httpd_request *req, void *arg)
{
    fixture *f = arg;
    f->held = req;
}

static void on_drained(void *arg)
{
    fixture *f = arg;
    f->drained++;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    f->tick = event_new(f->base, -1, EV_PERSIST, tick, NULL);
    struct timeval every = {0, 5000};
    event_add(f->tick, &every);
    httpd_options opt = {.name = "test", .host = "127.0.0.1", .port = 0, .max_body_bytes = 1024,
                         .max_header_bytes = 1024, .max_connections = 8, .idle_timeout_ms = 10000};
    f->h = httpd_new(f->base, &opt);
    if (f->h == NULL || httpd_route(f->h, "/hold", EVHTTP_REQ_GET, hold, f) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    httpd_free(f->h);
    event_free(f->tick);
    event_base_free(f->base);
    metrics_reset();
    free(f);
    return 0;
}

/* Runs the loop until *flag is non-zero or WAIT_MS passes. */
#define WAIT_MS 10000
static bool pump_until(fixture *f, const int *flag)
{
    long deadline = rh_now_ms() + WAIT_MS;
    while (!*flag && rh_now_ms() < deadline)
        event_base_loop(f->base, EVLOOP_ONCE);
    return *flag != 0;
}

static bool pump_until_held(fixture *f)
{
    long deadline = rh_now_ms() + WAIT_MS;
    while (f->held == NULL && rh_now_ms() < deadline)
        event_base_loop(f->base, EVLOOP_ONCE);
    return f->held != NULL;
}

static int send_hold(int port)
{
    static const char get[] = "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n";
    int fd = rh_connect(port);
    assert_true(fd >= 0);
    assert_true(rh_send(fd, get, strlen(get)));
    return fd;
}

static void test_route_table_refuses_bad_routes(void **state)
{
    fixture *f = *state;
    assert_int_equal(httpd_route(f->h, "/hold", EVHTTP_REQ_GET, hold, f), -1);
    assert_int_equal(httpd_route(f->h, "relative", EVHTTP_REQ_GET, hold, f), -1);
    assert_int_equal(httpd_route(f->h, "/x", 0, hold, f), -1);
    assert_int_equal(httpd_route(f->h, "/x", EVHTTP_REQ_GET, NULL, f), -1);
}

/* Which route served a request: the route's name, answered at once. */
static void named(httpd_request *req, void *arg)
{
    httpd_reply_json(req, 200, json_pack("{s:s}", "route", (const char *)arg));
}

/* GETs `path` while the loop runs; returns the status, the body in buf. */
static int get_pumped(fixture *f, const char *path, char *buf, size_t cap)
{
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    int fd = rh_connect(httpd_port(f->h));
    assert_true(fd >= 0);
    assert_true(rh_send(fd, req, strlen(req)));
    long deadline = rh_now_ms() + WAIT_MS;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, 0) == 0 && rh_now_ms() < deadline)
        event_base_loop(f->base, EVLOOP_ONCE);
    int status = rh_response(fd, buf, cap, WAIT_MS);
    close(fd);
    return status;
}

/* A route ending in '/' serves the paths below it; an exact route wins,
 * then the longest prefix; a path merely starting alike is not below. */
static void test_prefix_routes(void **state)
{
    fixture *f = *state;
    assert_int_equal(httpd_route(f->h, "/v1/items/", EVHTTP_REQ_GET, named, "items"), 0);
    assert_int_equal(httpd_route(f->h, "/v1/items/special", EVHTTP_REQ_GET, named, "special"), 0);
    assert_int_equal(httpd_route(f->h, "/v1/items/42/parts/", EVHTTP_REQ_GET, named, "parts"), 0);
    char buf[4096];
    assert_int_equal(get_pumped(f, "/v1/items/7", buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "\"route\":\"items\""));
    assert_int_equal(get_pumped(f, "/v1/items/special", buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "\"route\":\"special\""));
    assert_int_equal(get_pumped(f, "/v1/items/42/parts/3?x=1", buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "\"route\":\"parts\""));
    assert_int_equal(get_pumped(f, "/v1/itemsx", buf, sizeof buf), 404);
}

static void test_drain_lets_request_in_flight_finish(void **state)
{
    fixture *f = *state;
    int port = httpd_port(f->h);
    int fd = send_hold(port);
    assert_true(pump_until_held(f));
    assert_int_equal(httpd_in_flight(f->h), 1);

    httpd_drain(f->h, WAIT_MS, on_drained, f);
    event_base_loop(f->base, EVLOOP_ONCE);
    assert_int_equal(f->drained, 0);
    assert_int_equal(rh_connect(port), -1); /* no longer accepting */

    httpd_reply_json(f->held, 200, json_pack("{s:s}", "held", "done"));
    assert_true(pump_until(f, &f->drained));
    assert_int_equal(f->drained, 1);
    assert_int_equal(httpd_in_flight(f->h), 0);

    char buf[4096];
    assert_int_equal(rh_response(fd, buf, sizeof buf, WAIT_MS), 200);
    assert_non_null(strstr(buf, "{\"held\":\"done\"}"));
    assert_non_null(strcasestr(buf, "\r\nConnection: close\r\n"));
    close(fd);
}

static void test_drain_with_nothing_in_flight_is_immediate(void **state)
{
    fixture *f = *state;
    httpd_drain(f->h, WAIT_MS, on_drained, f);
    assert_int_equal(f->drained, 0); /* never from inside the call */
    assert_true(pump_until(f, &f->drained));
    httpd_drain(f->h, WAIT_MS, on_drained, f); /* a second call does nothing */
    event_base_loop(f->base, EVLOOP_ONCE);
    assert_int_equal(f->drained, 1);
}

static void test_drain_gives_up_at_the_deadline(void **state)
{
    fixture *f = *state;
    int fd = send_hold(httpd_port(f->h));
    assert_true(pump_until_held(f));
    httpd_drain(f->h, 50, on_drained, f);
    assert_true(pump_until(f, &f->drained));
    assert_int_equal(httpd_in_flight(f->h), 1); /* cut, not finished; httpd_free drops it */
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_route_table_refuses_bad_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_lets_request_in_flight_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_with_nothing_in_flight_is_immediate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_gives_up_at_the_deadline, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
