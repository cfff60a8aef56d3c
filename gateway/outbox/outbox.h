/* outbox — durable work for later: entries in a Redis stream, each handed
 * to the deliverer registered for its kind until it is done, retried with
 * backoff while the far side is down, parked as dead after too many
 * attempts or too long.
 *
 * An add is reported only once Redis has acknowledged the write, so a
 * caller may tell a citizen "accepted" truthfully (durability across a
 * Redis restart is Redis's AOF). Delivery is at least once: an attempt a
 * crashed gateway left open is reclaimed after its lease by any gateway on
 * the same Redis, so deliverers make their far side idempotent where that
 * matters (the registry's Idempotency-Key). The outbox never looks inside
 * or logs a payload (it may hold a one-time code or personal data): logs
 * carry kind, entry id, attempt and outcome. Main-thread only; runs on the
 * store's connection and never blocks it (polls from a timer). */
#ifndef CARDLINE_OUTBOX_H
#define CARDLINE_OUTBOX_H

#include <jansson.h>
#include <stdbool.h>

#include "config.h"

struct event_base;
typedef struct store store;

typedef struct outbox outbox;
typedef struct outbox_attempt outbox_attempt;

/* The entries waiting and the parked ones (streams; their lengths are
 * the backlog a supervisor watches). */
#define OUTBOX_STREAM_KEY "cl:outbox"
#define OUTBOX_DEAD_KEY "cl:outbox:dead"

/* Limits of a request; beyond them an add ends in OUTBOX_INVALID. */
#define OUTBOX_MAX_KIND_LEN 32   /* [a-z0-9_-] */
#define OUTBOX_MAX_KEY_LEN 128   /* dedupe key: printable, no spaces */
#define OUTBOX_MAX_KINDS 16      /* deliverers registered */

typedef struct {
    const char *consumer;    /* this gateway's name in the consumer group (unique
                              * per instance, [A-Za-z0-9_.:-], at most 64) */
    int poll_interval_ms;    /* how often new and due entries are fetched */
    int batch;               /* entries fetched per poll at most */
    int max_in_flight;       /* attempts open at once in this gateway */
    int lease_ms;            /* an attempt not finished by then is reclaimed */
    int backoff_min_ms;      /* first retry delay */
    int backoff_max_ms;      /* retry delay ceiling */
    int max_attempts;        /* attempts before an entry is parked as dead */
    int max_age_s;           /* age after which a retry parks it as dead instead */
    int max_payload_bytes;   /* the payload as compact JSON */
    int dedupe_ttl_s;        /* how long a dedupe key remembers its entry */
} outbox_options;

/* [outbox]: every field. */
extern const conf_section outbox_config;

/* Defaults: consumer "cardline", poll 200 ms, batch 32, 256 in flight,
 * lease 60 s, backoff 1 s doubling to 5 min, 20 attempts, 1 day, 16 KiB
 * payloads, dedupe keys kept 7 days. */
void outbox_options_default(outbox_options *opt);

/* Lifecycle -----------------------------------------------------------------*/

/* Starts polling at once. Returns NULL (logged as outbox.config) when an
 * option is out of range. `st` must outlive the outbox. */
outbox *outbox_new(struct event_base *base, store *st, const outbox_options *opt);

/* Stops polling. Attempts still open stay pending in Redis and are
 * reclaimed after their lease (by this gateway's successor or another);
 * their deliverers may still finish them, which then changes nothing.
 * Adds already sent are reported when Redis answers (the store must then
 * still exist); refused ones are reported inside outbox_free. Free the
 * deliverers' own clients first, the store after. */
void outbox_free(outbox *ob);

/* Adding --------------------------------------------------------------------*/

typedef enum {
    OUTBOX_ADDED = 0,     /* Redis acknowledged the entry */
    OUTBOX_DUPLICATE,     /* the dedupe key names an entry added before: nothing added */
    OUTBOX_UNAVAILABLE,   /* Redis down or no answer in time: the outcome may be
                           * unknown after a timeout; add again with the same key */
    OUTBOX_INVALID,       /* refused before Redis: bad kind, key or payload */
    OUTBOX_UNREPLICATED   /* outbox_add_durable only: on the master (added, or a
                           * duplicate), but fewer replicas than [redis] replicas
                           * acknowledged it in time: a failover now could lose it */
} outbox_add_status;

/* `entry_id` is the stream id (also the earlier entry's on DUPLICATE),
 * borrowed during the callback; NULL otherwise. */
typedef void outbox_add_cb(outbox_add_status st, const char *entry_id, void *arg);

/* Adds an entry of `kind` with `payload` (a JSON object, borrowed) once:
 * with a `dedupe_key` (NULL for none) a repeated add within dedupe_ttl_s is
 * a no-op reported as OUTBOX_DUPLICATE. The callback runs exactly once,
 * never inside this call. */
void outbox_add(outbox *ob, const char *kind, json_t *payload, const char *dedupe_key,
                outbox_add_cb *cb, void *arg);

/* outbox_add through the store's durable lane (store_command_durable):
 * with [redis] replicas > 0 the callback comes once the replicas
 * acknowledged the entry (OUTBOX_ADDED, OUTBOX_DUPLICATE) or the wait for
 * them ran out (OUTBOX_UNREPLICATED). For entries that must survive a
 * failover of Redis, such as loss reports. */
void outbox_add_durable(outbox *ob, const char *kind, json_t *payload, const char *dedupe_key,
                        outbox_add_cb *cb, void *arg);

/* Fetches new and due entries on the next turn of the loop instead of at
 * the next poll: for an entry whose caller waits for its delivery. */
void outbox_poll_now(outbox *ob);

/* Delivering ----------------------------------------------------------------*/

/* Called with an open attempt; the deliverer ends it exactly once with
 * outbox_finish, now or later. */
typedef void outbox_deliver_fn(outbox_attempt *a, void *arg);

/* When a failing entry of a kind is given up and parked as dead. */
typedef enum {
    OUTBOX_LIMIT_ATTEMPTS_AND_AGE = 0, /* after max_attempts or max_age_s, whichever first */
    OUTBOX_LIMIT_AGE_ONLY              /* only after max_age_s: entries that must outlive a long outage */
} outbox_limit;

/* One deliverer per kind; -1 if the kind is taken, invalid or the table full. */
int outbox_register(outbox *ob, const char *kind, outbox_limit limit, outbox_deliver_fn *fn,
                    void *arg);

const char *outbox_attempt_id(const outbox_attempt *a);   /* the stream entry id */
const char *outbox_attempt_kind(const outbox_attempt *a);
json_t *outbox_attempt_payload(const outbox_attempt *a);  /* borrowed until finished */
int outbox_attempt_number(const outbox_attempt *a);       /* 1 on the first */

typedef enum {
    OUTBOX_DONE,       /* delivered: the entry is removed */
    OUTBOX_RETRY,      /* try again after a backoff (dead once attempts or age run out) */
    OUTBOX_GIVE_UP     /* never deliverable: parked as dead at once */
} outbox_outcome;

/* Ends the attempt and frees it. `reason` is a short static text for the
 * log (never personal data), or NULL. */
void outbox_finish(outbox_attempt *a, outbox_outcome outcome, const char *reason);

/* Names ---------------------------------------------------------------------*/

const char *outbox_add_status_name(outbox_add_status st);

#endif
