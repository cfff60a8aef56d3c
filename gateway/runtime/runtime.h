/* runtime — the service core built from a configuration: the Redis store,
 * the registry client, the durable outbox (with the loss-report deliverer),
 * the handlers' environment, the dialplan set and the engine that runs it. The daemon and cardline-sim both start it, so a
 * session in the simulator runs exactly the code the channels will.
 *
 * runtime knows no listener, signal or channel: main adds those around it.
 * Loading dialplans prints nothing unless asked: the caller decides where
 * each "FILE:LINE: message" goes (stderr at start, the log on reload).
 * Main-thread only. */
#ifndef CARDLINE_RUNTIME_H
#define CARDLINE_RUNTIME_H

#include <stdio.h>

#include "dialplan.h"
#include "engine.h"
#include "outbox.h"
#include "registry.h"
#include "settings.h"
#include "store.h"

struct event_base;

typedef struct runtime runtime;

/* Dialplans ---------------------------------------------------------------*/

/* Loads and checks the set in `dir` against the handler table. NULL with
 * `errs` filled when it is not clean (see dialplan_load). */
dialplan *runtime_load_dialplans(const char *dir, dp_errors *errs);

/* The same at a program's start (the daemon, --check, cardline-sim, the
 * tests' worlds): each error printed to `out` as a line, and a set that
 * fails without one named ("DIR: the dialplans could not be loaded"). */
dialplan *runtime_load_dialplans_print(const char *dir, FILE *out);

/* Lifecycle ---------------------------------------------------------------*/

/* Starts store, registry client and engine on `base` with the settings of
 * `c`, running `dp` (a reference is taken). NULL when a module refuses its
 * options (logged by the module). */
runtime *runtime_new(struct event_base *base, const conf *c, dialplan *dp);

/* Ends hops and requests in flight (as unavailable), then frees. */
void runtime_free(runtime *rt);

/* Access ------------------------------------------------------------------*/

store *runtime_store(const runtime *rt);
registry *runtime_registry(const runtime *rt);
engine *runtime_engine(const runtime *rt);
/* The outbox, for more deliverers (main adds "sms" when Kannel is set up). */
outbox *runtime_outbox(const runtime *rt);
/* True when [workflows] digest_secret is unset and the code digests use a
 * random key of this process: a code sent before a restart, or checked by
 * another gateway, no longer matches. Whether that deserves a warning is
 * the program's call (the daemon's yes, cardline-sim's no: one process). */
bool runtime_digest_key_random(const runtime *rt);

/* One-time codes ------------------------------------------------------------*/

/* How codes leave: an SMS sent at once and stored nowhere (main: Kannel's
 * sendsms; cardline-sim: the simulated phone). False when it cannot go. */
typedef bool runtime_send_now_fn(void *ctx, const char *to, const char *text);

/* Sets how codes leave; until set, send_code answers `unavailable`. */
void runtime_set_send_now(runtime *rt, runtime_send_now_fn *fn, void *ctx);

/* Live reload -------------------------------------------------------------*/

/* Loads `dir` again; a clean set replaces the running one for new hops
 * (logged as dialplan.reloaded version=...). Otherwise each error is logged
 * as dialplan.reload_failed, the running set stays, and -1 is returned. */
int runtime_reload_dialplans(runtime *rt, const char *dir);

#endif
