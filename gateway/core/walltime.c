/* walltime — readings of CLOCK_REALTIME (see walltime.h). */
#include "walltime.h"

#include <time.h>

int64_t walltime_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}
