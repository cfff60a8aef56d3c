/* handlers — the business actions dialplans call by name (`call: NAME`).
 *
 * One table names every handler with what the dialplan checker needs to
 * know about it: the arguments it takes, the results it can end with and the
 * session variables each result sets. The engine starts a handler with a
 * handler_call and the handler ends it with handler_finish(), exactly once,
 * either inside run() or later from the main loop (after a registry reply).
 *
 * Handlers never block, never see the session document, and never log or
 * return a secret (a PIN arrives as an argument and is dropped when the call
 * ends). Main-thread only. */
#ifndef CARDLINE_HANDLERS_H
#define CARDLINE_HANDLERS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "channel.h"

struct event_base;
struct registry;

typedef struct handler_call handler_call;

typedef void handler_fn(handler_call *call);

typedef struct {
    const char *name;            /* result a call node branches on, e.g. "ok" */
    const char *const *sets;     /* variables set by this result (NULL-terminated, may be NULL) */
} handler_result;

typedef struct handler_def {
    const char *name;                    /* as written in dialplans */
    const char *const *args;             /* required arguments (NULL-terminated, may be NULL) */
    const char *const *optional_args;    /* optional arguments (NULL-terminated, may be NULL) */
    const char *const *secret_args;      /* arguments that may carry a secret variable (subset of the above) */
    const handler_result *results;       /* every possible result, ended by {NULL, NULL} */
    handler_fn *run;                     /* starts the work */
} handler_def;

/* What handlers may use; owned by the process, shared by every call. */
typedef struct handler_env {
    struct event_base *base;             /* the main loop */
    struct registry *registry;           /* central card registry client */
} handler_env;

/* The table ------------------------------------------------------------------*/

/* The handler named `name`, or NULL. */
const handler_def *handlers_find(const char *name);

/* The i-th handler (0-based), or NULL past the end: for listing and docs. */
const handler_def *handlers_at(size_t i);

/* True if `def` declares `result`. */
bool handler_has_result(const handler_def *def, const char *result);

/* Inside a handler -------------------------------------------------------------*/

/* An argument as rendered by the engine, or NULL if the call node gave none. */
const char *handler_arg(const handler_call *c, const char *name);
const handler_env *handler_env_of(const handler_call *c);
channel_kind handler_channel(const handler_call *c);
/* The caller's address (phone number or SIP user) as the channel saw it. */
const char *handler_caller(const handler_call *c);
const char *handler_session_id(const handler_call *c);
/* A key unique to this call of this session's step, stable across a
 * replayed hop: use it (with a suffix) as the registry Idempotency-Key. */
const char *handler_call_key(const handler_call *c);

/* Ends the call with `result` (one the table declares) and the variables to
 * set, a JSON object whose keys must be among the result's `sets` (stolen;
 * NULL for none). Exactly once per call. */
void handler_finish(handler_call *c, const char *result, json_t *vars);

#endif
