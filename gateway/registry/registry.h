/* registry — the client of the central card registry (docs/registry-api.md).
 *
 * Transfers run on gateway/httpc (libcurl multi on the main libevent loop):
 * requests run concurrently over kept-alive connections, each with its own
 * deadline. Every write carries an Idempotency-Key chosen by the caller, so
 * a retried write is never applied twice. Results are typed: the caller branches on
 * registry_status and reads the JSON body for details.
 *
 * Bodies may carry a PIN (pin verification, activation): the client never
 * logs request bodies, only method, path shape, status and timing — and
 * paths through mask.h. Main-thread only. */
#ifndef CARDLINE_REGISTRY_H
#define CARDLINE_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>

#include "config.h"

struct event_base;

typedef struct registry registry;

typedef enum {
    REGISTRY_OK = 0,          /* 2xx with a JSON object body */
    REGISTRY_NOT_FOUND,       /* 404 */
    REGISTRY_CONFLICT,        /* 409: the resource's state forbids the action */
    REGISTRY_REJECTED,        /* 400, 401, 403, 413, 422: the request was refused as sent */
    REGISTRY_LOCKED,          /* 423: the PIN is locked */
    REGISTRY_UNAVAILABLE,     /* connect failure, deadline, 429, 5xx */
    REGISTRY_BAD_RESPONSE     /* unparsable JSON, wrong shape, unexpected status */
} registry_status;

typedef struct {
    registry_status status;
    long http_status;         /* 0 when no response arrived */
    const char *error_code;   /* the error body's `code`, or NULL */
    json_t *body;             /* parsed body (object) or NULL; borrowed during the callback */
    double elapsed_ms;        /* request time as measured by the client */
} registry_result;

typedef struct {
    const char *base_url;     /* e.g. "http://127.0.0.1:8090" (no trailing /v1) */
    const char *token;        /* bearer token, or NULL */
    const char *ca_file;      /* TLS: CA bundle, or NULL */
    const char *cert_file;    /* mTLS client certificate, or NULL */
    const char *key_file;     /* mTLS client key, or NULL */
    int timeout_ms;           /* whole-request deadline, read retries included */
    int connect_timeout_ms;   /* TCP (+TLS) connect deadline */
    int max_connections;      /* concurrent connections to the registry */
    int max_pending;          /* requests in flight before new ones get UNAVAILABLE */
    int read_retries;         /* extra attempts of a GET after UNAVAILABLE, while
                                 timeout_ms leaves time (a deadline leaves none) */
    int health_interval_ms;   /* period of the /v1/health probe (ops runs it) */
} registry_options;

/* [registry]: every field. */
extern const conf_section registry_config;

/* Defaults: http://127.0.0.1:8090, 2000 ms deadline, 500 ms connect,
 * 32 connections, 10000 pending, 1 read retry. */
void registry_options_default(registry_options *opt);

typedef void registry_cb(const registry_result *r, void *arg);

/* Lifecycle -----------------------------------------------------------------*/

/* Returns NULL if an option is out of range (logged as registry.config). */
registry *registry_new(struct event_base *base, const registry_options *opt);

/* Completes every pending request with REGISTRY_UNAVAILABLE, then frees.
 * Not to be called from inside a registry callback. */
void registry_free(registry *r);

/* Generic request -----------------------------------------------------------*/

/* `method` GET/POST/PATCH/DELETE; `path` starts with /v1, URL-escaped;
 * `body` (may be NULL) is borrowed and serialized at once; `idempotency_key`
 * is required for writes (NULL for GET). The callback runs exactly once,
 * never from inside this call. A request the contract forbids (unknown
 * method, bad path, write without a valid key, body not an object or over
 * 16 KiB) is not sent: it completes with REGISTRY_REJECTED, http_status 0,
 * and an error log line. Writes are never repeated by the client. */
void registry_request(registry *r, const char *method, const char *path,
                      json_t *body, const char *idempotency_key,
                      registry_cb *cb, void *arg);

/* The contract's calls ------------------------------------------------------*/

void registry_health(registry *r, registry_cb *cb, void *arg);
/* The registry's settings (temporary loss validity, collection period). */
void registry_get_settings(registry *r, registry_cb *cb, void *arg);
void registry_get_person(registry *r, const char *ssn, registry_cb *cb, void *arg);
void registry_update_contact(registry *r, const char *ssn, const char *mobile,
                             const char *address, const char *idempotency_key,
                             registry_cb *cb, void *arg);
/* `pin` is copied into the request body only and wiped after sending. */
void registry_verify_pin(registry *r, const char *ssn, const char *pin,
                         const char *idempotency_key, registry_cb *cb, void *arg);
/* `page_token` may be NULL for the first page; `page_size` 0 = default. */
void registry_list_cards(registry *r, const char *ssn, int page_size,
                         const char *page_token, registry_cb *cb, void *arg);
void registry_list_applications(registry *r, const char *ssn, int page_size,
                                const char *page_token, registry_cb *cb, void *arg);
void registry_get_card(registry *r, const char *card, registry_cb *cb, void *arg);
void registry_report_loss(registry *r, const char *card, const char *channel,
                          const char *reference, const char *idempotency_key,
                          registry_cb *cb, void *arg);
void registry_cancel_loss(registry *r, const char *card, const char *report_id,
                          const char *channel, const char *idempotency_key,
                          registry_cb *cb, void *arg);
/* `new_pin` is copied into the request body only and wiped after sending. */
void registry_activate_card(registry *r, const char *card, const char *ssn,
                            const char *new_pin, const char *idempotency_key,
                            registry_cb *cb, void *arg);

/* Reading answers -----------------------------------------------------------*/

/* The registry's own count of PIN attempts left before it locks the card
 * (1 = the next wrong PIN locks it, 0 = locked), as a person carries it
 * (`pin.remaining_attempts`, docs/registry-api.md), a card (the same) and a
 * pin-verification answer or its 423 error body (`remaining_attempts`).
 * REGISTRY_COUNT_ABSENT when the body does not carry it (a registry older
 * than the count, or a person without a current card), REGISTRY_COUNT_BAD
 * when it is there but not a count: the caller must not take garbage for
 * "no count". */
#define REGISTRY_COUNT_ABSENT (-1)
#define REGISTRY_COUNT_BAD (-2)
#define REGISTRY_COUNT_MAX 1000
int registry_pin_remaining(const json_t *body);

/* Names ---------------------------------------------------------------------*/

const char *registry_status_name(registry_status st);

#endif
