/* db — the simulator's SQLite database: opening it, its schema, transactions
 * and small helpers to prepare-and-bind statements. Knows tables, not rules:
 * what a card or a loss report may do is records.c's business. Secrets never
 * reach this layer in clear (PINs arrive as crypt hashes). */
#ifndef SIM_DB_H
#define SIM_DB_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

/* Lifecycle -----------------------------------------------------------------*/

/* Opens (creating if needed) the database at `path` and its schema. NULL on
 * failure, with a reason in `err`. */
sqlite3 *db_open(const char *path, char *err, size_t errlen);
void db_close(sqlite3 *h);

/* True if the database holds any person. */
bool db_has_data(sqlite3 *h);
/* Deletes every row of every table (for --reseed). */
bool db_wipe(sqlite3 *h);

/* Transactions --------------------------------------------------------------*/

/* BEGIN IMMEDIATE: the write lock is taken up front, so a request never
 * fails half-way on a lock upgrade. */
bool db_begin(sqlite3 *h);
bool db_commit(sqlite3 *h);
void db_rollback(sqlite3 *h);

/* Statements ----------------------------------------------------------------*/

/* Prepares `sql` and binds the arguments described by `types`, one letter
 * per `?`: 't' text (NULL binds SQL NULL), 'i' int, 'l' long long.
 * NULL on error. The caller finalizes. */
sqlite3_stmt *db_prepare(sqlite3 *h, const char *sql, const char *types, ...);
/* Prepares, binds and steps a statement that returns no rows. */
bool db_run(sqlite3 *h, const char *sql, const char *types, ...);
/* The first column of the first row as an integer; `fallback` when there
 * is no row or on error. */
long long db_int(sqlite3 *h, long long fallback, const char *sql, const char *types, ...);

/* Column `col` of the current row as text; NULL for SQL NULL. */
const char *db_text(sqlite3_stmt *st, int col);

/* Counters (persisted, named) -----------------------------------------------*/

bool db_counter_add(sqlite3 *h, const char *name, long long delta);
long long db_counter(sqlite3 *h, const char *name);

#endif
