/* seed — loads a seed file (JSON, format in README.md) into an empty
 * database: banks, outlets, persons with their cards, PIN states, loss
 * reports and applications. The seed holds PINs in clear; they are hashed
 * here and the clear text goes no further. Every problem is reported with
 * where it is: the line and column for bad JSON (from jansson), the path
 * (persons[2].cards[0].status) for a bad value. Loads all or nothing. */
#ifndef SIM_SEED_H
#define SIM_SEED_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    SEED_LOADED,    /* the database now holds the seed */
    SEED_SKIPPED,   /* the database already held data; left as it was */
    SEED_FAILED     /* bad file or database error; nothing changed */
} seed_result;

typedef struct {
    const char *path;         /* the seed file */
    bool reseed;              /* wipe the database first */
    const char *initial_pin;  /* PIN of cards whose seed gives none */
    int loss_days;            /* validity of seeded temporary loss reports */
} seed_options;

seed_result seed_load(sqlite3 *h, const seed_options *opt, char *err, size_t errlen);

#endif
