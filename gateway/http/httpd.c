/* httpd — evhttp with a route table, limits, a connection cap, a request
 * deadline, accept-error handling, metrics and draining (see httpd.h). Owns
 * the evhttp server, the bound socket, one record per open connection, the
 * request wrappers in flight and a spare file descriptor.
 *
 * Connections. libevent 2.1 has no connection cap and no hook that can
 * refuse a connection, but evhttp_set_bevcb is called once per accepted
 * socket, before evhttp builds its connection on the bufferevent we return.
 * There the connection is counted (so the cap covers sockets that never send
 * a byte) and queued as a "newborn" holding a reference on its bufferevent;
 * an event activated at the same moment adopts the newborns once evhttp has
 * finished: bufferevent_getcb yields the evhttp_connection, or NULL
 * callbacks if evhttp already freed it (the held reference keeps that safe
 * to look at). Adopted, a connection gets a close callback that forgets it
 * and goes into a tsearch tree keyed by its evhttp_connection. A socket
 * accepted while max_connections are open is closed at adoption, before any
 * request, and counted as rejected (logged once a second with a count):
 * waiting for its request would let an idle client keep the socket, and a
 * 503 written before reading the request is lost to a reset whenever the
 * request is already in our receive buffer at close.
 *
 * The request deadline. evhttp's idle timeout restarts at every read, so a
 * client sending one byte per interval never meets it. Each connection has a
 * timer of request_timeout_ms, armed at adoption and again when a reply is
 * handed to evhttp (it then covers writing the reply and the whole next
 * request on a kept-alive connection), and stopped while a handler works on
 * a request. When it fires the connection is dropped the way evhttp's own
 * timeout drops it (bufferevent_trigger_event with
 * BEV_EVENT_TIMEOUT|BEV_EVENT_READING): evhttp frees it, closing the socket.
 *
 * Accept errors. At the descriptor limit accept fails with EMFILE and
 * libevent's listener would retry at once forever, logging each failure.
 * Its error callback (which receives only the evhttp, hence the list of live
 * listeners) instead pauses the listener and retries after a backoff of 10
 * ms doubling to 1 s (back to 10 ms after an accept succeeds), logging at
 * most once a second. For EMFILE and ENFILE it first closes the spare
 * descriptor kept open on /dev/null, accepts and closes the connections
 * waiting in the backlog (so their clients see a prompt close, not a hang),
 * and opens the spare again. */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <search.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "monotime.h"

/* Methods evhttp lets through to us; a route then decides 405 or not.
 * Anything else (TRACE, CONNECT) is refused by evhttp itself with 501. */
#define KNOWN_METHODS                                                        \
    (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |   \
     EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS)

enum {
    STATUS_CLASSES = 5,
    ACCEPT_BACKOFF_FIRST_MS = 10,    /* first pause after an accept error */
    ACCEPT_BACKOFF_MAX_MS = 1000,    /* longest pause */
    LOG_EVERY_MS = 1000,             /* refusals and accept errors logged at most this often */
    SHED_MAX = 64,                   /* waiting connections closed per accept error */
    STREAM_MAX_INPUT = 4096,         /* bytes a stream's client may send before we stop reading */
};

typedef struct {
    const char *path;                         /* exact path served */
    unsigned methods;                         /* EVHTTP_REQ_* mask */
    httpd_handler *fn;                        /* the handler */
    void *arg;                                /* its argument */
    metrics_series *answers[STATUS_CLASSES];  /* requests by status class */
} route;

typedef struct conn conn;

struct httpd_request {
    httpd *owner;                  /* listener that dispatched it */
    conn *conn;                    /* its connection's record, NULL if untracked */
    struct evhttp_request *ev;     /* the evhttp request (freed after reply) */
    const route *route;            /* matched route, or the unmatched pseudo-route */
    bool close_after;              /* ask the client to close after the answer */
    monotime started;              /* dispatch time, for the access log */
    httpd_stream_closed_cb *closed; /* a stream's close callback, or NULL */
    void *closed_arg;              /* its argument */
    LIST_ENTRY(httpd_request) link; /* the listener's in-flight list */
};

/* One accepted socket, from accept until evhttp frees its connection. */
struct conn {
    httpd *owner;                      /* listener that accepted it */
    struct bufferevent *bev;           /* its bufferevent; we hold a reference */
    struct evhttp_connection *evcon;   /* evhttp's connection, NULL until adopted */
    struct event *deadline;            /* request_timeout_ms timer */
    bool refused;                      /* accepted beyond the cap: close at adoption */
    httpd_request *stream;             /* the stream it carries (httpd_stream_start), or NULL */
    conn *next_newborn;                /* the listener's not-yet-adopted list */
};

struct httpd {
    struct event_base *base;              /* the main loop */
    struct evhttp *http;                  /* the evhttp server */
    struct evhttp_bound_socket *socket;   /* listening socket, NULL once draining */
    char *name;                           /* listener name for logs and labels */
    int port;                             /* bound port */
    size_t max_connections;               /* open connections at most */
    struct timeval request_timeout;       /* the request deadline (a libevent common timeout) */
    struct timeval idle_timeout;          /* evhttp's idle timeout, restored after a stream */
    void *connections;                    /* tsearch tree of adopted conn*, by evcon */
    conn *newborns;                       /* accepted, not yet adopted */
    size_t connection_count;              /* adopted and newborn, refused excluded */
    struct event *adopt;                  /* activated by each accept to adopt newborns */
    int spare_fd;                         /* /dev/null, given up to shed at EMFILE; -1 if none */
    struct event *accept_retry;           /* ends an accept pause */
    int accept_backoff_ms;                /* length of the current pause, 0 when none */
    long rejected_logged_ms;              /* when a refusal at the cap was last logged */
    unsigned rejected_unlogged;           /* refusals since that line */
    long accept_logged_ms;                /* when an accept error was last logged */
    unsigned accept_errors_unlogged;      /* accept errors since that line */
    unsigned shed_unlogged;               /* connections shed since that line */
    route routes[HTTPD_MAX_ROUTES];       /* the route table */
    size_t route_count;                   /* used entries of routes */
    route unmatched;                      /* metrics of 404s */
    LIST_HEAD(, httpd_request) in_flight_list; /* dispatched, not yet answered */
    size_t in_flight;                     /* length of in_flight_list */
    bool draining;                        /* httpd_drain was called */
    struct event *drain_timer;            /* grace deadline, also the "done" kick */
    httpd_drained_cb *drained_cb;         /* pending drain callback, NULL once called */
    void *drained_arg;                    /* its argument */
    httpd *next_live;                     /* the list of live listeners */
    metrics_series *connections_gauge;    /* open connections */
    metrics_series *rejected_total;       /* connections closed by the cap */
    metrics_series *timeouts_total;       /* connections dropped by the request deadline */
    metrics_series *accept_errors_total;  /* accept failures (each pauses accepting) */
    metrics_series *shed_total;           /* connections closed at the descriptor limit */
    metrics_series *in_flight_gauge;      /* requests in flight */
};

/* Listeners alive, for the listener error callback, which only gets the evhttp. */
static httpd *live_listeners;

/* Settings ----------------------------------------------------------------------*/

static const conf_key httpd_conf_keys[] = {
    CONF_KEY_ADDRESS(httpd_options, "listen", host, port, "127.0.0.1:8080"),
    CONF_KEY_INT(httpd_options, "max_body_bytes", max_body_bytes, 1, 16777216, "65536"),
    CONF_KEY_INT(httpd_options, "max_header_bytes", max_header_bytes, 256, 1048576, "8192"),
    CONF_KEY_INT(httpd_options, "max_connections", max_connections, 1, 100000, "1024"),
    CONF_KEY_INT(httpd_options, "idle_timeout_ms", idle_timeout_ms, 10, 3600000, "30000"),
    CONF_KEY_INT(httpd_options, "request_timeout_ms", request_timeout_ms, 10, 3600000, "10000"),
};
const conf_section httpd_config = CONF_SECTION("http", httpd_conf_keys);

/* Metrics -------------------------------------------------------------------*/

static void register_route_metrics(httpd *h, route *r, const char *label)
{
    static const char *classes[STATUS_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    char labels[256];
    for (int i = 0; i < STATUS_CLASSES; i++) {
        snprintf(labels, sizeof labels, "listener=\"%s\",route=\"%s\",class=\"%s\"",
                 h->name, label, classes[i]);
        r->answers[i] = metrics_counter("cardline_http_requests_total",
                                        "HTTP requests answered, by listener, route and status class",
                                        labels);
    }
}

static void register_listener_metrics(httpd *h)
{
    char labels[128];
    snprintf(labels, sizeof labels, "listener=\"%s\"", h->name);
    h->connections_gauge = metrics_gauge("cardline_http_connections",
                                         "Client connections open, counted against max_connections",
                                         labels);
    h->rejected_total = metrics_counter("cardline_http_connections_rejected_total",
                                        "Connections closed at accept because max_connections were open",
                                        labels);
    h->timeouts_total = metrics_counter("cardline_http_request_timeouts_total",
                                        "Connections closed because a request did not arrive within request_timeout_ms",
                                        labels);
    h->accept_errors_total = metrics_counter("cardline_http_accept_errors_total",
                                             "Failed accepts (each pauses accepting for a backoff)",
                                             labels);
    h->shed_total = metrics_counter("cardline_http_connections_shed_total",
                                    "Connections accepted and closed at once at the file-descriptor limit",
                                    labels);
    h->in_flight_gauge = metrics_gauge("cardline_http_in_flight",
                                       "Requests dispatched to a handler and not yet answered", labels);
    register_route_metrics(h, &h->unmatched, "unmatched");
}

static void count_answer(const route *r, int status)
{
    int cls = status / 100 - 1;
    if (cls >= 0 && cls < STATUS_CLASSES)
        metrics_inc(r->answers[cls]);
}

/* True (and *last moved to now) when no line of this kind was written in
 * the last LOG_EVERY_MS: what a flood of clients can trigger is logged once
 * a second with a count, not once per client. */
static bool log_due(long *last)
{
    long now = (long)monotime_ms();
    if (*last != 0 && now - *last < LOG_EVERY_MS)
        return false;
    *last = now;
    return true;
}

/* Connections -----------------------------------------------------------------*/

static int compare_connections(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const conn *)a)->evcon, y = (uintptr_t)((const conn *)b)->evcon;
    return (x > y) - (x < y);
}

static conn *find_connection(httpd *h, struct evhttp_connection *evcon)
{
    conn key = {.evcon = evcon};
    conn **found = evcon ? tfind(&key, &h->connections, compare_connections) : NULL;
    return found ? *found : NULL;
}

static void set_connection_count(httpd *h, size_t n)
{
    h->connection_count = n;
    metrics_set(h->connections_gauge, (double)n);
}

/* Releases a connection record; evhttp owns (or already freed) the rest. */
static void conn_free(conn *c)
{
    httpd *h = c->owner;
    if (!c->refused)
        set_connection_count(h, h->connection_count - 1);
    if (c->deadline)
        event_free(c->deadline);
    bufferevent_decref(c->bev);
    free(c);
}

static void stream_closed(httpd_request *req);

/* evhttp is freeing the connection. */
static void forget_connection(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    conn *c = arg;
    if (c->stream)
        stream_closed(c->stream);
    tdelete(c, &c->owner->connections, compare_connections);
    conn_free(c);
}

static void arm_deadline(conn *c)
{
    evtimer_add(c->deadline, &c->owner->request_timeout);
}

static void deadline_passed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    conn *c = arg;
    httpd *h = c->owner;
    void *evcon = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
    if (evcon == NULL) { /* freed without its close callback: only forget it */
        forget_connection(c->evcon, c);
        return;
    }
    metrics_inc(h->timeouts_total);
    log_debug("http.request_timeout", "listener=%s", h->name);
    /* evhttp frees the connection from inside this call, and c with it. */
    bufferevent_trigger_event(c->bev, BEV_EVENT_TIMEOUT | BEV_EVENT_READING, 0);
}

static void log_rejected(httpd *h)
{
    h->rejected_unlogged++;
    if (!log_due(&h->rejected_logged_ms))
        return;
    log_warn("http.connection_rejected", "listener=%s connections=%zu max=%zu rejected=%u", h->name,
             h->connection_count, h->max_connections, h->rejected_unlogged);
    h->rejected_unlogged = 0;
}

/* Takes over a newborn once evhttp has built its connection: closes it if it
 * came beyond the cap, otherwise starts its deadline and tracks it. */
static void adopt_connection(httpd *h, conn *c)
{
    void *evcon = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
    c->evcon = evcon;
    if (evcon == NULL) { /* evhttp gave up on it already */
        conn_free(c);
        return;
    }
    if (c->refused) {
        metrics_inc(h->rejected_total);
        log_rejected(h);
        conn_free(c);
        evhttp_connection_free(evcon);
        return;
    }
    c->deadline = evtimer_new(h->base, deadline_passed, c);
    if (c->deadline == NULL || tsearch(c, &h->connections, compare_connections) == NULL) {
        conn_free(c);
        evhttp_connection_free(evcon);
        return;
    }
    evhttp_connection_set_closecb(evcon, forget_connection, c);
    arm_deadline(c);
}

static void adopt_newborns(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    httpd *h = arg;
    while (h->newborns) {
        conn *c = h->newborns;
        h->newborns = c->next_newborn;
        adopt_connection(h, c);
    }
}

/* evhttp_set_bevcb: called right after each accept, before evhttp builds the
 * connection on the bufferevent returned (NULL lets evhttp make its own). */
static struct bufferevent *connection_accepted(struct event_base *base, void *arg)
{
    httpd *h = arg;
    h->accept_backoff_ms = 0;
    conn *c = calloc(1, sizeof *c);
    struct bufferevent *bev = c ? bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (bev == NULL) {
        free(c);
        return NULL;
    }
    bufferevent_incref(bev);
    c->owner = h;
    c->bev = bev;
    c->refused = h->connection_count >= h->max_connections;
    if (!c->refused)
        set_connection_count(h, h->connection_count + 1);
    c->next_newborn = h->newborns;
    h->newborns = c;
    event_active(h->adopt, EV_TIMEOUT, 1);
    return bev;
}

static void drop_newborns(httpd *h)
{
    while (h->newborns) {
        conn *c = h->newborns;
        h->newborns = c->next_newborn;
        conn_free(c);
    }
}

static void free_connection_node(void *node)
{
    conn_free(node);
}

/* Accept errors ---------------------------------------------------------------*/

static httpd *listener_of(const struct evhttp *http)
{
    httpd *h = live_listeners;
    while (h && h->http != http)
        h = h->next_live;
    return h;
}

static void forget_listener(httpd *h)
{
    for (httpd **p = &live_listeners; *p; p = &(*p)->next_live) {
        if (*p == h) {
            *p = h->next_live;
            return;
        }
    }
}

static void open_spare(httpd *h)
{
    if (h->spare_fd < 0)
        h->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of descriptors: gives up the spare to accept and close the connections
 * waiting in the backlog, so their clients learn at once. */
static unsigned shed_waiting(httpd *h, evutil_socket_t listen_fd)
{
    unsigned shed = 0;
    if (h->spare_fd >= 0) {
        close(h->spare_fd);
        h->spare_fd = -1;
    }
    while (shed < SHED_MAX) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            break;
        close(fd);
        shed++;
    }
    open_spare(h);
    metrics_add(h->shed_total, shed);
    return shed;
}

static void log_accept_error(httpd *h, int err)
{
    if (!log_due(&h->accept_logged_ms))
        return;
    log_warn("http.accept_paused", "listener=%s error=%s errors=%u shed=%u retry_ms=%d", h->name,
             log_quote(strerror(err)).s, h->accept_errors_unlogged, h->shed_unlogged,
             h->accept_backoff_ms);
    h->accept_errors_unlogged = 0;
    h->shed_unlogged = 0;
}

static int next_backoff(int ms)
{
    if (ms == 0)
        return ACCEPT_BACKOFF_FIRST_MS;
    return ms * 2 < ACCEPT_BACKOFF_MAX_MS ? ms * 2 : ACCEPT_BACKOFF_MAX_MS;
}

/* evconnlistener error callback: accept failed with an error libevent does
 * not retry by itself. */
static void accept_failed(struct evconnlistener *lev, void *arg)
{
    int err = errno;
    httpd *h = listener_of(arg);
    evconnlistener_disable(lev);
    if (h == NULL)
        return;
    if (err == EMFILE || err == ENFILE)
        h->shed_unlogged += shed_waiting(h, evconnlistener_get_fd(lev));
    metrics_inc(h->accept_errors_total);
    h->accept_errors_unlogged++;
    h->accept_backoff_ms = next_backoff(h->accept_backoff_ms);
    log_accept_error(h, err);
    struct timeval tv = {h->accept_backoff_ms / 1000, (h->accept_backoff_ms % 1000) * 1000};
    evtimer_add(h->accept_retry, &tv);
}

static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    httpd *h = arg;
    open_spare(h);
    if (h->socket)
        evconnlistener_enable(evhttp_bound_socket_get_listener(h->socket));
}

/* In-flight bookkeeping and draining -------------------------------------------*/

static httpd_request *request_begin(httpd *h, struct evhttp_request *ev, const route *r)
{
    /* Not mem_calloc: a request we cannot hold is refused 503, the
     * listener keeps serving the others. */
    httpd_request *req = calloc(1, sizeof *req);
    if (req == NULL)
        return NULL;
    req->owner = h;
    req->ev = ev;
    req->route = r;
    req->started = monotime_now();
    LIST_INSERT_HEAD(&h->in_flight_list, req, link);
    h->in_flight++;
    metrics_set(h->in_flight_gauge, (double)h->in_flight);
    return req;
}

static void unlink_request(httpd *h, httpd_request *req)
{
    LIST_REMOVE(req, link);
    h->in_flight--;
    metrics_set(h->in_flight_gauge, (double)h->in_flight);
}

static void request_end(httpd_request *req)
{
    httpd *h = req->owner;
    unlink_request(h, req);
    free(req);
    /* The drain callback may free the world: run it from the loop, not
     * from inside a handler's reply. */
    if (h->draining && h->in_flight == 0 && h->drained_cb != NULL)
        event_active(h->drain_timer, EV_TIMEOUT, 1);
}

/* A request that became a stream stops counting as in flight. */
static void request_to_stream(httpd_request *req)
{
    httpd *h = req->owner;
    unlink_request(h, req);
    if (h->draining && h->in_flight == 0 && h->drained_cb != NULL)
        event_active(h->drain_timer, EV_TIMEOUT, 1);
}

static void drain_finished(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    httpd *h = arg;
    httpd_drained_cb *cb = h->drained_cb;
    if (cb == NULL)
        return;
    if (h->in_flight > 0)
        log_warn("http.drain_timeout", "listener=%s in_flight=%zu", h->name, h->in_flight);
    h->drained_cb = NULL;
    cb(h->drained_arg);
}

static void stop_accepting(httpd *h)
{
    if (h->socket == NULL)
        return;
    evhttp_del_accept_socket(h->http, h->socket);
    h->socket = NULL;
    evtimer_del(h->accept_retry);
}

void httpd_drain(httpd *h, int grace_ms, httpd_drained_cb *cb, void *arg)
{
    if (h->draining)
        return;
    h->draining = true;
    h->drained_cb = cb;
    h->drained_arg = arg;
    stop_accepting(h);
    log_info("http.drain", "listener=%s in_flight=%zu grace_ms=%d", h->name, h->in_flight, grace_ms);
    struct timeval tv = {grace_ms / 1000, (grace_ms % 1000) * 1000};
    evtimer_add(h->drain_timer, &tv);
    if (h->in_flight == 0)
        event_active(h->drain_timer, EV_TIMEOUT, 1);
}

size_t httpd_in_flight(const httpd *h)
{
    return h->in_flight;
}

size_t httpd_connections(const httpd *h)
{
    return h->connection_count;
}

/* Replies --------------------------------------------------------------------*/

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "OTHER";
    }
}

static void send_reply(httpd_request *req, int status, const char *content_type,
                       struct evbuffer *body)
{
    httpd *h = req->owner;
    /* Still attached to its connection, the request proves the record alive.
     * The reply's write and the next request share one deadline. */
    if (req->conn && evhttp_request_get_connection(req->ev) != NULL)
        arm_deadline(req->conn);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    evhttp_add_header(out, "Content-Type", content_type);
    if (h->draining || req->close_after)
        evhttp_add_header(out, "Connection", "close");
    log_debug("http.request", "listener=%s route=%s method=%s status=%d ms=%.1f", h->name,
              req->route->path, method_name(evhttp_request_get_command(req->ev)), status,
              monotime_ms_since(req->started));
    evhttp_send_reply(req->ev, status, NULL, body);
    count_answer(req->route, status);
    request_end(req);
}

void httpd_reply_text(httpd_request *req, int status, const char *content_type,
                      struct evbuffer *body)
{
    struct evbuffer *empty = body ? NULL : evbuffer_new();
    send_reply(req, status, content_type, body ? body : empty);
    if (empty)
        evbuffer_free(empty);
}

void httpd_reply_json(httpd_request *req, int status, json_t *body)
{
    struct evbuffer *buf = evbuffer_new();
    if (body == NULL)
        body = json_object();
    char *text = json_dumps(body, JSON_COMPACT);
    if (text) {
        evbuffer_add(buf, text, strlen(text));
        free(text);
    }
    json_decref(body);
    send_reply(req, status, "application/json; charset=utf-8", buf);
    evbuffer_free(buf);
}

void httpd_reply_error(httpd_request *req, int status, const char *code, const char *message)
{
    httpd_reply_json(req, status,
                     json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message));
}

struct evhttp_request *httpd_request_evhttp(httpd_request *req)
{
    return req->ev;
}

/* Streams ----------------------------------------------------------------------*/

/* A stream ends: by httpd_stream_end, or by its connection going away. A
 * connection that failed (client gone, dropped) has let go of the request,
 * which evhttp_send_reply_end then frees; one freed with the listener
 * still holds it and frees it itself. */
static void stream_finish(httpd_request *req)
{
    req->conn->stream = NULL;
    evhttp_send_reply_end(req->ev);
    free(req);
}

static void stream_closed(httpd_request *req)
{
    httpd_stream_closed_cb *cb = req->closed;
    void *arg = req->closed_arg;
    req->conn->stream = NULL;
    if (evhttp_request_get_connection(req->ev) == NULL)
        evhttp_send_reply_end(req->ev);
    free(req);
    cb(arg);
}

bool httpd_stream_start(httpd_request *req, const char *content_type, httpd_stream_closed_cb *closed,
                        void *arg)
{
    httpd *h = req->owner;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req->ev);
    if (req->conn == NULL || evcon == NULL) {
        httpd_reply_error(req, 503, "unavailable", "The stream cannot be opened now; try again.");
        return false;
    }
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    evhttp_add_header(out, "Content-Type", content_type);
    evhttp_add_header(out, "Cache-Control", "no-store");
    log_debug("http.stream", "listener=%s route=%s ms=%.1f", h->name, req->route->path,
              monotime_ms_since(req->started));
    evhttp_send_reply_start(req->ev, 200, NULL);
    count_answer(req->route, 200);
    /* The client only listens: no read timeout; what it sends anyway is
     * bounded (reading stops there; a failed write still finds it gone). */
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    bufferevent_set_timeouts(bev, NULL, &h->idle_timeout);
    bufferevent_setwatermark(bev, EV_READ, 0, STREAM_MAX_INPUT);
    req->closed = closed;
    req->closed_arg = arg;
    req->conn->stream = req;
    request_to_stream(req);
    return true;
}

size_t httpd_stream_send(httpd_request *req, const char *data, size_t len)
{
    struct evbuffer *chunk = evbuffer_new();
    if (chunk == NULL)
        return 0;
    evbuffer_add(chunk, data, len);
    evhttp_send_reply_chunk(req->ev, chunk);
    evbuffer_free(chunk);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req->ev);
    return evcon ? evbuffer_get_length(bufferevent_get_output(evhttp_connection_get_bufferevent(evcon))) : 0;
}

void httpd_stream_drop(httpd_request *req)
{
    /* As the request deadline drops a connection: evhttp frees it from
     * inside this call, and forget_connection reports the stream closed. */
    bufferevent_trigger_event(req->conn->bev, BEV_EVENT_TIMEOUT | BEV_EVENT_READING, 0);
}

void httpd_stream_end(httpd_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req->ev);
    if (evcon) {
        bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon), &req->owner->idle_timeout,
                                 &req->owner->idle_timeout);
        arm_deadline(req->conn);
    }
    stream_finish(req);
}

/* Dispatch -------------------------------------------------------------------*/

static const route *exact_route(const httpd *h, const char *path)
{
    for (size_t i = 0; path && i < h->route_count; i++)
        if (strcmp(h->routes[i].path, path) == 0)
            return &h->routes[i];
    return NULL;
}

/* The exact route, else the longest prefix route (a path ending in '/'). */
static const route *find_route(const httpd *h, const char *path)
{
    const route *r = exact_route(h, path), *prefix = NULL;
    size_t best = 0;
    for (size_t i = 0; path && r == NULL && i < h->route_count; i++) {
        size_t n = strlen(h->routes[i].path);
        if (h->routes[i].path[n - 1] == '/' && n > best && strncmp(h->routes[i].path, path, n) == 0) {
            best = n;
            prefix = &h->routes[i];
        }
    }
    return r ? r : prefix;
}

static void set_allow_header(struct evhttp_request *ev, unsigned methods)
{
    static const enum evhttp_cmd_type all[] = {EVHTTP_REQ_GET, EVHTTP_REQ_HEAD, EVHTTP_REQ_POST,
                                               EVHTTP_REQ_PUT, EVHTTP_REQ_PATCH, EVHTTP_REQ_DELETE,
                                               EVHTTP_REQ_OPTIONS};
    char allow[96] = "";
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (methods & all[i]) {
            if (allow[0])
                strcat(allow, ", ");
            strcat(allow, method_name(all[i]));
        }
    }
    evhttp_add_header(evhttp_request_get_output_headers(ev), "Allow", allow);
}

static void dispatch(struct evhttp_request *ev, void *arg)
{
    httpd *h = arg;
    conn *c = find_connection(h, evhttp_request_get_connection(ev));
    if (c)  /* the request is complete; the handler's time is not the client's */
        evtimer_del(c->deadline);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(ev));
    const route *r = find_route(h, path);
    httpd_request *req = request_begin(h, ev, r ? r : &h->unmatched);
    if (req == NULL) {
        evhttp_send_error(ev, HTTP_SERVUNAVAIL, NULL);
        return;
    }
    req->conn = c;
    if (r == NULL) {
        httpd_reply_error(req, 404, "not_found", "No such path.");
    } else if ((r->methods & evhttp_request_get_command(ev)) == 0) {
        set_allow_header(ev, r->methods);
        httpd_reply_error(req, 405, "method_not_allowed", "The path does not accept this method.");
    } else {
        r->fn(req, r->arg);
    }
}

int httpd_route(httpd *h, const char *path, unsigned methods, httpd_handler *fn, void *arg)
{
    if (path == NULL || path[0] != '/' || fn == NULL || (methods & KNOWN_METHODS) == 0 ||
        (methods & ~(unsigned)KNOWN_METHODS) != 0 || exact_route(h, path) != NULL ||
        h->route_count == HTTPD_MAX_ROUTES)
        return -1;
    route *r = &h->routes[h->route_count];
    r->path = strdup(path);
    if (r->path == NULL)
        return -1;
    r->methods = methods;
    r->fn = fn;
    r->arg = arg;
    register_route_metrics(h, r, path);
    h->route_count++;
    return 0;
}

/* Lifecycle -------------------------------------------------------------------*/

static bool options_valid(const httpd_options *opt)
{
    return opt->name && opt->host && opt->port >= 0 && opt->port <= 65535 &&
           opt->max_body_bytes > 0 && opt->max_header_bytes > 0 && opt->max_connections > 0 &&
           opt->idle_timeout_ms > 0 && opt->request_timeout_ms > 0;
}

static int bound_port(struct evhttp_bound_socket *socket)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(socket), (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void apply_limits(httpd *h, const httpd_options *opt)
{
    struct timeval idle = {opt->idle_timeout_ms / 1000, (opt->idle_timeout_ms % 1000) * 1000};
    evhttp_set_max_body_size(h->http, opt->max_body_bytes);
    evhttp_set_max_headers_size(h->http, opt->max_header_bytes);
    evhttp_set_timeout_tv(h->http, &idle);
    h->idle_timeout = idle;
    evhttp_set_allowed_methods(h->http, KNOWN_METHODS);
    evhttp_set_gencb(h->http, dispatch, h);
    evhttp_set_bevcb(h->http, connection_accepted, h);
    h->max_connections = (size_t)opt->max_connections;
    struct timeval deadline = {opt->request_timeout_ms / 1000, (opt->request_timeout_ms % 1000) * 1000};
    /* Every connection's timer has this one duration: a common timeout
     * keeps them in a queue, O(1) to arm and stop, instead of the heap. */
    const struct timeval *common = event_base_init_common_timeout(h->base, &deadline);
    h->request_timeout = common ? *common : deadline;
}

httpd *httpd_new(struct event_base *base, const httpd_options *opt)
{
    if (!options_valid(opt)) {
        log_error("http.bad_options", "listener=%s", opt->name ? opt->name : "?");
        return NULL;
    }
    httpd *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    h->base = base;
    h->name = strdup(opt->name);
    h->unmatched.path = "unmatched";
    h->spare_fd = -1;
    h->next_live = live_listeners;
    live_listeners = h;
    h->http = evhttp_new(base);
    h->drain_timer = evtimer_new(base, drain_finished, h);
    h->adopt = event_new(base, -1, 0, adopt_newborns, h);
    h->accept_retry = evtimer_new(base, accept_resume, h);
    if (h->name == NULL || h->http == NULL || h->drain_timer == NULL || h->adopt == NULL ||
        h->accept_retry == NULL) {
        httpd_free(h);
        return NULL;
    }
    apply_limits(h, opt);
    h->socket = evhttp_bind_socket_with_handle(h->http, opt->host, (ev_uint16_t)opt->port);
    if (h->socket == NULL) {
        log_error("http.bind_failed", "listener=%s address=%s port=%d", h->name,
                  log_quote(opt->host).s, opt->port);
        httpd_free(h);
        return NULL;
    }
    h->port = bound_port(h->socket);
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(h->socket), accept_failed);
    open_spare(h);
    register_listener_metrics(h);
    return h;
}

void httpd_free(httpd *h)
{
    if (h == NULL)
        return;
    forget_listener(h);
    if (h->http)
        evhttp_free(h->http); /* closes connections; forget_connection runs for each */
    drop_newborns(h);
    tdestroy(h->connections, free_connection_node);
    while (!LIST_EMPTY(&h->in_flight_list)) {
        httpd_request *req = LIST_FIRST(&h->in_flight_list);
        unlink_request(h, req);
        free(req);
    }
    for (size_t i = 0; i < h->route_count; i++)
        free((char *)h->routes[i].path);
    if (h->drain_timer)
        event_free(h->drain_timer);
    if (h->adopt)
        event_free(h->adopt);
    if (h->accept_retry)
        event_free(h->accept_retry);
    if (h->spare_fd >= 0)
        close(h->spare_fd);
    free(h->name);
    free(h);
}

struct event_base *httpd_base(const httpd *h)
{
    return h->base;
}

int httpd_port(const httpd *h)
{
    return h->port;
}
