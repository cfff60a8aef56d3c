/* modules — the gateway's Redis and registry clients in process, on one
 * event loop, against a real redis-server and registry simulator (demo
 * seed) in a scratch directory: the world of the tests that drive the
 * engine and the handlers directly. Its log lines can be captured for the
 * test to search (PINs and codes must never reach them). */
#ifndef CARDLINE_TEST_MODULES_H
#define CARDLINE_TEST_MODULES_H

#include <stdbool.h>
#include <stdio.h>

#include "harness.h"
#include "registry.h"
#include "store.h"

struct event_base;

typedef struct {
    char dir[256];            /* scratch directory: Redis's and the simulator's files */
    th_proc redis;            /* real redis-server */
    th_proc sim;              /* real registry simulator; not running without a registry */
    char url[64];             /* the simulator's base URL */
    struct event_base *base;  /* the loop every client runs on */
    store *store;             /* Redis client, 2 s per operation */
    registry *registry;       /* the simulator's client, no read retries; NULL without */
    FILE *log;                /* captured log lines; NULL when not captured */
    char *log_text;           /* what was captured so far (after fflush) */
    size_t log_len;           /* its length */
} tm_world;

/* Starts Redis (and the simulator and a registry client when
 * `with_registry`) in a directory named after `prefix`, the log captured
 * when `capture_log`, SIGPIPE ignored; returns once the store is
 * connected. Fails the test when any of it does not come up. */
void tm_start(tm_world *w, const char *prefix, bool with_registry, bool capture_log);

/* Frees the clients and the loop, gives the log back to stderr, stops
 * the servers and removes the directory. */
void tm_stop(tm_world *w);

#endif
