/* pending — operations started now and completed later, on the main loop:
 * the one life cycle of every request a module hands out (an HTTP call, a
 * Redis command, a registry request). A module embeds a pending_op in its
 * request and a pending_set in itself; this keeps the list, the deadline
 * and the deferred completion. Designed on libevent: each op that needs a
 * timer gets its own event, made when first needed.
 *
 * The contract, which every caller of such a module relies on:
 *   - exactly one completion per started op: a second pending_complete, a
 *     deadline after an answer, or an answer after the deadline finds the
 *     op already completed and does nothing;
 *   - never from inside the call that started it: an answer known at once
 *     (refused, invalid, closing) goes through pending_complete_soon and is
 *     delivered on a later loop turn, so callers never see their callback
 *     run before their own call returns;
 *   - a deadline completes the op with the status given for it;
 *   - pending_complete_all (the module's free) completes every op still
 *     pending, oldest first, including ops started by those completions.
 * The op is unlinked and its timer freed before the module's completion
 * runs, so that function may free the request and start new ones.
 * Main-loop thread only. */
#ifndef CARDLINE_PENDING_H
#define CARDLINE_PENDING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>

struct event;
struct event_base;
struct timeval;

typedef struct pending_op pending_op;

/* The module's completion: `status` is what pending_complete,
 * pending_complete_soon, the deadline or pending_complete_all said. Called
 * once per op; the op is no longer pending when it runs. */
typedef void pending_fn(pending_op *op, int status);

/* Embedded in the module's request; all fields are pending's own. */
struct pending_op {
    struct pending_set *set;      /* the set it is pending in; NULL when not */
    TAILQ_ENTRY(pending_op) link; /* in set->ops */
    pending_fn *fn;               /* the module's completion */
    struct event *ev;             /* deadline or deferred completion, made when first needed */
    int ev_status;                /* the status `ev` completes with */
};

/* Embedded in the module. */
typedef struct pending_set {
    struct event_base *base;        /* the loop completions run on */
    const struct timeval *soon;     /* a zero wait as a libevent common timeout: FIFO */
    TAILQ_HEAD(, pending_op) ops;   /* pending operations, oldest first */
    size_t count;                   /* how many */
} pending_set;

/* The request a pending_op is embedded in, as in the kernel's container_of. */
#define pending_owner(op, type, member) ((type *)(void *)((char *)(op) - offsetof(type, member)))

/* Ready to hold operations completed on `base`. */
void pending_set_init(pending_set *set, struct event_base *base);

/* Makes `op` pending in `set`, to be completed through `fn`. */
void pending_start(pending_set *set, pending_op *op, pending_fn *fn);

/* Completes `op` with `status` when `ms` milliseconds have passed, unless it
 * completes before. A second call moves the deadline. */
void pending_deadline(pending_op *op, int ms, int status);

/* The same with the wait as a timeval, which may be a libevent common
 * timeout (event_base_init_common_timeout): many ops with one wait then
 * cost a queue append each instead of a heap insertion. */
void pending_deadline_tv(pending_op *op, const struct timeval *after, int status);

/* Moves `op` to the newest end of its set (a resend that should be found
 * after the ops sent before it). */
void pending_requeue(pending_op *op);

/* Completes `op` now (from a loop callback: an answer that came). False,
 * and nothing happens, if it is not pending (already completed). */
bool pending_complete(pending_op *op, int status);

/* Completes `op` on a later loop turn (an answer known inside the call that
 * started it), in the order these calls were made. A deadline it had is
 * replaced. */
void pending_complete_soon(pending_op *op, int status);

/* True while `op` has not been completed. */
bool pending_is_pending(const pending_op *op);

/* Completes every pending op of `set` now with `status`, oldest first,
 * until none is left (ops the completions start are completed too). */
void pending_complete_all(pending_set *set, int status);

/* Takes `op` out of its set, still pending, for an owner that goes away
 * while the op's answer is still to come (a request sent on a connection
 * that outlives the owner): pending_complete_all no longer reaches it, and
 * the answer completes it through pending_complete as before, exactly
 * once. Its deadline or soon completion is dropped, and a detached op takes
 * no new one (no owner is left to bound it): only its answer ends it. */
void pending_detach(pending_op *op);

#endif
