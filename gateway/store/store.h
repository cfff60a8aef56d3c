/* store — session documents in Redis, asynchronously on the main loop.
 *
 * A session is one JSON object under `cl:s:{id}` (a hash holding the
 * document and its revision) with a TTL. Saves are compare-and-set on the
 * revision, done atomically in Redis by a Lua script, so of two racing
 * writers exactly one wins and the other gets STORE_CONFLICT.
 *
 * Every operation ends in exactly one callback, never from inside the call
 * that started it, and at the latest after its deadline (STORE_TIMEOUT).
 * While Redis is unreachable operations fail at once with
 * STORE_UNAVAILABLE and the store reconnects with exponential backoff.
 *
 * The store must never be handed a secret: callers strip PINs and codes
 * before saving. Main-thread only; the process must ignore SIGPIPE (hiredis
 * writes to a socket the server may have closed). */
#ifndef CARDLINE_STORE_H
#define CARDLINE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;

typedef struct store store;

typedef enum {
    STORE_OK = 0,
    STORE_NOT_FOUND,     /* load/delete: no such session (or it expired) */
    STORE_CONFLICT,      /* save: the stored revision is not the expected one */
    STORE_UNAVAILABLE,   /* not connected, or the connection dropped mid-op */
    STORE_TIMEOUT,       /* no reply within the operation deadline */
    STORE_BAD_DATA       /* the stored value is not a JSON object (or has the wrong
                          * type or revision), or the request itself was refused:
                          * bad id, doc not an object or too big, ttl out of range;
                          * a refused request changes nothing */
} store_status;

/* Limits of a request; anything beyond them ends in STORE_BAD_DATA. */
#define STORE_MAX_ID_LEN 128             /* bytes; printable, no spaces */
#define STORE_MAX_DOC_BYTES (64 * 1024)  /* the document as compact JSON */
#define STORE_MAX_TTL_S (30 * 24 * 3600) /* 30 days */

typedef struct {
    const char *host;          /* Redis address, e.g. "127.0.0.1" */
    int port;                  /* Redis port */
    const char *password;      /* AUTH password, or NULL */
    int db;                    /* SELECT index, 0 by default */
    int op_timeout_ms;         /* deadline of each operation */
    int reconnect_min_ms;      /* first reconnect delay */
    int reconnect_max_ms;      /* backoff ceiling */
    int ping_interval_ms;      /* liveness PING while connected (catches hung servers) */
    int max_pending;           /* operations in flight before new ones get UNAVAILABLE */
} store_options;

/* Sets the defaults used when the config says nothing: 127.0.0.1:6379,
 * 250 ms deadline, reconnect 100 ms doubling to 5 s, PING every 1 s,
 * 10000 pending operations. */
void store_options_default(store_options *opt);

/* Lifecycle -----------------------------------------------------------------*/

/* Starts connecting at once; never fails for an unreachable Redis (that is a
 * state, see store_connected). Returns NULL only on allocation failure. */
store *store_new(struct event_base *base, const store_options *opt);

/* Ends every pending operation (sent ones with STORE_UNAVAILABLE, refused
 * ones with their status), then disconnects. Those callbacks run inside
 * store_free; never call it from a store callback. */
void store_free(store *s);

/* True while a connection is established and authenticated. */
bool store_connected(const store *s);

/* Operations ----------------------------------------------------------------*/

/* `doc` is borrowed for the duration of the callback only (json_incref to
 * keep it); NULL unless status is STORE_OK. `revision` is the stored
 * revision (0 when not found). */
typedef void store_load_cb(store_status st, json_t *doc, uint64_t revision, void *arg);

/* `revision` is the new revision on STORE_OK, the current one on
 * STORE_CONFLICT (0 if the session does not exist), else 0. */
typedef void store_save_cb(store_status st, uint64_t revision, void *arg);

typedef void store_delete_cb(store_status st, void *arg);

void store_load(store *s, const char *id, store_load_cb *cb, void *arg);

/* Writes `doc` only if the stored revision equals `expected_revision`
 * (0 = the session must not exist yet); the new revision is
 * expected_revision + 1 and the key expires after `ttl_s` seconds. */
void store_save(store *s, const char *id, json_t *doc, uint64_t expected_revision,
                int ttl_s, store_save_cb *cb, void *arg);

void store_delete(store *s, const char *id, store_delete_cb *cb, void *arg);

/* A short stable name ("ok", "conflict", ...) for logs and metrics. */
const char *store_status_name(store_status st);

#endif
