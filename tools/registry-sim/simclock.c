/* simclock — a day offset on top of the real clock (see simclock.h). Dates
 * are handled as day numbers through timegm() at noon, which keeps the
 * arithmetic away from DST and leap-second edges. */
#include "simclock.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SECONDS_PER_DAY 86400L

static long offset_days;

/* Day number (days since 1970-01-01) of a valid YYYY-MM-DD, or false. */
static bool day_number(const char *ymd, long *out)
{
    if (ymd == NULL || strlen(ymd) != SIMCLOCK_DATE_LEN || ymd[4] != '-' || ymd[7] != '-')
        return false;
    for (int i = 0; i < SIMCLOCK_DATE_LEN; i++)
        if (i != 4 && i != 7 && !isdigit((unsigned char)ymd[i]))
            return false;
    struct tm tm = {0};
    tm.tm_year = atoi(ymd) - 1900;
    tm.tm_mon = atoi(ymd + 5) - 1;
    tm.tm_mday = atoi(ymd + 8);
    tm.tm_hour = 12;
    int year = tm.tm_year, mon = tm.tm_mon, mday = tm.tm_mday;
    time_t t = timegm(&tm);
    /* timegm normalises 2026-02-30 to March: a changed field means invalid. */
    if (tm.tm_year != year || tm.tm_mon != mon || tm.tm_mday != mday)
        return false;
    *out = (long)(t / SECONDS_PER_DAY);
    return true;
}

static void format_day(long day, char out[SIMCLOCK_DATE_LEN + 1])
{
    time_t t = (time_t)day * SECONDS_PER_DAY + SECONDS_PER_DAY / 2;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, SIMCLOCK_DATE_LEN + 1, "%Y-%m-%d", &tm);
}

static long real_today(void)
{
    time_t now = time(NULL);
    struct tm tm;
    char ymd[SIMCLOCK_DATE_LEN + 1];
    long day = 0;
    localtime_r(&now, &tm);
    strftime(ymd, sizeof ymd, "%Y-%m-%d", &tm);
    day_number(ymd, &day);
    return day;
}

void simclock_today(char out[SIMCLOCK_DATE_LEN + 1])
{
    format_day(real_today() + offset_days, out);
}

void simclock_now(char out[SIMCLOCK_INSTANT_LEN + 1])
{
    time_t t = time(NULL) + (time_t)offset_days * SECONDS_PER_DAY;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, SIMCLOCK_INSTANT_LEN + 1, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bool within_shift(long days)
{
    return days >= -SIMCLOCK_MAX_SHIFT_DAYS && days <= SIMCLOCK_MAX_SHIFT_DAYS;
}

static bool set_offset(long days)
{
    if (!within_shift(days))
        return false;
    offset_days = days;
    return true;
}

bool simclock_set_today(const char *ymd)
{
    long day;
    return day_number(ymd, &day) && set_offset(day - real_today());
}

bool simclock_advance(long days)
{
    if (!within_shift(days))
        return false;
    return set_offset(offset_days + days);
}

bool simclock_date_valid(const char *ymd)
{
    long day;
    return day_number(ymd, &day);
}

bool simclock_date_add(const char *ymd, long days, char out[SIMCLOCK_DATE_LEN + 1])
{
    long day;
    if (!day_number(ymd, &day))
        return false;
    format_day(day + days, out);
    return true;
}
