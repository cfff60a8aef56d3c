/* engine — runs dialplans, one hop at a time, for every channel alike.
 *
 * A hop is one input event of one session: the engine loads the session
 * from the store, steps the dialplan from the session's node with the event
 * (running handlers as call nodes ask), stops where the flow waits for
 * input, transfers or ends, saves the session with compare-and-set and
 * answers with the output. Channels turn their wire into events and render
 * the output; the engine never knows which channel it serves.
 *
 * A hop carrying the key of the session's last hop (a retried request) gets
 * the stored output again and runs nothing. Two hops racing on one session
 * never both apply: the loser re-reads and, if the winner was its own
 * retry, answers the winner's output.
 *
 * A store failing (or the last lost race) after a handler made its effect
 * durable and promised (handler_finish_durable: a loss report in the
 * outbox) does not turn the answer into ENGINE_UNAVAILABLE (or BUSY): the
 * hop answers ENGINE_OK with what the walk said, ended (state "end", no
 * question), and the stored session stays as it was, so a retry walks
 * again and finds the effect done.
 *
 * Secrets (input of `secret` ask nodes) live only inside the hop that
 * received them and are wiped when it ends: never saved, logged or output.
 * Main-thread only. */
#ifndef CARDLINE_ENGINE_H
#define CARDLINE_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "channel.h"

struct event_base;
struct store;
struct dialplan;
struct handler_env;

typedef struct engine engine;

typedef enum {
    ENGINE_EV_START = 0,     /* a new session: `entry` routes it to a flow */
    ENGINE_EV_INPUT,         /* digits or text for the waiting node */
    ENGINE_EV_TIMEOUT,       /* the waiting node's timeout passed with no input */
    ENGINE_EV_NO_INPUT,      /* input ended empty (just the terminator) */
    ENGINE_EV_HANGUP,        /* the caller left: the session ends */
    ENGINE_EV_TRANSFER_BACK  /* an agent hands the session back at `node` */
} engine_event_kind;

/* For channels whose request carries the whole history (USSD's `text`):
 * called by the hop after the session is loaded, before the replay check,
 * with what the session consumed, so the channel can tell what is new
 * atomically with the loaded state (a re-run after a lost race calls it
 * again on the fresh state). It writes the new input (at most size - 1
 * bytes, size = max_input_bytes + 1) and returns ENGINE_DERIVED; or
 * ENGINE_DERIVE_ANSWERED when the request asks for the last hop's answer
 * again (a retry, a further page): the hop answers ENGINE_OK with that
 * output and runs nothing, even on an ended session; or
 * ENGINE_DERIVE_REFUSED, which makes the hop ENGINE_BAD_EVENT with nothing
 * changed. */
typedef enum {
    ENGINE_DERIVED = 0,        /* `out` holds the new input */
    ENGINE_DERIVE_ANSWERED,    /* answer the last hop's output, run nothing */
    ENGINE_DERIVE_REFUSED      /* the request does not continue the session */
} engine_derived;

/* What the session consumed, as the hop loaded it. */
typedef struct {
    const char *last_key;      /* key of the last applied hop, "" when none was recorded */
    json_t *last_output;       /* that hop's output (borrowed), or NULL */
    const char *note;          /* the channel's note beside the session (store_note), or NULL */
} engine_consumed;

typedef engine_derived engine_derive_fn(const engine_consumed *c, char *out, size_t size, void *arg);

typedef struct {
    engine_event_kind kind;  /* what happened */
    channel_kind channel;    /* where it came from */
    const char *session_id;  /* the channel's session id (USSD sessionId, SIP Call-ID, SMS sender key) */
    const char *caller;      /* START: phone number or SIP user of the caller */
    const char *entry;       /* START: SIP user part, USSD service code or SMS text */
    const char *lang;        /* START: preferred language, or NULL for the default */
    const char *input;       /* INPUT: what was entered (ignored with derive_input) */
    const char *node;        /* TRANSFER_BACK: "flow.node" to continue at */
    const char *hop_key;     /* the request's identity for replays, or NULL */
    bool keep_held;          /* START: a session with an agent (state transfer) stays
                              * with the agent (ENGINE_HELD) instead of being replaced */
    engine_derive_fn *derive_input; /* INPUT: computes `input` from the session, or NULL */
    void *derive_arg;        /* passed to derive_input; must live until the hop's callback */
} engine_event;

typedef enum {
    ENGINE_OK = 0,           /* `output` is the answer */
    ENGINE_NO_ROUTE,         /* START: no route matches the entry */
    ENGINE_NO_SESSION,       /* not START: the session does not exist (or expired) */
    ENGINE_BAD_EVENT,        /* malformed event (missing fields, oversize input, unknown node) */
    ENGINE_BUSY,             /* lost compare-and-set races repeatedly */
    ENGINE_UNAVAILABLE,      /* the store failed or timed out: nothing was applied */
    ENGINE_HELD              /* the session is with an agent (state transfer): the
                              * INPUT, TIMEOUT or NO_INPUT (or a keep_held START) was
                              * not applied; only HANGUP and TRANSFER_BACK move it */
} engine_status;

/* The output of a hop (a JSON object, also what is stored for replays):
 *   {"session": ID, "lang": "zh", "state": "wait"|"end"|"transfer",
 *    "prompts": [{"id": PROMPT, "vars": {...}}, ...],
 *    "await": {"kind": "menu"|"ask", "options": ["1","2"], "min": 1, "max": 18,
 *              "terminator": "#", "secret": false, "timeout_ms": 8000,
 *              "inter_digit_ms": 3000 (ask nodes that set it)},
 *    "transfer": {"queue": Q, "reason": TEXT}}
 * `await` is present when state is "wait", `transfer` when "transfer".
 * Prompt vars hold the values their placeholders need, never a secret. */
typedef struct {
    engine_status status;    /* ENGINE_OK or why not */
    json_t *output;          /* borrowed during the callback; NULL unless ENGINE_OK or
                              * ENGINE_HELD (then the session as it stands: state
                              * "transfer", its lang and transfer, no prompts) */
} engine_result;

typedef void engine_cb(const engine_result *r, void *arg);

typedef struct {
    struct store *store;                /* sessions */
    const struct handler_env *handlers; /* what handlers may use */
    int session_ttl_s[CHANNEL_COUNT];   /* TTL of a session document per channel */
    int max_steps_per_hop;              /* guard against runaway flows (nodes entered) */
    int max_input_bytes;                /* longer input is ENGINE_BAD_EVENT */
    int max_events_kept;                /* recent events kept for agents in the store's event list (0..1000) */
    int handler_timeout_ms;             /* a handler not finished by then ends as "unavailable" */
    int max_cas_retries;                /* re-runs of a hop after losing a race */
} engine_options;

/* [session]: the TTLs and limits (not store, handlers). */
extern const conf_section engine_config;

/* Defaults: TTL voice 3600 s, USSD 300 s, SMS 900 s; 64 steps per hop;
 * 512 input bytes; 20 events kept; handler timeout 3000 ms; 3 CAS retries. */
void engine_options_default(engine_options *opt);

/* Lifecycle ------------------------------------------------------------------*/

/* Takes a reference to `dp`. */
engine *engine_new(struct event_base *base, const engine_options *opt, struct dialplan *dp);

/* Ends hops in flight with ENGINE_UNAVAILABLE, then frees. */
void engine_free(engine *e);

/* Live reload: hops from now on use `dp` (a reference is taken); hops in
 * flight finish on the set they started with. */
void engine_set_dialplan(engine *e, struct dialplan *dp);
struct dialplan *engine_dialplan(const engine *e);

/* The store the sessions live in and their TTL on `channel`: for channels
 * that keep data beside a session (the SMS messages held for an agent) with
 * the session's Redis and lifetime. */
struct store *engine_store(const engine *e);
int engine_session_ttl(const engine *e, channel_kind channel);

/* Hops ----------------------------------------------------------------------------*/

/* Runs one hop. The callback runs exactly once, never inside this call. */
void engine_hop(engine *e, const engine_event *ev, engine_cb *cb, void *arg);

const char *engine_status_name(engine_status st);

/* What agent consoles watch ---------------------------------------------------------*/

/* Written after a hop saves (docs/agents.md, "Reference"): the sessions
 * waiting for an agent (sorted set, score = when they were handed over),
 * the change log consoles poll (stream: kind queue|session|callbacks, id)
 * and the live sessions per channel (sorted set per channel, score = start;
 * written in batches every second). */
#define ENGINE_QUEUE_KEY "cl:q"
#define ENGINE_CHANGES_KEY "cl:console"
#define ENGINE_CHANGES_MAX "1000"      /* approximate length cap of the change log */
#define ENGINE_LIVE_PREFIX "cl:live:"

/* Tells consoles that a session waiting for an agent changed outside a hop
 * (an SMS held for the agent, an agent's reply): one entry in the change
 * log, fire and forget. */
void engine_note_change(engine *e, const char *session_id);

/* Tells consoles that the callback `ref` was claimed or done: one entry
 * in the change log, fire and forget. */
void engine_note_callback(engine *e, const char *ref);

/* The funnel of the current dialplans as GET /v1/funnel answers it:
 * {"flows": [{"flow", "nodes": [{"node", "kind", "entered",
 * "left": {"next", "timeout", "invalid", "hangup", "transfer", "end"}}]}]},
 * flows in load order, nodes as written; counts of this process since it
 * started (kept across reloads for nodes still there). New reference. */
json_t *engine_funnel(const engine *e);

/* Rendering -----------------------------------------------------------------------*/

/* The prompts of a hop's output as text for `channel`, in the output's
 * language, one prompt after another separated by newlines. Writes at most
 * out_size - 1 bytes (never cutting a UTF-8 character) and returns the
 * length. An unknown prompt id (a reload removed it) is skipped. */
size_t engine_render_text(const engine *e, json_t *output, channel_kind channel, char *out,
                          size_t out_size);

#endif
