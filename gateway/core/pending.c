/* pending — the life cycle of a module's outstanding operations (see
 * pending.h). Owns each op's list link and its timer, nothing else. */
#include "pending.h"

#include <event2/event.h>

#include "mem.h"

void pending_set_init(pending_set *set, struct event_base *base)
{
    static const struct timeval zero = {0, 0};
    set->base = base;
    /* A common timeout keeps its events in one queue, run in the order
     * added; plain zero timers share a heap, which keeps no order. */
    set->soon = event_base_init_common_timeout(base, &zero);
    if (set->soon == NULL)
        mem_out_of_memory("pending: event_base_init_common_timeout");
    TAILQ_INIT(&set->ops);
    set->count = 0;
}

void pending_start(pending_set *set, pending_op *op, pending_fn *fn)
{
    *op = (pending_op){.set = set, .fn = fn};
    TAILQ_INSERT_TAIL(&set->ops, op, link);
    set->count++;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    pending_op *op = arg;
    pending_complete(op, op->ev_status);
}

static void arm(pending_op *op, const struct timeval *after, int status)
{
    if (op->ev == NULL) {
        op->ev = evtimer_new(op->set->base, on_timer, op);
        if (op->ev == NULL)
            mem_out_of_memory("pending: evtimer_new");
    }
    op->ev_status = status;
    evtimer_add(op->ev, after);
}

void pending_deadline(pending_op *op, int ms, int status)
{
    if (!op->set)
        return;
    struct timeval after = {ms / 1000, (ms % 1000) * 1000};
    arm(op, &after, status);
}

void pending_deadline_tv(pending_op *op, const struct timeval *after, int status)
{
    if (op->set)
        arm(op, after, status);
}

void pending_requeue(pending_op *op)
{
    if (!op->set)
        return;
    TAILQ_REMOVE(&op->set->ops, op, link);
    TAILQ_INSERT_TAIL(&op->set->ops, op, link);
}

void pending_complete_soon(pending_op *op, int status)
{
    /* libevent runs it after this turn's polling, never inside the
     * caller's stack. */
    if (op->set)
        arm(op, op->set->soon, status);
}

bool pending_complete(pending_op *op, int status)
{
    pending_set *set = op->set;
    if (set == NULL)
        return false;
    TAILQ_REMOVE(&set->ops, op, link);
    set->count--;
    op->set = NULL;
    if (op->ev) {
        event_free(op->ev);
        op->ev = NULL;
    }
    op->fn(op, status);
    return true;
}

bool pending_is_pending(const pending_op *op)
{
    return op->set != NULL;
}

void pending_complete_all(pending_set *set, int status)
{
    while (!TAILQ_EMPTY(&set->ops))
        pending_complete(TAILQ_FIRST(&set->ops), status);
}

/* Where detached ops wait for their answer: no owner's set holds them, and
 * pending_complete needs one to unlink from. */
static pending_set detached = {.ops = TAILQ_HEAD_INITIALIZER(detached.ops)};

void pending_detach(pending_op *op)
{
    if (!op->set || op->set == &detached)
        return;
    TAILQ_REMOVE(&op->set->ops, op, link);
    op->set->count--;
    if (op->ev) {
        event_free(op->ev);
        op->ev = NULL;
    }
    op->set = &detached;
    TAILQ_INSERT_TAIL(&detached.ops, op, link);
    detached.count++;
}
