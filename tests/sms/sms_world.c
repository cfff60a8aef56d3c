/* sms_world — see sms_world.h. */
#include "sms_world.h"

#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIM_TODAY "2026-11-22"
#define CONNECT_WAIT_MS 10000

static void check_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    sms_world *w = arg;
    if (atomic_load(&w->stop))
        event_base_loopbreak(w->core.base);
}

static void *run_loop(void *arg)
{
    sms_world *w = arg;
    struct event *tick = event_new(w->core.base, -1, EV_PERSIST, check_stop, w);
    struct timeval every = {0, 5000};
    event_add(tick, &every);
    event_base_dispatch(w->core.base);
    event_free(tick);
    return NULL;
}

/* The phones one-time codes go to: the runtime's send_now, on the loop. */
static bool phone_receives(void *ctx, const char *to, const char *text)
{
    sms_world *w = ctx;
    pthread_mutex_lock(&w->phone_lock);
    w->phone_count++;
    snprintf(w->phone_to, sizeof w->phone_to, "%s", to);
    snprintf(w->phone_text, sizeof w->phone_text, "%s", text);
    pthread_mutex_unlock(&w->phone_lock);
    return true;
}

bool sms_world_last_code(sms_world *w, const char *to, char code[7])
{
    pthread_mutex_lock(&w->phone_lock);
    bool found = false;
    for (const char *p = w->phone_text; *p && strcmp(w->phone_to, to) == 0 && !found; p++) {
        if (strspn(p, "0123456789") == 6 && (p == w->phone_text || !isdigit((unsigned char)p[-1]))) {
            memcpy(code, p, 6);
            code[6] = '\0';
            found = true;
        }
    }
    pthread_mutex_unlock(&w->phone_lock);
    return found;
}

int sms_world_sent(sms_world *w)
{
    pthread_mutex_lock(&w->phone_lock);
    int n = w->phone_count;
    pthread_mutex_unlock(&w->phone_lock);
    return n;
}

static bool start_services(sms_world *w, const char *dialplans, const sms_options *opt)
{
    static const char *const sim_args[] = {"--today", SIM_TODAY, NULL};
    if (!tr_start_servers(&w->core, "cl-sms", sim_args))
        return false;
    w->core.conf.registry.read_retries = 0;
    if (!tr_start_runtime(&w->core, dialplans, phone_receives, w, CONNECT_WAIT_MS))
        return false;
    httpd_options hopt = {.name = "sms-test", .host = "127.0.0.1", .port = 0,
                          .max_body_bytes = 8192, .max_header_bytes = 8192,
                          .max_connections = 16, .idle_timeout_ms = 10000,
                          .request_timeout_ms = 10000};
    w->http = httpd_new(w->core.base, &hopt);
    sms_options o;
    sms_options_default(&o);
    if (opt)
        o = *opt;
    if (!o.secret && !o.allow_unsigned)
        o.secret = SMS_WORLD_KEY;
    w->sms = w->http ? sms_new(runtime_engine(w->core.rt), w->http, &o) : NULL;
    if (!w->sms)
        return false;
    w->port = httpd_port(w->http);
    return pthread_create(&w->thread, NULL, run_loop, w) == 0;
}

sms_world *sms_world_start(const char *dialplans, const sms_options *opt)
{
    sms_world *w = calloc(1, sizeof *w);
    atomic_init(&w->stop, 0);
    pthread_mutex_init(&w->phone_lock, NULL);
    if (!start_services(w, dialplans, opt)) {
        sms_world_stop(w);
        return NULL;
    }
    return w;
}

void sms_world_stop(sms_world *w)
{
    if (w->port) {
        atomic_store(&w->stop, 1);
        pthread_join(w->thread, NULL);
    }
    sms_free(w->sms);
    if (w->http)
        httpd_free(w->http);
    tr_stop(&w->core);
    pthread_mutex_destroy(&w->phone_lock);
    free(w);
}
