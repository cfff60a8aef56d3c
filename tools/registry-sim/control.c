/* control — fault injection, clock and statistics endpoints (see control.h).
 * A fault is one armed description; each matching request takes one use of
 * its count until the count runs out or the fault is cleared. */
#include "control.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "records.h"
#include "simclock.h"

#define PREFIX_MAX 64
#define COUNT_MAX 1000000
#define UNLIMITED (-1)

typedef struct {
    bool armed;                   /* a fault is in force */
    control_fault_hit hit;        /* what each matching request gets */
    long remaining;               /* uses left, or UNLIMITED until cleared */
    char path_prefix[PREFIX_MAX]; /* only paths starting with this match */
} fault;

struct control {
    sqlite3 *h;                   /* database holding the applied counters */
    fault fault;                  /* the armed fault, if any */
    long long requests;           /* requests received since start */
    long long replays;            /* idempotent replays answered since start */
};

control *control_new(sqlite3 *h)
{
    control *c = calloc(1, sizeof *c);
    if (c != NULL)
        c->h = h;
    return c;
}

void control_free(control *c)
{
    free(c);
}

bool control_fault_take(control *c, const char *path, control_fault_hit *hit)
{
    fault *f = &c->fault;
    if (!f->armed || strncmp(path, f->path_prefix, strlen(f->path_prefix)) != 0)
        return false;
    *hit = f->hit;
    if (f->remaining != UNLIMITED && --f->remaining == 0)
        f->armed = false;
    return true;
}

void control_count_request(control *c)
{
    c->requests++;
}

void control_count_replay(control *c)
{
    c->replays++;
}

/* Faults --------------------------------------------------------------------*/

static json_t *fault_json(const fault *f)
{
    return json_pack("{s:b, s:o, s:I, s:b, s:b, s:o, s:s}",
                     "active", f->armed,
                     "status", f->armed && f->hit.action == FAULT_STATUS ? json_integer(f->hit.status) : json_null(),
                     "delay_ms", (json_int_t)(f->armed ? f->hit.delay_ms : 0),
                     "malformed", f->armed && f->hit.action == FAULT_MALFORMED,
                     "drop", f->armed && f->hit.action == FAULT_DROP,
                     "count", f->armed && f->remaining != UNLIMITED ? json_integer(f->remaining) : json_null(),
                     "path_prefix", f->armed ? f->path_prefix : "");
}

sim_reply control_fault_show(control *c)
{
    return reply_json(200, fault_json(&c->fault));
}

static sim_reply bad_fault(const char *message)
{
    return reply_error(400, "invalid_request", message);
}

/* Reads an optional integer field within [min, max] into *out. */
static bool optional_int(json_t *body, const char *key, long min, long max, long *out)
{
    json_t *v = json_object_get(body, key);
    if (v == NULL)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return false;
    *out = (long)json_integer_value(v);
    return true;
}

static bool optional_bool(json_t *body, const char *key, bool *out)
{
    json_t *v = json_object_get(body, key);
    if (v == NULL)
        return true;
    *out = json_is_true(v);
    return json_is_boolean(v);
}

static const char *fault_unknown_field(json_t *body)
{
    static const char *const known[] = {"status", "delay_ms", "malformed", "drop", "count", "path_prefix", NULL};
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value) {
        bool found = false;
        for (size_t i = 0; known[i]; i++)
            found = found || strcmp(key, known[i]) == 0;
        if (!found)
            return key;
    }
    return NULL;
}

sim_reply control_fault_set(control *c, json_t *body)
{
    fault f = {.armed = true, .remaining = UNLIMITED, .path_prefix = "/v1/"};
    long status = 0;
    bool malformed = false, drop = false;
    json_t *prefix = json_object_get(body, "path_prefix");
    if (fault_unknown_field(body) != NULL)
        return bad_fault("Unknown field; a fault has status, delay_ms, malformed, drop, count, path_prefix.");
    if (!optional_int(body, "status", 400, 599, &status))
        return bad_fault("status must be an integer from 400 to 599.");
    if (!optional_int(body, "delay_ms", 0, CONTROL_DELAY_MAX_MS, &f.hit.delay_ms))
        return bad_fault("delay_ms must be an integer from 0 to 60000.");
    if (!optional_int(body, "count", 1, COUNT_MAX, &f.remaining))
        return bad_fault("count must be an integer from 1 to 1000000.");
    if (!optional_bool(body, "malformed", &malformed) || !optional_bool(body, "drop", &drop))
        return bad_fault("malformed and drop must be booleans.");
    if (prefix && (!json_is_string(prefix) || json_string_value(prefix)[0] != '/' ||
                   json_string_length(prefix) >= PREFIX_MAX))
        return bad_fault("path_prefix must be a string starting with / of at most 63 characters.");
    if ((status != 0) + malformed + drop > 1)
        return bad_fault("Choose at most one of status, malformed and drop.");
    if (status == 0 && !malformed && !drop && f.hit.delay_ms == 0)
        return bad_fault("Nothing to inject: give status, malformed, drop or delay_ms.");
    if (prefix)
        strcpy(f.path_prefix, json_string_value(prefix));
    f.hit.status = (int)status;
    f.hit.action = drop ? FAULT_DROP : malformed ? FAULT_MALFORMED : status ? FAULT_STATUS : FAULT_PASS;
    c->fault = f;
    return control_fault_show(c);
}

sim_reply control_fault_clear(control *c)
{
    c->fault.armed = false;
    return control_fault_show(c);
}

/* Clock ---------------------------------------------------------------------*/

sim_reply control_clock_show(void)
{
    char today[SIMCLOCK_DATE_LEN + 1];
    simclock_today(today);
    return reply_json(200, json_pack("{s:s}", "today", today));
}

sim_reply control_clock_set(json_t *body)
{
    json_t *advance = json_object_get(body, "advance_days");
    json_t *today = json_object_get(body, "today");
    if (json_object_size(body) != 1 || (advance == NULL && today == NULL))
        return bad_fault("Send exactly one of advance_days and today.");
    json_int_t days = json_integer_value(advance);
    bool in_range = days >= -SIMCLOCK_MAX_SHIFT_DAYS && days <= SIMCLOCK_MAX_SHIFT_DAYS;
    bool ok = advance ? json_is_integer(advance) && in_range && simclock_advance((long)days)
                      : simclock_set_today(json_string_value(today));
    if (!ok)
        return bad_fault("advance_days must be an integer and today a YYYY-MM-DD date, within 100 years.");
    return control_clock_show();
}

/* Statistics ----------------------------------------------------------------*/

sim_reply control_stats(control *c)
{
    json_t *applied = json_object();
    for (size_t i = 0; records_counter_names[i]; i++)
        json_object_set_new(applied, records_counter_names[i],
                            json_integer(db_counter(c->h, records_counter_names[i])));
    return reply_json(200, json_pack("{s:I, s:I, s:o}", "requests", (json_int_t)c->requests,
                                     "replays", (json_int_t)c->replays, "applied", applied));
}
