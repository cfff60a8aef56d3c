/* httpd — evhttp with a route table, limits, a connection cap, metrics and
 * draining (see httpd.h). Owns the evhttp server, the bound socket, the
 * request wrappers in flight and the set of admitted connections.
 *
 * The connection cap. libevent 2.1 has no hook that both fires for every
 * accepted connection and can refuse it (evhttp_set_bevcb only builds the
 * bufferevent, and its connection object is not reachable from there), so a
 * connection is admitted at its first request instead: it goes into a
 * tsearch tree keyed by its evhttp_connection, with a close callback that
 * takes it out again. A request on a connection not in the tree while the
 * tree holds max_connections entries is answered 503 with "Connection:
 * close", so the extra connection costs one short answer and is gone.
 * Limits of this mechanism: a connection that never sends a complete
 * request head is not counted (it holds a socket until idle_timeout_ms closes
 * it), so the process needs a file-descriptor limit above max_connections;
 * and the 503 is spent on a request that could have been served. */
#include "httpd.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <search.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

/* Methods evhttp lets through to us; a route then decides 405 or not.
 * Anything else (TRACE, CONNECT) is refused by evhttp itself with 501. */
#define KNOWN_METHODS                                                        \
    (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |   \
     EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS)

enum { STATUS_CLASSES = 5 };

typedef struct {
    const char *path;                         /* exact path served */
    unsigned methods;                         /* EVHTTP_REQ_* mask */
    httpd_handler *fn;                        /* the handler */
    void *arg;                                /* its argument */
    metrics_series *answers[STATUS_CLASSES];  /* requests by status class */
} route;

struct httpd_request {
    httpd *owner;                  /* listener that dispatched it */
    struct evhttp_request *ev;     /* the evhttp request (freed after reply) */
    const route *route;            /* matched route, or the unmatched pseudo-route */
    bool close_after;              /* ask the client to close after the answer */
    struct timespec started;       /* dispatch time, for the access log */
    httpd_request *prev, *next;    /* the listener's in-flight list */
};

struct httpd {
    struct event_base *base;              /* the main loop */
    struct evhttp *http;                  /* the evhttp server */
    struct evhttp_bound_socket *socket;   /* listening socket, NULL once draining */
    char *name;                           /* listener name for logs and labels */
    int port;                             /* bound port */
    size_t max_connections;               /* admitted connections at most */
    void *connections;                    /* tsearch tree of evhttp_connection* */
    size_t connection_count;              /* entries in that tree */
    route routes[HTTPD_MAX_ROUTES];       /* the route table */
    size_t route_count;                   /* used entries of routes */
    route unmatched;                      /* metrics of 404s and httpd's own 503s */
    httpd_request *in_flight_list;        /* dispatched, not yet answered */
    size_t in_flight;                     /* length of in_flight_list */
    bool draining;                        /* httpd_drain was called */
    struct event *drain_timer;            /* grace deadline, also the "done" kick */
    httpd_drained_cb *drained_cb;         /* pending drain callback, NULL once called */
    void *drained_arg;                    /* its argument */
    metrics_series *connections_gauge;    /* admitted connections */
    metrics_series *rejected_total;       /* connections refused by the cap */
    metrics_series *in_flight_gauge;      /* requests in flight */
};

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
                                         "Client connections counted against max_connections", labels);
    h->rejected_total = metrics_counter("cardline_http_connections_rejected_total",
                                        "Connections answered 503 because max_connections was reached",
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

/* The connection cap --------------------------------------------------------*/

static int compare_connections(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return (x > y) - (x < y);
}

static void forget_connection(struct evhttp_connection *conn, void *arg)
{
    httpd *h = arg;
    if (tdelete(conn, &h->connections, compare_connections) != NULL)
        h->connection_count--;
    metrics_set(h->connections_gauge, (double)h->connection_count);
}

/* True when the connection may be served: already admitted, or admitted now. */
static bool admit_connection(httpd *h, struct evhttp_connection *conn)
{
    if (tfind(conn, &h->connections, compare_connections) != NULL)
        return true;
    if (h->connection_count >= h->max_connections)
        return false;
    if (tsearch(conn, &h->connections, compare_connections) == NULL)
        return false;
    h->connection_count++;
    evhttp_connection_set_closecb(conn, forget_connection, h);
    metrics_set(h->connections_gauge, (double)h->connection_count);
    return true;
}

static void ignore_node(void *node)
{
    (void)node;
}

/* In-flight bookkeeping and draining -------------------------------------------*/

static httpd_request *request_begin(httpd *h, struct evhttp_request *ev, const route *r)
{
    httpd_request *req = calloc(1, sizeof *req);
    if (req == NULL)
        return NULL;
    req->owner = h;
    req->ev = ev;
    req->route = r;
    clock_gettime(CLOCK_MONOTONIC, &req->started);
    req->next = h->in_flight_list;
    if (h->in_flight_list)
        h->in_flight_list->prev = req;
    h->in_flight_list = req;
    h->in_flight++;
    metrics_set(h->in_flight_gauge, (double)h->in_flight);
    return req;
}

static void unlink_request(httpd *h, httpd_request *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else
        h->in_flight_list = req->next;
    if (req->next)
        req->next->prev = req->prev;
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

static double elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) * 1e3 + (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

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
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    evhttp_add_header(out, "Content-Type", content_type);
    if (h->draining || req->close_after)
        evhttp_add_header(out, "Connection", "close");
    log_debug("http.request", "listener=%s route=%s method=%s status=%d ms=%.1f", h->name,
              req->route->path, method_name(evhttp_request_get_command(req->ev)), status,
              elapsed_ms(&req->started));
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

static void refuse_over_cap(httpd *h, struct evhttp_request *ev)
{
    metrics_inc(h->rejected_total);
    log_warn("http.connection_rejected", "listener=%s connections=%zu max=%zu", h->name,
             h->connection_count, h->max_connections);
    httpd_request *req = request_begin(h, ev, &h->unmatched);
    if (req == NULL) {
        evhttp_send_error(ev, HTTP_SERVUNAVAIL, NULL);
        return;
    }
    req->close_after = true;
    httpd_reply_error(req, 503, "too_many_connections",
                      "The server has too many open connections; retry later.");
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
    if (!admit_connection(h, evhttp_request_get_connection(ev))) {
        refuse_over_cap(h, ev);
        return;
    }
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(ev));
    const route *r = find_route(h, path);
    httpd_request *req = request_begin(h, ev, r ? r : &h->unmatched);
    if (req == NULL) {
        evhttp_send_error(ev, HTTP_SERVUNAVAIL, NULL);
        return;
    }
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
           opt->idle_timeout_ms > 0;
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
    evhttp_set_allowed_methods(h->http, KNOWN_METHODS);
    evhttp_set_gencb(h->http, dispatch, h);
    h->max_connections = (size_t)opt->max_connections;
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
    h->http = evhttp_new(base);
    h->drain_timer = evtimer_new(base, drain_finished, h);
    if (h->name == NULL || h->http == NULL || h->drain_timer == NULL) {
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
    register_listener_metrics(h);
    return h;
}

void httpd_free(httpd *h)
{
    if (h == NULL)
        return;
    if (h->http)
        evhttp_free(h->http); /* closes connections; forget_connection runs for each */
    tdestroy(h->connections, ignore_node);
    while (h->in_flight_list) {
        httpd_request *req = h->in_flight_list;
        unlink_request(h, req);
        free(req);
    }
    for (size_t i = 0; i < h->route_count; i++)
        free((char *)h->routes[i].path);
    if (h->drain_timer)
        event_free(h->drain_timer);
    free(h->name);
    free(h);
}

int httpd_port(const httpd *h)
{
    return h->port;
}
