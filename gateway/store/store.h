/* store — session documents in Redis, asynchronously on the main loop.
 *
 * A session is one JSON object under `cl:s:{id}` (a hash holding the
 * document and its revision) with a TTL, and its recent events for agents,
 * a list of short strings under `cl:e:{id}` with the same TTL. Saves are
 * compare-and-set on the revision, done atomically in Redis by a Lua script
 * that also appends the save's events, so of two racing writers exactly one
 * wins (and only its events are kept) and the other gets STORE_CONFLICT.
 *
 * Every operation ends in exactly one callback, never from inside the call
 * that started it, and at the latest after its deadline (STORE_TIMEOUT).
 * While Redis is unreachable operations fail at once with
 * STORE_UNAVAILABLE and the store reconnects with exponential backoff.
 * With [redis] sentinels the store asks Redis Sentinels where the master
 * is, before every connect and whenever a Sentinel announces a failover.
 *
 * The store must never be handed a secret: callers strip PINs and codes
 * before saving. Main-thread only; the process must ignore SIGPIPE (hiredis
 * writes to a socket the server may have closed). */
#ifndef CARDLINE_STORE_H
#define CARDLINE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

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
                          * bad id, doc not an object or too big, ttl out of range,
                          * events beyond their limits; a refused request changes
                          * nothing */
} store_status;

/* Limits of a request; anything beyond them ends in STORE_BAD_DATA. */
#define STORE_MAX_ID_LEN 128             /* bytes; printable, no spaces */
#define STORE_MAX_DOC_BYTES (64 * 1024)  /* the document as compact JSON */
#define STORE_MAX_TTL_S (30 * 24 * 3600) /* 30 days */
#define STORE_MAX_SAVE_EVENTS 64         /* events appended by one save */
#define STORE_MAX_EVENT_BYTES 256        /* one event, UTF-8 text without the NUL */
#define STORE_MAX_EVENTS_KEPT 1000       /* the `keep` of a save, and what load_events reads */

/* Events appended by a save: `items[0..count)` go to the end of the
 * session's list, then only its newest `keep` are kept (0 empties it). */
typedef struct {
    const char *const *items; /* the events, oldest first */
    size_t count;             /* how many (0..STORE_MAX_SAVE_EVENTS) */
    int keep;                 /* list length to trim to (0..STORE_MAX_EVENTS_KEPT) */
} store_events;

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
    const char *sentinels;     /* "ip:port,..." of Redis Sentinels, or NULL: host/port directly */
    const char *master_name;   /* the master's name at the Sentinels */
    const char *sentinel_password; /* AUTH for the Sentinels, or NULL */
    int replicas;              /* replicas a durable command waits for (WAIT), 0 = none */
    int replica_wait_ms;       /* how long WAIT waits for them */
} store_options;

/* [redis]: every field. */
extern const conf_section store_config;

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

/* True while the connection is established and authenticated (both
 * connections, with [redis] replicas > 0). */
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

/* `events` is a JSON array of strings, oldest first, borrowed for the
 * duration of the callback only; NULL unless status is STORE_OK. */
typedef void store_events_cb(store_status st, json_t *events, void *arg);

void store_load(store *s, const char *id, store_load_cb *cb, void *arg);

/* Writes `doc` only if the stored revision equals `expected_revision`
 * (0 = the session must not exist yet); the new revision is
 * expected_revision + 1 and the key expires after `ttl_s` seconds. In the
 * same atomic step, and only if the write happens, `events` (NULL for
 * none) are appended to the session's event list; the list's TTL is set to
 * `ttl_s` on every successful save, with or without events. */
void store_save(store *s, const char *id, json_t *doc, uint64_t expected_revision,
                int ttl_s, const store_events *events, store_save_cb *cb, void *arg);

/* The session's events (at most the newest STORE_MAX_EVENTS_KEPT):
 * STORE_NOT_FOUND when the session does not exist, an empty array when it
 * has none. */
void store_load_events(store *s, const char *id, store_events_cb *cb, void *arg);

/* Removes the session and its events. */
void store_delete(store *s, const char *id, store_delete_cb *cb, void *arg);

/* Channel notes --------------------------------------------------------------*/

/* A note is one short string a channel keeps beside a session (field `note`
 * of `cl:s:{id}`), which saves leave alone and which expires with the
 * session: state a channel needs on every node, written only on the rare
 * path that makes it (USSD's holding pages) and read in the same round trip
 * as the document. It must never hold a secret. */
#define STORE_MAX_NOTE_BYTES 256

/* As store_load_cb, plus the session's note (borrowed for the callback;
 * NULL when there is none or st is not STORE_OK). */
typedef void store_load_noted_cb(store_status st, json_t *doc, uint64_t revision, const char *note,
                                 void *arg);

/* store_load that also reads the note: still one HMGET. */
void store_load_noted(store *s, const char *id, store_load_noted_cb *cb, void *arg);

/* Sets the session's note, only while the session exists (STORE_NOT_FOUND
 * otherwise, nothing written); an empty or oversized note, or one that is
 * not printable ASCII, ends in STORE_BAD_DATA. */
void store_note(store *s, const char *id, const char *note, store_delete_cb *cb, void *arg);

/* Any command -----------------------------------------------------------------*/

/* Limits of store_command; beyond them the request ends in STORE_BAD_DATA. */
#define STORE_MAX_COMMAND_ARGS 1024           /* argc */
#define STORE_MAX_COMMAND_BYTES (1024 * 1024) /* one argument */

struct redisReply;

/* STORE_OK means Redis answered: `reply` is that answer, borrowed for the
 * duration of the callback only, and may be an error reply
 * (REDIS_REPLY_ERROR) for the caller to judge. Every other status comes
 * with a NULL reply. */
typedef void store_reply_cb(store_status st, const struct redisReply *reply, void *arg);

/* Sends one command on the store's connection with the store's guarantees:
 * one callback, never from inside this call, STORE_TIMEOUT after
 * op_timeout_ms, STORE_UNAVAILABLE while disconnected. Arguments travel as
 * they are (argv-based: user data never meets a format string);
 * `argvlen` NULL means NUL-terminated strings. Never send a blocking
 * command (BLPOP, XREADGROUP BLOCK, WAIT): it would stall every session
 * operation queued behind it on the one connection — poll from a timer. */
void store_command(store *s, int argc, const char **argv, const size_t *argvlen,
                   store_reply_cb *cb, void *arg);

/* Durable commands ----------------------------------------------------------*/

/* How far a durable command's write got. */
typedef struct {
    int acked;        /* replicas that acknowledged it within replica_wait_ms (WAIT's
                       * answer); 0 without replicas configured */
    bool replicated;  /* STORE_OK and acked >= [redis] replicas (always, with
                       * replicas = 0): the write survives a failover to a replica */
} store_durability;

/* As store_reply_cb, with the write's durability (meaningful when the
 * reply is not an error reply). */
typedef void store_durable_cb(store_status st, const struct redisReply *reply, store_durability d,
                              void *arg);

/* store_command for a write that must survive a failover: with [redis]
 * replicas > 0 it goes out on a second connection to the master (the
 * durable lane), followed by `WAIT replicas replica_wait_ms`, which blocks
 * only that connection; the callback comes when the WAIT answers, and a
 * reply that arrived within the deadline but with fewer replicas than
 * configured is STORE_OK with `replicated` false: the write is on the
 * master, not yet safe. Commands sent while a WAIT is out share the next
 * one. The deadline is op_timeout_ms + 2 * replica_wait_ms. With replicas
 * = 0 it is store_command on the main connection. */
void store_command_durable(store *s, int argc, const char **argv, const size_t *argvlen,
                           store_durable_cb *cb, void *arg);

/* Windowed counters ---------------------------------------------------------*/

/* `count` is the counter after this take on STORE_OK, else 0. */
typedef void store_count_cb(store_status st, long long count, void *arg);

/* Adds one to the counter `key` before the caller acts (count.c says why)
 * and reports the new count: a take is allowed when count <= its limit.
 * The key expires `window_s` (1..STORE_MAX_TTL_S) after its first unit; an
 * empty key or a window out of range ends in STORE_BAD_DATA. */
void store_count_take(store *s, const char *key, int window_s, store_count_cb *cb, void *arg);

/* A short stable name ("ok", "conflict", ...) for logs and metrics. */
const char *store_status_name(store_status st);

#endif
