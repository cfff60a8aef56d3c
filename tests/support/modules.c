/* modules — the in-process clients' world for engine and handler tests
 * (see modules.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "modules.h"

#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>

#include "loop.h"

#define START_WAIT_MS 15000

void tm_start(tm_world *w, const char *prefix, int flags)
{
    signal(SIGPIPE, SIG_IGN);
    th_mkdtemp(w->dir, prefix);
    assert_true(th_redis_start(&w->redis, w->dir, flags & TM_AOF));
    if (flags & TM_REGISTRY)
        assert_true(th_sim_start(&w->sim, w->dir, NULL, NULL));
    w->base = event_base_new();
    store_options so;
    store_options_default(&so);
    so.port = w->redis.port;
    so.op_timeout_ms = 2000;
    if (flags & TM_FAST_RECONNECT) {
        so.reconnect_min_ms = 20;
        so.reconnect_max_ms = 200;
    }
    w->store = store_new(w->base, &so);
    if (flags & TM_REGISTRY) {
        registry_options ro;
        registry_options_default(&ro);
        snprintf(w->url, sizeof w->url, "http://127.0.0.1:%d", w->sim.port);
        ro.base_url = w->url;
        ro.read_retries = 0;
        w->registry = registry_new(w->base, &ro);
    }
    assert_true(tl_wait_store(w->base, w->store, START_WAIT_MS));
}

void tm_stop(tm_world *w)
{
    registry_free(w->registry);
    store_free(w->store);
    event_base_free(w->base);
    th_stop(&w->sim, 2000);
    th_stop(&w->redis, 2000);
    th_rmdir(w->dir);
}

void tm_capture_begin(tm_capture *cap, log_level level)
{
    *cap = (tm_capture){0};
    cap->stream = open_memstream(&cap->text, &cap->len);
    assert_non_null(cap->stream);
    log_set_level(level);
    log_set_stream(cap->stream);
}

void tm_capture_end(tm_capture *cap)
{
    log_set_stream(stderr);
    log_set_level(LOG_INFO);
    fclose(cap->stream);
    cap->stream = NULL;
}
