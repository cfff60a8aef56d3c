/* ops — the operations endpoints on an httpd listener: GET /healthz (is the
 * gateway able to serve: Redis connected, registry answering, and each part
 * watched with ops_watch — voice's SIP thread alive) and GET
 * /metrics (every metrics series plus process gauges, Prometheus text).
 *
 * The registry's state comes from a periodic registry_health() probe whose
 * result is cached; a /healthz request never causes a probe, so a flood of
 * health checks cannot become a flood on the registry. Redis's state is
 * store_connected() at the time of the request. ops neither owns nor frees
 * the listener, the store or the registry. Main-thread only. */
#ifndef CARDLINE_OPS_H
#define CARDLINE_OPS_H

#include <stdbool.h>

#include "httpd.h"
#include "registry.h"
#include "store.h"

struct event_base;

typedef struct ops ops;

/* Lifecycle -----------------------------------------------------------------*/

/* Routes /healthz and /metrics on `listener` and starts the registry probe
 * (one at once, then every `health_interval_ms`). Returns NULL if the
 * routes cannot be added. */
ops *ops_new(struct event_base *base, httpd *listener, store *st, registry *reg,
             int health_interval_ms);

/* Stops the probe. Free the registry first: a probe still pending is
 * completed by registry_free and reports into this object. */
void ops_free(ops *o);

/* State ---------------------------------------------------------------------*/

/* The cached result of the last registry probe (false until one succeeded). */
bool ops_registry_up(const ops *o);

/* Adds a part to /healthz: `up(arg)` is asked on each request (it must be
 * cheap and not block); false makes the answer 503 naming `name` (a static
 * string). At most OPS_MAX_WATCHES; false when full. */
#define OPS_MAX_WATCHES 4
typedef bool ops_up_fn(const void *arg);
bool ops_watch(ops *o, const char *name, ops_up_fn *up, const void *arg);

#endif
