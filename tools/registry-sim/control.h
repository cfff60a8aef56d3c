/* control — the simulator's test controls, served under /_sim only with
 * --control: injected faults (status, delay, malformed body, dropped
 * connection) for the next N requests under a path prefix, the simulated
 * calendar, and statistics (requests, replays, applied writes). Holds the
 * fault and the in-memory counters; applied-write counters are read from the
 * database, where records.c keeps them. Never changes registry data. */
#ifndef SIM_CONTROL_H
#define SIM_CONTROL_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>

#include "reply.h"

#define CONTROL_DELAY_MAX_MS 60000

typedef struct control control;

typedef enum {
    FAULT_PASS,        /* after the delay, handle the request normally */
    FAULT_STATUS,      /* answer with an error status */
    FAULT_MALFORMED,   /* answer 200 with a body that is not valid JSON */
    FAULT_DROP         /* close the connection without an answer */
} control_fault_action;

typedef struct {
    control_fault_action action;  /* what to do once the delay has passed */
    int status;                   /* the error status for FAULT_STATUS */
    long delay_ms;                /* wait before acting (0 = none) */
} control_fault_hit;

/* Lifecycle -----------------------------------------------------------------*/

control *control_new(sqlite3 *h);
void control_free(control *c);

/* Used by the request path --------------------------------------------------*/

/* If a fault is armed for `path`, takes one use of it into `*hit`. */
bool control_fault_take(control *c, const char *path, control_fault_hit *hit);
void control_count_request(control *c);
void control_count_replay(control *c);

/* Endpoints (body: the request's JSON object, NULL for GET/DELETE) ---------*/

sim_reply control_fault_show(control *c);
sim_reply control_fault_set(control *c, json_t *body);
sim_reply control_fault_clear(control *c);
sim_reply control_clock_show(void);
sim_reply control_clock_set(json_t *body);
sim_reply control_stats(control *c);

#endif
