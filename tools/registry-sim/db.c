/* db — SQLite connection, schema and statement helpers (see db.h). WAL mode
 * with synchronous=NORMAL: a committed write survives a process crash, which
 * is what "seed survives restart" and exactly-once delivery need. The schema
 * carries a version (PRAGMA user_version): a database an older simulator made
 * is rebuilt empty, so the seed loads again, rather than half-read. */
#include "db.h"

#include <stdarg.h>
#include <stdio.h>

/* Bumped whenever a table changes shape. */
#define SCHEMA_VERSION 2

static const char drop_all[] =
    "DROP TABLE IF EXISTS loss_reports; DROP TABLE IF EXISTS applications;"
    "DROP TABLE IF EXISTS cards; DROP TABLE IF EXISTS persons; DROP TABLE IF EXISTS outlets;"
    "DROP TABLE IF EXISTS banks; DROP TABLE IF EXISTS idempotency; DROP TABLE IF EXISTS counters;";

static const char schema[] =
    "PRAGMA foreign_keys=ON;"
    "CREATE TABLE IF NOT EXISTS banks("
    "  code TEXT PRIMARY KEY, name TEXT NOT NULL, name_en TEXT, hotline TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS outlets("
    "  code TEXT PRIMARY KEY, name TEXT NOT NULL, name_en TEXT, address TEXT NOT NULL,"
    "  address_en TEXT, opening_hours TEXT NOT NULL, phone TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS persons("
    "  ssn TEXT PRIMARY KEY, name TEXT NOT NULL, birth_date TEXT NOT NULL,"
    "  mobile TEXT, address TEXT, updated_at TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS cards("
    "  card_number TEXT PRIMARY KEY, ssn TEXT NOT NULL REFERENCES persons(ssn),"
    "  status INTEGER NOT NULL, current INTEGER NOT NULL, generation INTEGER NOT NULL,"
    "  issued_date TEXT, replaces TEXT, replaced_by TEXT,"
    "  bank_code TEXT NOT NULL REFERENCES banks(code),"
    "  pin_hash TEXT NOT NULL, pin_initial INTEGER NOT NULL, pin_failures INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS loss_reports("
    "  id TEXT PRIMARY KEY, card_number TEXT NOT NULL REFERENCES cards(card_number),"
    "  kind TEXT NOT NULL, state TEXT NOT NULL, channel TEXT NOT NULL, reference TEXT,"
    "  placed_at TEXT NOT NULL, expires_on TEXT, cancelled_at TEXT);"
    "CREATE TABLE IF NOT EXISTS applications("
    "  id TEXT PRIMARY KEY, ssn TEXT NOT NULL REFERENCES persons(ssn),"
    "  type TEXT NOT NULL, stage TEXT NOT NULL, stage_date TEXT NOT NULL,"
    "  card_number TEXT, replaces_card TEXT, outlet_code TEXT REFERENCES outlets(code),"
    "  created_at TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS idempotency("
    "  key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,"
    "  body TEXT NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, n INTEGER NOT NULL);";

/* Drops the tables of an older schema; a new database passes untouched. */
static bool schema_current(sqlite3 *h, char **msg)
{
    long long version = db_int(h, -1, "PRAGMA user_version", "");
    if (version == SCHEMA_VERSION)
        return true;
    char set[48];
    snprintf(set, sizeof set, "PRAGMA user_version=%d;", SCHEMA_VERSION);
    return sqlite3_exec(h, drop_all, NULL, NULL, msg) == SQLITE_OK &&
           sqlite3_exec(h, set, NULL, NULL, msg) == SQLITE_OK;
}

sqlite3 *db_open(const char *path, char *err, size_t errlen)
{
    sqlite3 *h = NULL;
    if (sqlite3_open(path, &h) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path, h ? sqlite3_errmsg(h) : "out of memory");
        sqlite3_close(h);
        return NULL;
    }
    sqlite3_busy_timeout(h, 2000);
    char *msg = NULL;
    if (sqlite3_exec(h, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, &msg) != SQLITE_OK ||
        !schema_current(h, &msg) || sqlite3_exec(h, schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "cannot prepare %s: %s", path, msg ? msg : sqlite3_errmsg(h));
        sqlite3_free(msg);
        sqlite3_close(h);
        return NULL;
    }
    return h;
}

void db_close(sqlite3 *h)
{
    sqlite3_close(h);
}

bool db_has_data(sqlite3 *h)
{
    return db_int(h, 0, "SELECT EXISTS(SELECT 1 FROM persons)", "") != 0;
}

bool db_wipe(sqlite3 *h)
{
    return sqlite3_exec(h,
                        "DELETE FROM loss_reports; DELETE FROM applications; DELETE FROM cards;"
                        "DELETE FROM persons; DELETE FROM outlets; DELETE FROM banks;"
                        "DELETE FROM idempotency; DELETE FROM counters;",
                        NULL, NULL, NULL) == SQLITE_OK;
}

bool db_begin(sqlite3 *h)
{
    return sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
}

bool db_commit(sqlite3 *h)
{
    return sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
}

void db_rollback(sqlite3 *h)
{
    if (!sqlite3_get_autocommit(h))
        sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
}

static sqlite3_stmt *prepare_va(sqlite3 *h, const char *sql, const char *types, va_list ap)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
        return NULL;
    int rc = SQLITE_OK;
    for (int i = 0; types[i] && rc == SQLITE_OK; i++) {
        if (types[i] == 't') {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i + 1);
        } else if (types[i] == 'i') {
            rc = sqlite3_bind_int(st, i + 1, va_arg(ap, int));
        } else {
            rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, long long));
        }
    }
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

sqlite3_stmt *db_prepare(sqlite3 *h, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *st = prepare_va(h, sql, types, ap);
    va_end(ap);
    return st;
}

bool db_run(sqlite3 *h, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *st = prepare_va(h, sql, types, ap);
    va_end(ap);
    bool ok = st != NULL && sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok;
}

long long db_int(sqlite3 *h, long long fallback, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *st = prepare_va(h, sql, types, ap);
    va_end(ap);
    long long v = fallback;
    if (st != NULL && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

const char *db_text(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

bool db_counter_add(sqlite3 *h, const char *name, long long delta)
{
    return db_run(h, "INSERT INTO counters(name, n) VALUES(?, ?) "
                     "ON CONFLICT(name) DO UPDATE SET n = n + excluded.n",
                  "tl", name, delta);
}

long long db_counter(sqlite3 *h, const char *name)
{
    return db_int(h, 0, "SELECT n FROM counters WHERE name = ?", "t", name);
}
