/* handler_call — how the engine starts a handler and hears its result.
 *
 * The public side of a call (arguments, env, handler_finish) is handlers.h;
 * this is the owner's side: start a call, be told its result once, or walk
 * away from it (a timed-out call still ends, its result goes nowhere). The
 * call owns its rendered arguments and wipes them (they may hold a PIN) when
 * it is freed. Handlers never include this header. Main-thread only. */
#ifndef CARDLINE_HANDLER_CALL_H
#define CARDLINE_HANDLER_CALL_H

#include "handlers.h"

/* Told the result once; `vars` is borrowed for the duration of the call
 * (json_incref to keep it) and may be NULL. */
typedef void handler_done_fn(const char *result, json_t *vars, void *arg);

typedef struct {
    const handler_def *def;      /* the handler to run */
    const handler_env *env;      /* what it may use */
    channel_kind channel;        /* the session's channel */
    const char *caller;          /* the caller's address */
    const char *session_id;      /* the session's id */
    const char *call_key;        /* idempotency base, <= HANDLER_CALL_KEY_MAX chars */
    json_t *args;                /* rendered arguments (stolen; strings wiped at the end) */
    bool *durable;               /* set true before `done` when the handler ends with
                                  * handler_finish_durable; NULL when not wanted */
} handler_call_spec;

/* Starts the call. Returns it while it runs, or NULL when it already ended
 * inside run(): `done` was then called before this returned. */
handler_call *handler_call_start(const handler_call_spec *spec, handler_done_fn *done, void *arg);

/* The owner stops listening: `done` is never called for this call, which
 * frees itself when the handler finishes. */
void handler_call_abandon(handler_call *c);

#endif
