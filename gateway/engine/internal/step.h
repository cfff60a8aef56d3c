/* step — the pure dialplan walk of one hop: no I/O, no clock but the event
 * timestamps, benchmarkable alone.
 *
 * Given a loaded dialplan, a session document (changed in place) and an
 * event, the step enters nodes (applying `set`, collecting prompts with a
 * snapshot of the non-secret variables) until the flow waits for input,
 * needs a handler, transfers or ends. A call node stops the walk with
 * STEP_CALL and the rendered arguments; the caller runs the handler and
 * resumes with its result. Secrets (input of `secret` ask nodes) live in
 * the step's own table, never in the document, and are wiped by engine_step_done.
 * The hop's events for agents are collected in the step too (the caller
 * saves them with the document), never in the document.
 *
 * A bad event (STEP_BAD) may have changed the document: callers step on a
 * copy and drop it. */
#ifndef CARDLINE_ENGINE_STEP_H
#define CARDLINE_ENGINE_STEP_H

#include <jansson.h>
#include <stdbool.h>

#include "dialplan.h"
#include "engine.h"
#include "funnel.h"

#define STEP_MAX_EVENT_BYTES 256  /* one recorded event, cut to fit */
#define STEP_MAX_HOP_EVENTS 64    /* events one hop keeps at most (its newest) */

typedef enum {
    STEP_WAIT = 0,   /* at a menu or ask node: the output's `await` says what for */
    STEP_END,        /* the session ended */
    STEP_TRANSFER,   /* handed to an agent queue */
    STEP_CALL,       /* needs handler `call_def` with `call_args` */
    STEP_BAD         /* the event does not fit the session (nothing to keep) */
} step_stop;

typedef struct {
    const dialplan *dp;        /* the set the hop runs on */
    json_t *doc;               /* the session document (borrowed, changed) */
    json_t *secrets;           /* hop-only variables of secret ask nodes */
    json_t *prompts;           /* the output's prompts so far */
    size_t info_from;          /* prompts before this one are no information (the restart notice) */
    const dp_node *node;       /* where the walk stands */
    channel_kind channel;      /* the session's channel */
    int steps;                 /* nodes entered in this hop */
    int max_steps;             /* the guard: more nodes end the session */
    int max_events;            /* events kept for the session, so at most per hop */
    json_t *events;            /* this hop's events, oldest first (take with engine_step_take_events) */
    bool guard_tripped;        /* the walk was stopped by the guard */
    bool restarted;            /* a reload moved the session to its flow's start */
    const struct handler_def *call_def;  /* STEP_CALL: the handler to run */
    json_t *call_args;         /* STEP_CALL: rendered arguments (take with engine_step_take_args) */
    step_stop stop;            /* the last stop */
    funnel_marks *marks;       /* where the funnel marks of the walk go, or NULL (set after init) */
    bool left;                 /* `node` was already marked left (transfer, end, hangup) */
    funnel_outcome leaving;    /* how `node` is left when the walk moves on (next, or a failure's) */
} step;

/* Prepares a walk over `doc` (a session made by engine_session_new or loaded).
 * The hop keeps its newest min(max_events, STEP_MAX_HOP_EVENTS) events. */
void engine_step_init(step *s, const dialplan *dp, json_t *doc, int max_steps, int max_events);

/* Wipes the secrets and frees what the step holds (not the document). */
void engine_step_done(step *s);

/* Walking -------------------------------------------------------------------*/

/* A new session: enters the start of `flow` (the routed one). */
step_stop engine_step_start(step *s, const dp_flow *flow);

/* Any other event, at the node the document stands on. */
step_stop engine_step_event(step *s, const engine_event *ev);

/* After STEP_CALL: the handler ended with `result` and `vars` (borrowed). */
step_stop engine_step_resume(step *s, const char *result, json_t *vars);

/* The rendered arguments of the pending call (the caller owns them). */
json_t *engine_step_take_args(step *s);

/* The hop's events for agents, a JSON array of strings oldest first, each
 * "KIND flow.node MS_SINCE_EPOCH[ INPUT]" (cut to STEP_MAX_EVENT_BYTES).
 * INPUT is what the node understood, never the raw input: a menu's chosen
 * key, an ask's key as "<key K>", an ask's answer masked by its validator
 * ("<secret>" for a secret node, "<answer len=N>" without a validator), or
 * "<refused len=N WHY>".
 * The caller owns the array; the step starts a new one. */
json_t *engine_step_take_events(step *s);

/* Output ----------------------------------------------------------------------*/

/* The hop's output as engine.h describes it (new reference). */
json_t *engine_step_output(const step *s);

/* The output as a last answer: what the walk said, with state "end" and
 * neither the waiting node's own prompts (a question nobody will take the
 * answer of) nor its await or transfer. For a hop whose effect is durable
 * but whose session could not be saved (engine.c). New reference. */
json_t *engine_step_output_ending(const step *s);

/* "flow.node" of where the walk stands, into `out`. */
void engine_step_where(const step *s, char *out, size_t size);

#endif
