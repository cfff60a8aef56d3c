/* idem — idempotency keys of writes, persisted in SQLite so they survive a
 * restart. A key is kept 24 hours with its request's fingerprint (method,
 * path, body) and the reply it got. The fingerprint is stored only as a
 * salted crypt hash: a body may carry a PIN, which must never be stored in
 * clear. Runs inside the caller's transaction; decides nothing about HTTP. */
#ifndef SIM_IDEM_H
#define SIM_IDEM_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

#include "reply.h"

#define IDEM_KEY_MAX 64
#define IDEM_TTL_SECONDS (24 * 3600)

typedef enum {
    IDEM_NEW,        /* unseen key: apply the request, then idem_store */
    IDEM_REPLAY,     /* same key, same request: answer the stored reply */
    IDEM_MISMATCH,   /* same key, different request: 422 idempotency_key_reused */
    IDEM_ERROR       /* the database failed */
} idem_verdict;

/* 1–64 characters of [A-Za-z0-9_.:-]. */
bool idem_key_valid(const char *key);

/* Looks `key` up for the request (method, path, body of `len` bytes). On
 * IDEM_REPLAY, `*stored` receives the stored reply (caller frees its body). */
idem_verdict idem_lookup(sqlite3 *h, const char *key, const char *method, const char *path,
                         const char *body, size_t len, sim_reply *stored);

/* Keeps `key` with the request's fingerprint and the reply it got. */
bool idem_store(sqlite3 *h, const char *key, const char *method, const char *path,
                const char *body, size_t len, const sim_reply *rep);

/* Forgets keys older than IDEM_TTL_SECONDS. */
bool idem_purge(sqlite3 *h);

#endif
