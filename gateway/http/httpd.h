/* httpd — one HTTP listener on the main loop, a thin layer over evhttp that
 * every listener of the gateway uses (operations, USSD and SMS on [http];
 * the Agent API on its own). It owns the listening socket, the route table,
 * the limits (body, head, connections, idle time, request deadline, accept
 * errors), per-route metrics and the count of requests in flight that a
 * graceful shutdown waits for.
 *
 * Handlers receive an httpd_request and must end it exactly once with one of
 * the httpd_reply_* calls, now or later from another callback. Nothing here
 * logs request bodies, query strings or raw paths: they may carry personal
 * numbers, so logs and metrics name the route instead. Main-thread only. */
#ifndef CARDLINE_HTTPD_H
#define CARDLINE_HTTPD_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct event_base;
struct evbuffer;

typedef struct httpd httpd;
typedef struct httpd_request httpd_request;

typedef struct {
    const char *name;          /* listener name in logs and metric labels */
    const char *host;          /* address to bind, e.g. "127.0.0.1" */
    int port;                  /* port to bind; 0 picks a free one */
    int max_body_bytes;        /* larger bodies are answered 413 */
    int max_header_bytes;      /* larger request heads are refused */
    int max_connections;       /* connections open at once, counted from accept;
                                  more are closed as soon as they are accepted */
    int idle_timeout_ms;       /* a connection silent this long is closed */
    int request_timeout_ms;    /* a request's head and body must all arrive
                                  this soon after the connection starts
                                  waiting for it, or the connection is closed */
} httpd_options;

/* [http]: the gateway's listener (every field but name). */
extern const conf_section httpd_config;

/* Lifecycle -----------------------------------------------------------------*/

/* Binds and starts listening, and keeps one spare descriptor open (on
 * /dev/null) to shed waiting clients with at the descriptor limit. Returns
 * NULL (and logs why) when the address cannot be bound or an option is out
 * of range. */
httpd *httpd_new(struct event_base *base, const httpd_options *opt);

/* Closes the listener and every connection; requests still in flight are
 * dropped without an answer (their handlers must not reply afterwards). */
void httpd_free(httpd *h);

/* The port actually bound (useful with port 0). */
int httpd_port(const httpd *h);

/* The loop it serves on, for modules whose routes answer later. */
struct event_base *httpd_base(const httpd *h);

/* Routes --------------------------------------------------------------------*/

typedef void httpd_handler(httpd_request *req, void *arg);

/* Serves `path` (exact match, without query string) for the methods in
 * `methods`, a mask of EVHTTP_REQ_* bits; other methods get 405. A path
 * ending in '/' also serves every path below it (for APIs with ids in the
 * path): an exact route wins, then the longest such prefix. Unknown paths
 * get a JSON 404. Returns -1 if the path is already routed, the table is
 * full (HTTPD_MAX_ROUTES) or an argument is invalid. */
#define HTTPD_MAX_ROUTES 32
int httpd_route(httpd *h, const char *path, unsigned methods, httpd_handler *fn, void *arg);

/* The request ---------------------------------------------------------------*/

/* The underlying evhttp request: headers, body (evhttp_request_get_input_buffer),
 * URI. Valid until the reply. */
struct evhttp_request *httpd_request_evhttp(httpd_request *req);

/* Replies (each ends the request) -------------------------------------------*/

/* `body` is stolen (json_decref'd); NULL sends an empty object. */
void httpd_reply_json(httpd_request *req, int status, json_t *body);

/* {"error": {"code": code, "message": message}} — the registry's error shape. */
void httpd_reply_error(httpd_request *req, int status, const char *code, const char *message);

/* Any content type; the contents of `body` are moved out (it may be NULL). */
void httpd_reply_text(httpd_request *req, int status, const char *content_type,
                      struct evbuffer *body);

/* Streams (server-sent events) ----------------------------------------------*/

/* Called once when a stream's connection goes away before httpd_stream_end:
 * the client left, httpd_stream_drop, or the listener was freed. The
 * request is over then (never touch it again). */
typedef void httpd_stream_closed_cb(void *arg);

/* Answers 200 with `content_type` (and the headers set so far) in chunked
 * encoding and keeps the request open for httpd_stream_send. From then on
 * the request no longer counts as in flight (a drain does not wait for
 * it), the connection's idle read timeout is lifted (the client only
 * listens) and its input is bounded. False, after answering 503, when the
 * connection is not tracked (it could not tell us it closed). */
bool httpd_stream_start(httpd_request *req, const char *content_type, httpd_stream_closed_cb *closed,
                        void *arg);

/* Sends `len` bytes as one chunk; returns the bytes the connection has
 * still to write (a slow reader's backlog). */
size_t httpd_stream_send(httpd_request *req, const char *data, size_t len);

/* Closes the stream's connection (a slow reader): `closed` runs from here. */
void httpd_stream_drop(httpd_request *req);

/* Ends the stream with its last chunk; `closed` is not called. */
void httpd_stream_end(httpd_request *req);

/* Shutdown ------------------------------------------------------------------*/

typedef void httpd_drained_cb(void *arg);

/* Stops accepting connections, answers further requests on open
 * connections with "Connection: close", and calls `cb` once no request is
 * in flight or `grace_ms` has passed, whichever comes first (never from
 * inside this call). Calling it again has no effect. */
void httpd_drain(httpd *h, int grace_ms, httpd_drained_cb *cb, void *arg);

/* Requests dispatched to a handler and not yet replied to. */
size_t httpd_in_flight(const httpd *h);

/* Connections counted against max_connections: every accepted one that is
 * not closed yet. */
size_t httpd_connections(const httpd *h);

#endif
