/* monotime — the gateway's one monotonic clock (CLOCK_MONOTONIC): for
 * durations, deadlines and rate limits, never for what a person reads (that
 * is wall time, in log.h and the store). One reading is one clock_gettime
 * call, the vDSO's, about 20 ns: cheap enough for every hop. */
#ifndef CARDLINE_MONOTIME_H
#define CARDLINE_MONOTIME_H

#include <stdint.h>

/* A point on the monotonic clock, in nanoseconds since an arbitrary start
 * (boot). Only differences between two monotimes mean anything. */
typedef int64_t monotime;

/* Now, in nanoseconds. */
monotime monotime_now(void);

/* Now, in microseconds, milliseconds and whole seconds (the same clock,
 * coarser): what a deadline or a time-to-live is kept in. */
int64_t monotime_us(void);
int64_t monotime_ms(void);
int64_t monotime_s(void);

/* Milliseconds and seconds from `since` until now, with fractions: what an
 * access log line or an uptime gauge prints. */
double monotime_ms_since(monotime since);
double monotime_s_since(monotime since);

#endif
