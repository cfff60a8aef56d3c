/* walltime — the gateway's one reader of the wall clock (CLOCK_REALTIME):
 * for what a person or another process reads as a date (a session's
 * updated_at, an audit line, a held message's at_ms), never for a duration
 * or a deadline (that is monotime.h: the wall clock jumps when it is set). */
#ifndef CARDLINE_WALLTIME_H
#define CARDLINE_WALLTIME_H

#include <stdint.h>

/* Now, in milliseconds since the Unix epoch. */
int64_t walltime_ms(void);

#endif
