/* monotime — readings of CLOCK_MONOTONIC (see monotime.h). */
#include "monotime.h"

#include <time.h>

monotime monotime_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (monotime)t.tv_sec * 1000000000 + t.tv_nsec;
}

int64_t monotime_us(void)
{
    return monotime_now() / 1000;
}

int64_t monotime_ms(void)
{
    return monotime_now() / 1000000;
}

int64_t monotime_s(void)
{
    return monotime_now() / 1000000000;
}

double monotime_ms_since(monotime since)
{
    return (double)(monotime_now() - since) / 1e6;
}

double monotime_s_since(monotime since)
{
    return (double)(monotime_now() - since) / 1e9;
}
