/* httpd in process, on real loopback sockets: draining stops accepting,
 * lets a request in flight finish and answer (with Connection: close), and
 * gives up on a stuck one at the grace deadline; the connection limits hold
 * against clients that trickle a request, never send one, or arrive when
 * the process is out of file descriptors. The daemon-level tests
 * (test_gateway) cannot hold a request in flight on purpose; these can,
 * with a handler that answers only when the test says so. Streams: chunks
 * reach the client, its leaving is reported once, a drop closes, an end
 * keeps the connection for the next request, the idle timeout spares a
 * stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <sys/resource.h>

#include "httpd.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "rawhttp.h"

typedef struct {
    struct event_base *base;   /* the loop the listener runs on */
    struct event *tick;        /* wakes the loop so pumping is bounded */
    httpd *h;                  /* listener under test */
    httpd_request *held;       /* the request the handler kept */
    int drained;               /* times the drain callback ran */
    int answered;              /* requests the /ok route answered */
    int closed;                /* times a stream's close callback ran */
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

/* The route /ok: counts and answers at once. */
static void ok(httpd_request *req, void *arg)
{
    fixture *f = arg;
    f->answered++;
    httpd_reply_json(req, 200, json_pack("{s:s}", "ok", "yes"));
}

static int start(void **state, const httpd_options *opt)
{
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    f->tick = event_new(f->base, -1, EV_PERSIST, tick, NULL);
    struct timeval every = {0, 5000};
    event_add(f->tick, &every);
    f->h = httpd_new(f->base, opt);
    if (f->h == NULL || httpd_route(f->h, "/hold", EVHTTP_REQ_GET, hold, f) != 0 ||
        httpd_route(f->h, "/ok", EVHTTP_REQ_GET | EVHTTP_REQ_POST, ok, f) != 0)
        return -1;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    httpd_options opt = {.name = "test", .host = "127.0.0.1", .port = 0, .max_body_bytes = 1024,
                         .max_header_bytes = 1024, .max_connections = 8, .idle_timeout_ms = 10000,
                         .request_timeout_ms = 10000};
    return start(state, &opt);
}

/* A short request deadline, against idle and size limits the tests never reach. */
#define DEADLINE_MS 300
static int setup_deadline(void **state)
{
    httpd_options opt = {.name = "test", .host = "127.0.0.1", .port = 0, .max_body_bytes = 100000,
                         .max_header_bytes = 100000, .max_connections = 8,
                         .idle_timeout_ms = 60000, .request_timeout_ms = DEADLINE_MS};
    return start(state, &opt);
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

#define WAIT_MS 10000

static bool is_held(const void *arg)
{
    return ((const fixture *)arg)->held != NULL;
}

static bool pump_until_held(fixture *f)
{
    return tl_run_until(f->base, is_held, f, WAIT_MS);
}

static bool is_readable(const void *arg)
{
    struct pollfd p = {.fd = *(const int *)arg, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Runs the loop until the client socket fd has something to read (data or
 * its end) or WAIT_MS passes. */
static bool pump_until_readable(fixture *f, int fd)
{
    return tl_run_until(f->base, is_readable, &fd, WAIT_MS);
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
    pump_until_readable(f, fd);
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
    assert_true(tl_run_until_count(f->base, &f->drained, 1, WAIT_MS));
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
    assert_true(tl_run_until_count(f->base, &f->drained, 1, WAIT_MS));
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
    assert_true(tl_run_until_count(f->base, &f->drained, 1, WAIT_MS));
    assert_int_equal(httpd_in_flight(f->h), 1); /* cut, not finished; httpd_free drops it */
    close(fd);
}

/* The limits ------------------------------------------------------------------*/

/* The value of a listener="test" series of the metrics table (-1 if absent). */
static double metric(const char *name)
{
    struct evbuffer *out = evbuffer_new();
    metrics_render(out);
    evbuffer_add(out, "", 1);
    char want[160];
    snprintf(want, sizeof want, "\n%s{listener=\"test\"} ", name);
    const char *at = strstr((const char *)evbuffer_pullup(out, -1), want);
    double v = at ? strtod(at + strlen(want), NULL) : -1;
    evbuffer_free(out);
    return v;
}

/* True when the server closed fd without sending a byte. */
static bool closed_silently(fixture *f, int fd)
{
    char c;
    return pump_until_readable(f, fd) && recv(fd, &c, 1, 0) <= 0;
}

typedef struct {
    const fixture *f;          /* whose listener */
    size_t n;                  /* the connections awaited */
} connections_wait;

static bool connections_are(const void *arg)
{
    const connections_wait *w = arg;
    return httpd_connections(w->f->h) == w->n;
}

static bool pump_until_connections(fixture *f, size_t n)
{
    connections_wait w = {f, n};
    return tl_run_until(f->base, connections_are, &w, WAIT_MS);
}

/* Sends `head`, then one `piece` every TRICKLE_MS while the loop runs, until
 * the server answers or closes, or TRICKLE_MAX pieces are sent (a request
 * that never completes). Returns true when the server closed without a byte
 * of answer; *pieces says how many were sent. */
#define TRICKLE_MS 50
#define TRICKLE_MAX 200
static bool trickle_until_closed(fixture *f, const char *head, const char *piece, int *pieces)
{
    int fd = rh_connect(httpd_port(f->h));
    assert_true(fd >= 0);
    assert_true(rh_send(fd, head, strlen(head)));
    long next = rh_now_ms() + TRICKLE_MS;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    *pieces = 0;
    while (poll(&p, 1, 0) == 0 && *pieces < TRICKLE_MAX) {
        event_base_loop(f->base, EVLOOP_ONCE);
        if (rh_now_ms() >= next && rh_send(fd, piece, strlen(piece))) {
            (*pieces)++;
            next += TRICKLE_MS;
        }
    }
    char c;
    bool closed = p.revents != 0 && recv(fd, &c, 1, 0) <= 0;
    close(fd);
    return closed;
}

/* One header line per interval resets evhttp's idle timer every time; the
 * request deadline still ends it. */
static void test_slow_head_is_dropped(void **state)
{
    fixture *f = *state;
    int pieces;
    assert_true(trickle_until_closed(f, "GET /ok HTTP/1.1\r\n", "X-Slow: 1\r\n", &pieces));
    assert_true(pieces < TRICKLE_MAX);
    assert_int_equal(f->answered, 0);
    assert_true(metric("cardline_http_request_timeouts_total") == 1);
    assert_true(pump_until_connections(f, 0));
}

static void test_slow_body_is_dropped(void **state)
{
    fixture *f = *state;
    int pieces;
    assert_true(trickle_until_closed(f, "POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n",
                                     "x", &pieces));
    assert_true(pieces < TRICKLE_MAX);
    assert_int_equal(f->answered, 0);
    assert_true(metric("cardline_http_request_timeouts_total") == 1);
}

/* The deadline waits while a handler works, and starts again for the next
 * request once the answer is on its way: a held request outlives the
 * deadline of a connection accepted after it, is answered, and the kept-alive
 * connection is then closed like any other that sends nothing. */
static void test_deadline_spares_the_handler(void **state)
{
    fixture *f = *state;
    int held = send_hold(httpd_port(f->h));
    assert_true(pump_until_held(f));
    int silent = rh_connect(httpd_port(f->h));
    assert_true(silent >= 0);
    assert_true(closed_silently(f, silent)); /* its deadline, armed later, passed */
    httpd_reply_json(f->held, 200, NULL);
    assert_true(pump_until_readable(f, held));
    char buf[4096];
    assert_int_equal(rh_response(held, buf, sizeof buf, WAIT_MS), 200);
    assert_true(closed_silently(f, held));
    assert_true(metric("cardline_http_request_timeouts_total") == 2);
    close(held);
    close(silent);
}

/* Sockets that never send a byte fill the cap; one more is closed at once,
 * without a request; closing them makes room again. */
static void test_silent_connections_count(void **state)
{
    fixture *f = *state;
    int port = httpd_port(f->h);
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = rh_connect(port);
        assert_true(fds[i] >= 0);
    }
    assert_true(pump_until_connections(f, 8));
    assert_true(metric("cardline_http_connections") == 8);
    int extra = rh_connect(port);
    assert_true(extra >= 0);
    assert_true(closed_silently(f, extra));
    close(extra);
    assert_true(metric("cardline_http_connections_rejected_total") == 1);
    assert_int_equal(httpd_connections(f->h), 8);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    assert_true(pump_until_connections(f, 0));
    char buf[4096];
    assert_int_equal(get_pumped(f, "/ok", buf, sizeof buf), 200);
}

/* The lowest descriptor number free now: the next socket would get it. */
static int lowest_free_fd(void)
{
    int fd = open("/dev/null", O_RDONLY);
    assert_true(fd >= 0);
    close(fd);
    return fd;
}

/* Out of descriptors, waiting clients are closed at once (not left in the
 * backlog), accepting pauses instead of spinning, the log says so a few
 * times at most, and the listener serves again once descriptors are free. */
/* Streams ------------------------------------------------------------------------*/

static void stream_closed(void *arg)
{
    ((fixture *)arg)->closed++;
}

/* A held /hold request turned into a stream; the client's fd. */
static int open_stream(fixture *f)
{
    int fd = send_hold(httpd_port(f->h));
    assert_true(pump_until_held(f));
    assert_true(httpd_stream_start(f->held, "text/event-stream", stream_closed, f));
    return fd;
}

/* Reads from fd until `needle` arrived (the loop pumped meanwhile); what
 * was read, up to the call's end. */
static const char *expect_bytes(fixture *f, int fd, const char *needle)
{
    static char buf[8192];
    size_t len = 0;
    buf[0] = '\0';
    long deadline = rh_now_ms() + WAIT_MS;
    while (strstr(buf, needle) == NULL) {
        assert_true(rh_now_ms() < deadline);
        assert_true(pump_until_readable(f, fd));
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        assert_true(n > 0);
        len += (size_t)n;
        buf[len] = '\0';
    }
    return buf;
}

static bool closed_once(const void *arg)
{
    return ((const fixture *)arg)->closed == 1;
}

static void test_stream_sends_chunks_until_the_client_leaves(void **state)
{
    fixture *f = *state;
    int fd = open_stream(f);
    assert_int_equal(httpd_in_flight(f->h), 0); /* a drain does not wait for it */
    httpd_stream_send(f->held, "data: one\n\n", 11);
    const char *got = expect_bytes(f, fd, "data: one\n\n");
    assert_non_null(strcasestr(got, "\r\nTransfer-Encoding: chunked\r\n"));
    assert_non_null(strcasestr(got, "\r\nContent-Type: text/event-stream\r\n"));
    close(fd);
    assert_true(tl_run_until(f->base, closed_once, f, WAIT_MS));
}

static void test_stream_drop_closes_the_connection(void **state)
{
    fixture *f = *state;
    int fd = open_stream(f);
    httpd_stream_drop(f->held);
    assert_int_equal(f->closed, 1);
    assert_true(pump_until_readable(f, fd));
    assert_true(rh_wait_closed(fd, WAIT_MS));
    close(fd);
}

static void test_stream_end_keeps_the_connection(void **state)
{
    fixture *f = *state;
    int fd = open_stream(f);
    httpd_stream_send(f->held, "x", 1);
    httpd_stream_end(f->held);
    expect_bytes(f, fd, "\r\n0\r\n\r\n");
    static const char get[] = "GET /ok HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_true(rh_send(fd, get, strlen(get)));
    expect_bytes(f, fd, "{\"ok\":\"yes\"}");
    assert_int_equal(f->closed, 0);
    close(fd);
}

/* The idle timeout (200 ms here) does not end a stream whose client only listens. */
#define IDLE_MS 200
static int setup_idle(void **state)
{
    httpd_options opt = {.name = "test", .host = "127.0.0.1", .port = 0, .max_body_bytes = 1024,
                         .max_header_bytes = 1024, .max_connections = 8, .idle_timeout_ms = IDLE_MS,
                         .request_timeout_ms = 10000};
    return start(state, &opt);
}

static bool never(const void *arg)
{
    (void)arg;
    return false;
}

static void test_stream_outlives_the_idle_timeout(void **state)
{
    fixture *f = *state;
    int fd = open_stream(f);
    tl_run_until(f->base, never, NULL, 4 * IDLE_MS);
    assert_int_equal(f->closed, 0);
    httpd_stream_send(f->held, "still here", 10);
    expect_bytes(f, fd, "still here");
    httpd_stream_end(f->held);
    close(fd);
}

static void test_descriptor_limit(void **state)
{
    fixture *f = *state;
    char *text = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&text, &len);
    log_set_stream(log);
    int port = httpd_port(f->h);
    int first = rh_connect(port);
    assert_true(first >= 0);
    struct rlimit saved, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)lowest_free_fd(); /* no new descriptor from here on */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

    bool first_closed = closed_silently(f, first);
    close(first); /* its number lets one more client in, still over the limit */
    int second = rh_connect(port);
    bool second_closed = second >= 0 && closed_silently(f, second);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_true(first_closed);
    assert_true(second_closed);
    close(second);

    char buf[4096];
    assert_int_equal(get_pumped(f, "/ok", buf, sizeof buf), 200);
    assert_true(metric("cardline_http_connections_shed_total") >= 2);
    assert_true(metric("cardline_http_accept_errors_total") >= 2);
    assert_true(pump_until_connections(f, 0));
    log_set_stream(stderr);
    fclose(log);
    int lines = 0;
    for (const char *at = text; (at = strstr(at, "accept")) != NULL; at = strchr(at, '\n'))
        lines++;
    assert_true(lines >= 1 && lines <= 3);
    assert_non_null(strstr(text, "event=http.accept_paused listener=test"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_route_table_refuses_bad_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_lets_request_in_flight_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_with_nothing_in_flight_is_immediate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_gives_up_at_the_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_head_is_dropped, setup_deadline, teardown),
        cmocka_unit_test_setup_teardown(test_slow_body_is_dropped, setup_deadline, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_spares_the_handler, setup_deadline, teardown),
        cmocka_unit_test_setup_teardown(test_silent_connections_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_descriptor_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_sends_chunks_until_the_client_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_drop_closes_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_end_keeps_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_outlives_the_idle_timeout, setup_idle, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
