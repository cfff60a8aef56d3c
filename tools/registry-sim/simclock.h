/* simclock — the simulator's calendar: the real clock shifted by a whole
 * number of days, so tests can move "today" forward (loss reports lapse)
 * without waiting. Dates are YYYY-MM-DD in the local calendar, instants
 * RFC 3339 UTC; both move together. Process-wide state, main thread only;
 * nothing here touches the database. */
#ifndef SIM_SIMCLOCK_H
#define SIM_SIMCLOCK_H

#include <stdbool.h>

#define SIMCLOCK_DATE_LEN 10     /* YYYY-MM-DD */
#define SIMCLOCK_INSTANT_LEN 20  /* YYYY-MM-DDTHH:MM:SSZ */
#define SIMCLOCK_MAX_SHIFT_DAYS 36500

/* Reading the clock ---------------------------------------------------------*/

void simclock_today(char out[SIMCLOCK_DATE_LEN + 1]);
void simclock_now(char out[SIMCLOCK_INSTANT_LEN + 1]);

/* Moving the clock ----------------------------------------------------------*/

/* Makes `ymd` today. False (and no change) if it is not a valid date or
 * lies more than SIMCLOCK_MAX_SHIFT_DAYS from the real date. */
bool simclock_set_today(const char *ymd);
/* Moves today by `days` (may be negative), within the same bound. */
bool simclock_advance(long days);

/* Date arithmetic -----------------------------------------------------------*/

/* True if `ymd` is exactly YYYY-MM-DD and a real calendar date. */
bool simclock_date_valid(const char *ymd);
/* out = ymd + days. False if `ymd` is not a valid date. */
bool simclock_date_add(const char *ymd, long days, char out[SIMCLOCK_DATE_LEN + 1]);

#endif
