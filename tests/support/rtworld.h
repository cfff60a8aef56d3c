/* rtworld — the gateway's runtime (store, registry client, outbox, handlers,
 * engine: gateway/runtime) in process on one event loop, against a real
 * redis-server and registry simulator in a scratch directory: the world of
 * the tests that host a channel (USSD, SMS) or drive the engine through the
 * whole core, as the daemon and cardline-sim start it.
 *
 * Two steps, so a test can change the settings in between: tr_start_servers
 * fills `conf` with the defaults aimed at the servers, tr_start_runtime
 * starts the runtime with it. */
#ifndef CARDLINE_TEST_RTWORLD_H
#define CARDLINE_TEST_RTWORLD_H

#include <stdbool.h>

#include "harness.h"
#include "runtime.h"

struct event_base;

typedef struct {
    char dir[256];            /* scratch directory: Redis's and the simulator's files */
    th_proc redis;            /* real redis-server */
    th_proc sim;              /* real registry simulator */
    conf conf;                /* the runtime's settings: defaults aimed at the two */
    struct event_base *base;  /* the loop the runtime runs on */
    runtime *rt;              /* the runtime, NULL until started */
} tr_world;

/* Makes the directory (`prefix`-XXXXXX), starts Redis and the simulator
 * (demo seed, `sim_args` as for th_sim_start) and fills conf. False when a
 * server does not come up (tr_stop still cleans up). */
bool tr_start_servers(tr_world *w, const char *prefix, const char *const *sim_args);

/* Loads the dialplans in `dialplans_dir` (errors on stderr), starts the
 * runtime on a new loop with conf, one-time codes going to `phone` (with
 * `ctx`) when it is set, and waits up to `wait_ms` for the store to
 * connect. False when any of it fails. */
bool tr_start_runtime(tr_world *w, const char *dialplans_dir, runtime_send_now_fn *phone, void *ctx,
                      int wait_ms);

/* Frees the runtime, the loop and conf, stops the servers and removes the
 * directory; safe on a world started in part. */
void tr_stop(tr_world *w);

#endif
