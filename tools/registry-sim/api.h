/* api — the simulator's HTTP face (evhttp on the caller's libevent loop):
 * routing of docs/registry-api.md, 404/405 with error bodies, bearer-token
 * check, body and header limits, X-Request-Id, pagination tokens,
 * idempotency of writes (one SQLite transaction per request), injected
 * faults with timers (the loop never blocks), and one masked log line per
 * request. Never logs a body; leaves every rule to records.c. */
#ifndef SIM_API_H
#define SIM_API_H

#include <sqlite3.h>
#include <stdbool.h>

#include "control.h"
#include "records.h"

#define API_BODY_MAX 16384        /* the contract's request body limit */
#define API_HEADERS_MAX 8192      /* all request headers together */

struct event_base;

typedef struct api api;

typedef struct {
    const char *token;   /* bearer token required on /v1 except /v1/health, or NULL */
    bool control;        /* serve the /_sim control endpoints */
} api_options;

/* Borrows every argument but `opt` (copied); they must outlive the api. */
api *api_new(struct event_base *base, sqlite3 *h, records *rec, control *ctl,
             const api_options *opt);

/* Binds host:port. False if the address cannot be bound. */
bool api_listen(api *a, const char *host, int port);

/* Answers every request held by an injected delay (503, or a dropped
 * connection if that was the fault). Returns how many there were, so the
 * caller can let the loop flush those answers before freeing. */
int api_drain(api *a);

/* Drains, closes every connection, frees. */
void api_free(api *a);

#endif
