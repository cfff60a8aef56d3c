/* funnel — per flow and node of the loaded dialplans, how many times the
 * engine entered the node and how the walk left it (docs/operations.md,
 * cardline_flow_node_total). A hop notes its marks as it walks (step.c)
 * and the engine adds them only once the hop's save succeeded, so a lost
 * race or a failed save counts nothing and its re-run counts once.
 *
 * Labels come from the loaded set only, never from input: the table is
 * built at load and rebuilt at a reload, keeping the counts of the nodes
 * (flow and name) that are still there. Main-thread only. */
#ifndef CARDLINE_ENGINE_FUNNEL_H
#define CARDLINE_ENGINE_FUNNEL_H

#include <jansson.h>
#include <stddef.h>

#include "dialplan.h"

struct evbuffer;

typedef enum {
    FUNNEL_ENTERED = 0, /* the walk entered the node */
    FUNNEL_NEXT,        /* went on to another node (or the same one again) */
    FUNNEL_TIMEOUT,     /* no input, retries used up (a timeout or an empty input) */
    FUNNEL_INVALID,     /* invalid input, retries used up */
    FUNNEL_HANGUP,      /* the caller left here: a voice BYE (USSD and SMS never say
                         * so; theirs show as entered minus left) */
    FUNNEL_TRANSFER,    /* handed to a person (a transfer node) */
    FUNNEL_END,         /* the session ended here */
    FUNNEL_OUTCOMES
} funnel_outcome;

#define FUNNEL_MAX_MARKS 256 /* marks one hop keeps; more are not counted */

typedef struct {
    const dp_node *node;      /* where */
    funnel_outcome what;      /* what happened there */
} funnel_mark;

/* The marks of one hop's walk. */
typedef struct {
    size_t n;                 /* used entries */
    funnel_mark items[FUNNEL_MAX_MARKS];
} funnel_marks;

typedef struct funnel funnel;

/* The table of `dp`'s nodes; counts of `old` (may be NULL) carried over by
 * flow and node name. */
funnel *engine_funnel_new(const dialplan *dp, const funnel *old);
void engine_funnel_free(funnel *f);

/* Adds a saved hop's marks; marks on nodes of another set are skipped. */
void engine_funnel_add(funnel *f, const funnel_marks *m);

/* {"flows": [{"flow", "nodes": [{"node", "kind", "entered", "left": {...}}]}]} */
json_t *engine_funnel_json(const funnel *f);

/* Appends cardline_flow_node_total in the Prometheus text format. */
void engine_funnel_render(const funnel *f, struct evbuffer *out);

/* Notes a mark in `m` (dropped when full). */
void engine_funnel_mark(funnel_marks *m, const dp_node *node, funnel_outcome what);

#endif
