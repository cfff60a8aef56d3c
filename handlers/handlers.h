/* handlers — the business actions dialplans call by name (`call: NAME`).
 *
 * One table names every handler with what the dialplan checker needs to
 * know about it: the arguments it takes, the results it can end with and the
 * session variables each result sets. The engine starts a handler with a
 * handler_call and the handler ends it with handler_finish(), exactly once,
 * either inside run() or later from the main loop (after a registry reply).
 *
 * Handlers never block, never see the session document, and never log or
 * return a secret (a PIN arrives as an argument and is dropped when the call
 * ends). Main-thread only. */
#ifndef CARDLINE_HANDLERS_H
#define CARDLINE_HANDLERS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "channel.h"
#include "handler_def.h"

struct event_base;
struct registry;
struct store;
struct loss;

/* Renders prompt `id` of the running dialplan set in `lang` for SMS with
 * `vars` into `out`; false when the set has no such prompt. */
typedef bool handler_render_fn(void *ctx, const char *lang, const char *id, json_t *vars,
                               char *out, size_t size);

/* Sends `text` to `to` by SMS at once, outside the durable outbox, so a
 * one-time code in it is never stored; false when no SMS route exists. */
typedef bool handler_send_now_fn(void *ctx, const char *to, const char *text);

/* The workflows' limits ([workflows] in the configuration). */
typedef struct {
    int identify_window_s;        /* window of the failed-identification counters */
    int identify_max_per_caller;  /* failed identifications per caller number per window */
    int identify_max_per_id;      /* failed identifications per citizen ID per window */
    int code_ttl_s;               /* life of a one-time code */
    int code_tries;               /* wrong entries before a code is void */
    int code_sends;               /* codes one session may ask for */
    int loss_confirm_wait_ms;     /* how long report_loss waits to say "done" */
    int handler_timeout_ms;       /* the engine abandons a call after this ([session]); 0: unknown */
    int number_window_s;          /* window of the per-number counters below */
    int codes_per_number;         /* codes sent to one mobile number per window */
    int callbacks_per_number;     /* callbacks one caller number may book per window */
    int sessions_per_number;      /* USSD/SMS sessions one number may start per window (ussd, sms) */
    int registry_pin_window_s;    /* a registry without the PIN count: its lock window, 0 = it sends the count */
    const char *digest_secret;    /* HMAC key of code and new-PIN digests (runtime keeps it as
                                     handler_env.digest_key), NULL = random */
} handler_limits;

/* [workflows]: every field but handler_timeout_ms ([session]). */
extern const conf_section handler_config;

/* The text channels' start limit: sessions_per_number in number_window_s,
 * which ussd and sms options carry as starts_per_number and
 * number_window_s. Its defaults come from the table above, and values
 * outside the table's ranges are refused ("KEY must be MIN-MAX" in `buf`,
 * NULL when both are fine), so [workflows] stays their one source. */
void handlers_start_limit_default(int *starts_per_number, int *number_window_s);
const char *handlers_start_limit_problem(int starts_per_number, int number_window_s, char *buf, size_t size);

/* What handlers may use; owned by the process, shared by every call. */
typedef struct handler_env {
    struct event_base *base;             /* the main loop */
    struct registry *registry;           /* central card registry client */
    struct store *store;                 /* Redis: counters, code digests (never a code) */
    struct loss *loss;                   /* loss reports through the durable outbox */
    handler_render_fn *render;           /* SMS wording from the dialplans */
    handler_send_now_fn *send_now;       /* one-time codes; NULL: no SMS route */
    void *ctx;                           /* argument of render and send_now */
    const unsigned char *digest_key;     /* HMAC key of code and new-PIN digests */
    size_t digest_key_len;
    handler_limits limits;
} handler_env;

/* The table ------------------------------------------------------------------*/

/* The handler named `name`, or NULL. */
const handler_def *handlers_find(const char *name);

/* The Redis key holding a session's one-time code (a digest, never the
 * code): cardline-sim deletes it to make the code expire. */
#define HANDLER_CODE_KEY_MAX 192
void handlers_code_key(const char *session_id, char *out, size_t size);

/* The i-th handler (0-based), or NULL past the end: for listing and docs. */
const handler_def *handlers_at(size_t i);

/* True if `def` declares `result`. */
bool handler_has_result(const handler_def *def, const char *result);

/* Inside a handler -------------------------------------------------------------*/

/* An argument as rendered by the engine, or NULL if the call node gave none. */
const char *handler_arg(const handler_call *c, const char *name);
const handler_env *handler_env_of(const handler_call *c);
channel_kind handler_channel(const handler_call *c);
/* The caller's address (phone number or SIP user) as the channel saw it. */
const char *handler_caller(const handler_call *c);
const char *handler_session_id(const handler_call *c);
/* A key unique to this call of this session's step, stable across a
 * replayed hop: use it (with a suffix) as the registry Idempotency-Key. */
const char *handler_call_key(const handler_call *c);

/* Room left for a handler's suffix within the registry's 64-char key. */
#define HANDLER_CALL_KEY_MAX 56

/* Wipes a secret argument once it has been copied where it is needed (the
 * request body), so it lives no longer than necessary. */
void handler_wipe_arg(handler_call *c, const char *name);

/* Ends the call with `result` (one the table declares) and the variables to
 * set, a JSON object whose keys must be among the result's `sets` (stolen;
 * NULL for none). Exactly once per call. */
void handler_finish(handler_call *c, const char *result, json_t *vars);

/* handler_finish for a result whose effect is already durable and promised
 * to the caller (a loss report in the outbox): the hop answers with it even
 * if its session then cannot be saved, rather than "unavailable". */
void handler_finish_durable(handler_call *c, const char *result, json_t *vars);

#endif
