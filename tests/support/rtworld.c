/* rtworld — see rtworld.h. */
#include "rtworld.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

bool tr_start_servers(tr_world *w, const char *prefix, const char *const *sim_args)
{
    th_mkdtemp(w->dir, prefix);
    settings_defaults(&w->conf);
    if (!th_redis_start(&w->redis, w->dir, false) || !th_sim_start(&w->sim, w->dir, NULL, sim_args))
        return false;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", w->sim.port);
    w->conf.redis.port = w->redis.port;
    free((char *)w->conf.registry.base_url);
    w->conf.registry.base_url = strdup(url);
    return true;
}

bool tr_start_runtime(tr_world *w, const char *dialplans_dir, runtime_send_now_fn *phone, void *ctx,
                      int wait_ms)
{
    dialplan *dp = runtime_load_dialplans_print(dialplans_dir, stderr);
    if (dp == NULL)
        return false;
    w->base = event_base_new();
    w->rt = runtime_new(w->base, &w->conf, dp);
    dialplan_unref(dp);
    if (w->rt == NULL)
        return false;
    if (phone)
        runtime_set_send_now(w->rt, phone, ctx);
    /* The store connects from the loop: hops before that are "unavailable".
     * A loaded machine (sanitizers, parallel tests) may take seconds. */
    return tl_wait_store(w->base, runtime_store(w->rt), wait_ms);
}

void tr_stop(tr_world *w)
{
    if (w->rt)
        runtime_free(w->rt);
    if (w->base)
        event_base_free(w->base);
    settings_free(&w->conf);
    th_stop(&w->sim, 3000);
    th_stop(&w->redis, 3000);
    if (w->dir[0])
        th_rmdir(w->dir);
    *w = (tr_world){0};
}
