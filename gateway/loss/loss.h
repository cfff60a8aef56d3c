/* loss — temporary loss reports that are never lost once confirmed.
 *
 * A report is first added to the durable outbox (kind "loss_report", a
 * Redis stream with AOF; through the store's durable lane, so with [redis]
 * replicas > 0 it also waits for the replicas to acknowledge it) and only
 * then may the caller hear "accepted"; once
 * it is there the caller hears nothing else. An add answered "unavailable"
 * may have landed all the same (Redis slow past the store's deadline), so
 * it is made again under the same dedupe key while the caller's deadline
 * allows: "duplicate" means it had. The outbox hands it to this module's
 * deliverer, which places it with the registry under an Idempotency-Key
 * derived from the report's reference, so a retried, reclaimed or repeated
 * delivery is applied once. While the
 * registry is down the entry is retried with backoff, across gateway
 * restarts and by any gateway on the same Redis.
 *
 * loss_place waits a short while for the delivery so the caller can hear
 * the truth: "done" (with the registry's expiry date) when the registry
 * confirmed in time, "accepted" with our reference otherwise — or
 * "unconfirmed" when the replicas did not acknowledge the entry in time
 * (it is on the master only). Whichever it
 * was, an SMS confirmation (or, if the registry refused, an explanation) is
 * queued through the outbox once the registry has answered, worded by the
 * dialplans' `sms_loss_done` / `sms_loss_refused` prompts.
 *
 * Payloads hold the card and ID numbers in full (the deliverer needs them);
 * logs carry the reference and masked numbers only. Main-thread only. */
#ifndef CARDLINE_LOSS_H
#define CARDLINE_LOSS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct registry;
typedef struct outbox outbox;

typedef struct loss loss;

#define LOSS_REFERENCE_LEN 14   /* "GS" + 12 characters of [0-9A-Z] */

typedef enum {
    LOSS_DONE = 0,       /* the registry placed the report before the wait ended */
    LOSS_ACCEPTED,       /* durably queued; delivery goes on after the wait */
    LOSS_NOT_NORMAL,     /* the registry refused before the wait ended: card not in normal use */
    LOSS_UNAVAILABLE,    /* not queued as far as we could learn by the deadline
                          * (Redis down, bad request): nothing was promised */
    LOSS_UNCONFIRMED     /* queued on the Redis master, but fewer replicas than
                          * [redis] replicas acknowledged it and the registry did
                          * not answer in time: most likely delivered, yet a Redis
                          * failover now could lose it — the caller is asked to
                          * check the card's status and report again if need be */
} loss_outcome;

typedef struct {
    loss_outcome outcome;
    const char *reference;   /* ours, on every outcome but UNAVAILABLE */
    const char *expires_on;  /* YYYY-MM-DD, on DONE */
} loss_result;

typedef void loss_cb(const loss_result *r, void *arg);

/* Renders an SMS prompt of the running dialplans (see handlers.h). */
typedef bool loss_render_fn(void *ctx, const char *lang, const char *id, json_t *vars,
                            char *out, size_t size);

typedef struct {
    const char *card;        /* the card to report */
    const char *ssn;         /* its holder */
    const char *channel;     /* voice | ussd | sms: the registry records it */
    const char *lang;        /* language of the SMS confirmation */
    const char *mobile;      /* where the confirmation goes; NULL or "" for none */
    const char *key;         /* stable per confirmation (the handler's call key):
                              * a repeated place with the same key is one report */
} loss_request;

/* Lifecycle -----------------------------------------------------------------*/

/* Registers the "loss_report" deliverer with `ob`. NULL if it is taken. */
loss *loss_new(struct event_base *base, struct registry *reg, outbox *ob,
               loss_render_fn *render, void *render_ctx);

/* Ends waits still open as LOSS_ACCEPTED (the entries stay in the outbox)
 * and frees. Free it before the outbox and the registry client. */
void loss_free(loss *l);

/* Placing -------------------------------------------------------------------*/

/* Queues the report durably, then waits up to `wait_ms` for the registry,
 * but never past `answer_within_ms` from now (<= 0: no such bound): the
 * deadline of whoever tells the caller, who would otherwise give up and
 * say "unavailable" of a report already queued. `cb` runs exactly once,
 * never inside this call. */
void loss_place(loss *l, const loss_request *req, int wait_ms, int answer_within_ms, loss_cb *cb, void *arg);

const char *loss_outcome_name(loss_outcome o);

#endif
