/* httpc — an asynchronous HTTP client on the main libevent loop: libcurl
 * multi driven through its socket API, shared by the modules that call HTTP
 * services (the card registry, Kannel's sendsms).
 *
 * It owns the transfers and the plumbing (socket and timer events, kept-alive
 * connections, per-request deadlines, the response size cap) and guarantees
 * each request exactly one callback, never from inside httpc_send. It knows
 * nothing of what it carries: no retries, no status interpretation, no
 * logging of URLs, headers or bodies (they may hold numbers, tokens, PINs or
 * one-time codes) — that is the caller's policy. Main-thread only. */
#ifndef CARDLINE_HTTPC_H
#define CARDLINE_HTTPC_H

#include <stddef.h>

struct event_base;

typedef struct httpc httpc;

typedef struct {
    int max_connections;       /* connections kept and opened per host (1-1024) */
    int max_pending;           /* requests in flight before new ones are refused */
    size_t max_response_bytes; /* a longer response body ends in HTTPC_TOO_LARGE */
} httpc_options;

/* Defaults: 32 connections, 10000 pending, 1 MiB responses. */
void httpc_options_default(httpc_options *opt);

/* How a request ended. Only HTTPC_OK carries an HTTP status and a body. */
typedef enum {
    HTTPC_OK = 0,      /* a complete response arrived (any HTTP status) */
    HTTPC_FAILED,      /* no response: connect refused, reset, deadline, DNS, TLS */
    HTTPC_TOO_LARGE,   /* the response body passed max_response_bytes */
    HTTPC_REFUSED,     /* not sent: max_pending reached, bad request, setup failed */
    HTTPC_CANCELLED    /* httpc_free ran while it was in flight */
} httpc_status;

/* One request. Everything is copied by httpc_send; the body copy is wiped
 * when the transfer ends. */
typedef struct {
    const char *method;              /* "GET", "POST", "PATCH", "DELETE", ... */
    const char *url;                 /* absolute http:// or https:// URL, escaped */
    const char *const *headers;      /* "Name: value" lines, NULL-terminated, or NULL */
    const char *body;                /* request body or NULL (never for GET) */
    size_t body_len;                 /* its length */
    int timeout_ms;                  /* whole-transfer deadline (1-600000) */
    int connect_timeout_ms;          /* TCP (+TLS) connect deadline (1-timeout_ms) */
    const char *ca_file;             /* TLS: CA bundle, or NULL */
    const char *cert_file;           /* mTLS client certificate, or NULL */
    const char *key_file;            /* mTLS client key, or NULL */
} httpc_request;

typedef struct {
    httpc_status status;    /* how it ended */
    long http_status;       /* HTTPC_OK: the response status, else 0 */
    const char *body;       /* HTTPC_OK: the body, NUL-terminated, borrowed during
                             * the callback; "" when empty; else NULL */
    size_t body_len;        /* its length */
    const char *error;      /* static text on failure (curl's reason), else NULL */
    long connects;          /* new connections the transfer opened */
} httpc_response;

typedef void httpc_cb(const httpc_response *resp, void *arg);

/* Lifecycle -----------------------------------------------------------------*/

/* Returns NULL when an option is out of range or libcurl cannot start. */
httpc *httpc_new(struct event_base *base, const httpc_options *opt);

/* Ends every request in flight with HTTPC_CANCELLED (callbacks run inside
 * httpc_free; requests they make are refused and also end before it
 * returns), then frees. Never call it from an httpc callback. */
void httpc_free(httpc *c);

/* Requests ------------------------------------------------------------------*/

/* Starts the request; `cb` runs exactly once, later. */
void httpc_send(httpc *c, const httpc_request *req, httpc_cb *cb, void *arg);

/* Requests accepted and not yet completed. */
int httpc_in_flight(const httpc *c);

/* A short stable name ("ok", "failed", ...) for logs and metrics. */
const char *httpc_status_name(httpc_status st);

#endif
