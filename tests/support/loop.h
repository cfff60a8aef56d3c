/* loop — driving a libevent loop in in-process tests: run it until a
 * condition holds, never longer than a bound, so a test waits for events
 * and a hang fails instead of stalling. The condition is checked between
 * turns of the loop, never from inside a callback. */
#ifndef CARDLINE_TEST_LOOP_H
#define CARDLINE_TEST_LOOP_H

#include <stdbool.h>

struct event_base;
typedef struct store store;

/* What a test waits for; `arg` is what it was given. */
typedef bool tl_condition(const void *arg);

/* Runs `base` until `done(arg)` holds or `timeout_ms` passes, checking
 * after every event and at least every 10 ms; returns done(arg). */
bool tl_run_until(struct event_base *base, tl_condition *done, const void *arg, int timeout_ms);

/* The same until *flag is true. */
bool tl_run_until_true(struct event_base *base, const bool *flag, int timeout_ms);

/* The same until *count reaches `at_least` (a callback's count of calls). */
bool tl_run_until_count(struct event_base *base, const int *count, int at_least, int timeout_ms);

/* Runs `base` for `turns` turns of 10 ms whatever happens: room for more
 * events when a test checks that nothing more happens (it asserts counts
 * then, not times). */
void tl_run_turns(struct event_base *base, int turns);

/* Runs `base` until `st` has its Redis connection; false after timeout_ms. */
bool tl_wait_store(struct event_base *base, store *st, int timeout_ms);
/* Runs `base` until `st` has lost it; false after timeout_ms. */
bool tl_wait_store_lost(struct event_base *base, store *st, int timeout_ms);

#endif
