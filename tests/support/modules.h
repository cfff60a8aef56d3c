/* modules — the gateway's Redis and registry clients in process, on one
 * event loop, against a real redis-server and registry simulator (demo
 * seed) in a scratch directory: the world of the tests that drive the
 * engine, the handlers and the registry client directly; and the capture of
 * their log lines, which a test searches (PINs and codes must never reach
 * them). */
#ifndef CARDLINE_TEST_MODULES_H
#define CARDLINE_TEST_MODULES_H

#include <stdbool.h>
#include <stdio.h>

#include "harness.h"
#include "log.h"
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
} tm_world;

/* What tm_start brings up besides Redis and its client. */
enum {
    TM_REGISTRY = 1,          /* the simulator and a registry client */
    TM_AOF = 2,               /* Redis with its append-only file (fsync always) */
    TM_FAST_RECONNECT = 4,    /* the store reconnects after 20..200 ms, for tests that restart Redis */
};

/* Starts Redis and what `flags` ask for in a directory named after
 * `prefix`, SIGPIPE ignored; returns once the store is connected. Fails
 * the test when any of it does not come up. */
void tm_start(tm_world *w, const char *prefix, int flags);

/* Frees the clients and the loop, stops the servers and removes the
 * directory. */
void tm_stop(tm_world *w);

/* Log capture -----------------------------------------------------------------*/

typedef struct {
    FILE *stream;             /* what the log writes to while capturing */
    char *text;               /* what it wrote: current after fflush(stream) or the end; caller frees */
    size_t len;               /* its length */
} tm_capture;

/* Points the gateway's log at a new capture, lines from `level` up. */
void tm_capture_begin(tm_capture *cap, log_level level);

/* Gives the log back to stderr at LOG_INFO; cap->text stays for reading. */
void tm_capture_end(tm_capture *cap);

#endif
