/* loop — bounded runs of a test's event loop (see loop.h). While a test
 * waits, a 10 ms ticker keeps the loop from blocking longer than that, so
 * the condition and the deadline are checked at least that often; each
 * turn returns as soon as any event has run, so a wait costs no more than
 * the events it waits for. */
#include "loop.h"

#include <event2/event.h>
#include <stdlib.h>
#include <sys/time.h>

#include "harness.h"
#include "store.h"

static const struct timeval TURN = {0, 10000};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

bool tl_run_until(struct event_base *base, tl_condition *done, const void *arg, int timeout_ms)
{
    long deadline = th_now_ms() + timeout_ms;
    struct event *ticker = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    if (ticker == NULL || event_add(ticker, &TURN) != 0)
        abort();
    while (!done(arg) && th_now_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(ticker);
    return done(arg);
}

static bool is_true(const void *arg)
{
    return *(const bool *)arg;
}

bool tl_run_until_true(struct event_base *base, const bool *flag, int timeout_ms)
{
    return tl_run_until(base, is_true, flag, timeout_ms);
}

typedef struct {
    const int *count;         /* the counter watched */
    int at_least;             /* the value awaited */
} count_wait;

static bool count_reached(const void *arg)
{
    const count_wait *w = arg;
    return *w->count >= w->at_least;
}

bool tl_run_until_count(struct event_base *base, const int *count, int at_least, int timeout_ms)
{
    count_wait w = {count, at_least};
    return tl_run_until(base, count_reached, &w, timeout_ms);
}

void tl_run_turns(struct event_base *base, int turns)
{
    for (int i = 0; i < turns; i++) {
        event_base_loopexit(base, &TURN);
        event_base_dispatch(base);
    }
}

static bool store_up(const void *arg)
{
    return store_connected(arg);
}

static bool store_down(const void *arg)
{
    return !store_connected(arg);
}

bool tl_wait_store(struct event_base *base, store *st, int timeout_ms)
{
    return tl_run_until(base, store_up, st, timeout_ms);
}

bool tl_wait_store_lost(struct event_base *base, store *st, int timeout_ms)
{
    return tl_run_until(base, store_down, st, timeout_ms);
}
