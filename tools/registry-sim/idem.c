/* idem — idempotency keys (see idem.h). crypt(3) takes at most 511 bytes,
 * and a body may be 16 KiB: the fingerprint phrase is method, path and a
 * 128-bit FNV-1a digest of the body, and that phrase is what gets crypted
 * with a fresh salt. FNV only condenses; the salted crypt is what keeps a PIN
 * inside the body from being recoverable. */
#include "idem.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "pinhash.h"

#define PHRASE_MAX 480

bool idem_key_valid(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n < 1 || n > IDEM_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)key[i]) && !strchr("_.:-", key[i]))
            return false;
    return true;
}

static uint64_t fnv1a64(const char *data, size_t len, uint64_t basis)
{
    uint64_t h = basis;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)data[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* False if method and path do not fit a crypt phrase. */
static bool fingerprint_phrase(const char *method, const char *path, const char *body, size_t len,
                               char out[PHRASE_MAX])
{
    uint64_t a = fnv1a64(body, len, 0xcbf29ce484222325ULL);
    uint64_t b = fnv1a64(body, len, 0x84222325cbf29ce4ULL);
    int n = snprintf(out, PHRASE_MAX, "%s %s %016" PRIx64 "%016" PRIx64 " %zu", method, path, a, b, len);
    return n > 0 && n < PHRASE_MAX;
}

idem_verdict idem_lookup(sqlite3 *h, const char *key, const char *method, const char *path,
                         const char *body, size_t len, sim_reply *stored)
{
    char phrase[PHRASE_MAX];
    if (!fingerprint_phrase(method, path, body, len, phrase))
        return IDEM_ERROR;
    sqlite3_stmt *st = db_prepare(h, "SELECT fingerprint, status, body FROM idempotency WHERE key = ?",
                                  "t", key);
    if (st == NULL)
        return IDEM_ERROR;
    idem_verdict v = IDEM_NEW;
    if (sqlite3_step(st) == SQLITE_ROW) {
        v = IDEM_MISMATCH;
        if (pinhash_matches(phrase, db_text(st, 0))) {
            json_t *reply_body = json_loads(db_text(st, 2), 0, NULL);
            *stored = reply_json(sqlite3_column_int(st, 1), reply_body);
            v = reply_body ? IDEM_REPLAY : IDEM_ERROR;
        }
    }
    explicit_bzero(phrase, sizeof phrase);
    sqlite3_finalize(st);
    return v;
}

bool idem_store(sqlite3 *h, const char *key, const char *method, const char *path,
                const char *body, size_t len, const sim_reply *rep)
{
    char phrase[PHRASE_MAX], hash[PINHASH_MAX];
    bool ok = fingerprint_phrase(method, path, body, len, phrase) && pinhash_make(phrase, hash);
    explicit_bzero(phrase, sizeof phrase);
    char *text = ok ? json_dumps(rep->body, JSON_COMPACT) : NULL;
    ok = text != NULL &&
         db_run(h, "INSERT INTO idempotency(key, fingerprint, status, body, created_at) VALUES(?, ?, ?, ?, ?)",
                "ttitl", key, hash, rep->status, text, (long long)time(NULL));
    free(text);
    return ok;
}

bool idem_purge(sqlite3 *h)
{
    return db_run(h, "DELETE FROM idempotency WHERE created_at < ?", "l",
                  (long long)time(NULL) - IDEM_TTL_SECONDS);
}
