/* ops — /healthz and /metrics (see ops.h). Owns the registry probe timer,
 * the cached registry state and the process gauges. */
#include "ops.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "monotime.h"
#include "version.h"

struct ops {
    httpd *listener;                  /* where the routes live */
    store *store;                     /* asked for its connection state */
    registry *registry;               /* probed with registry_health */
    struct event *probe_timer;        /* periodic registry probe */
    bool probe_pending;               /* a probe is on its way */
    bool registry_up;                 /* the last probe's verdict */
    bool redis_was_up;                /* last reported Redis state (logs transitions) */
    monotime started;                 /* process start, for uptime */
    metrics_series *uptime;           /* cardline_uptime_seconds */
    metrics_series *redis_up;         /* cardline_dependency_up{dependency="redis"} */
    metrics_series *registry_up_gauge;/* cardline_dependency_up{dependency="registry"} */
    struct {
        const char *name;             /* its key in /healthz */
        ops_up_fn *up;                /* asked on each request */
        const void *arg;              /* its argument */
    } watches[OPS_MAX_WATCHES];       /* parts added with ops_watch */
    size_t n_watches;                 /* entries in watches */
};

static const char dependency_help[] = "1 when the dependency is reachable, else 0";

/* The registry probe ----------------------------------------------------------*/

static void set_registry_state(ops *o, bool up, const registry_result *r)
{
    if (up != o->registry_up)
        log_info("ops.dependency", "name=registry state=%s status=%s http_status=%ld",
                 up ? "up" : "down", registry_status_name(r->status), r->http_status);
    o->registry_up = up;
    metrics_set(o->registry_up_gauge, up ? 1 : 0);
}

static void probe_done(const registry_result *r, void *arg)
{
    ops *o = arg;
    o->probe_pending = false;
    set_registry_state(o, r->status == REGISTRY_OK, r);
}

static bool redis_state(ops *o);

/* Also samples Redis, so its transitions are logged without any traffic. */
static void probe(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    ops *o = arg;
    redis_state(o);
    if (o->probe_pending)
        return;
    o->probe_pending = true;
    registry_health(o->registry, probe_done, o);
}

bool ops_registry_up(const ops *o)
{
    return o->registry_up;
}

/* /healthz ----------------------------------------------------------------------*/

static bool redis_state(ops *o)
{
    bool up = store_connected(o->store);
    if (up != o->redis_was_up)
        log_info("ops.dependency", "name=redis state=%s", up ? "up" : "down");
    o->redis_was_up = up;
    metrics_set(o->redis_up, up ? 1 : 0);
    return up;
}

bool ops_watch(ops *o, const char *name, ops_up_fn *up, const void *arg)
{
    if (o->n_watches == OPS_MAX_WATCHES)
        return false;
    o->watches[o->n_watches].name = name;
    o->watches[o->n_watches].up = up;
    o->watches[o->n_watches].arg = arg;
    o->n_watches++;
    return true;
}

/* Records one part's state in the body, and in `down` when it is down. */
static bool report_part(json_t *body, json_t *down, const char *name, bool up)
{
    json_object_set_new(body, name, json_string(up ? "up" : "down"));
    if (!up)
        json_array_append_new(down, json_string(name));
    return up;
}

static void serve_health(httpd_request *req, void *arg)
{
    ops *o = arg;
    json_t *body = json_pack("{s:s}", "status", "ok"), *down = json_array();
    bool ok = report_part(body, down, "redis", redis_state(o));
    ok &= report_part(body, down, "registry", o->registry_up);
    for (size_t i = 0; i < o->n_watches; i++)
        ok &= report_part(body, down, o->watches[i].name, o->watches[i].up(o->watches[i].arg));
    if (ok) {
        json_decref(down);
    } else {
        json_object_set_new(body, "status", json_string("unavailable"));
        json_object_set_new(body, "down", down);
    }
    httpd_reply_json(req, ok ? 200 : 503, body);
}

/* /metrics ----------------------------------------------------------------------*/

static void serve_metrics(httpd_request *req, void *arg)
{
    ops *o = arg;
    redis_state(o);
    metrics_set(o->uptime, monotime_s_since(o->started));
    struct evbuffer *out = evbuffer_new();
    metrics_render(out);
    httpd_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", out);
    evbuffer_free(out);
}

/* Lifecycle ---------------------------------------------------------------------*/

static void register_process_gauges(ops *o)
{
    o->uptime = metrics_gauge("cardline_uptime_seconds", "Seconds since the gateway started", NULL);
    metrics_set(metrics_gauge("cardline_build_info", "Version of the running gateway (always 1)",
                              "version=\"" CARDLINE_VERSION "\""),
                1);
    o->redis_up = metrics_gauge("cardline_dependency_up", dependency_help, "dependency=\"redis\"");
    o->registry_up_gauge =
        metrics_gauge("cardline_dependency_up", dependency_help, "dependency=\"registry\"");
}

ops *ops_new(struct event_base *base, httpd *listener, store *st, registry *reg,
             int health_interval_ms)
{
    ops *o = calloc(1, sizeof *o);
    if (o == NULL)
        return NULL;
    o->listener = listener;
    o->store = st;
    o->registry = reg;
    o->started = monotime_now();
    o->probe_timer = event_new(base, -1, EV_PERSIST, probe, o);
    if (o->probe_timer == NULL ||
        httpd_route(listener, "/healthz", EVHTTP_REQ_GET, serve_health, o) != 0 ||
        httpd_route(listener, "/metrics", EVHTTP_REQ_GET, serve_metrics, o) != 0) {
        ops_free(o);
        return NULL;
    }
    register_process_gauges(o);
    struct timeval every = {health_interval_ms / 1000, (health_interval_ms % 1000) * 1000};
    event_add(o->probe_timer, &every);
    probe(-1, 0, o);
    return o;
}

void ops_free(ops *o)
{
    if (o == NULL)
        return;
    if (o->probe_timer)
        event_free(o->probe_timer);
    free(o);
}
