/* console — the engine's writes for agent consoles (see internal/console.h).
 * Owns the live-set batches and their timer. */
#include "console.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"
#include "mem.h"
#include "store.h"
#include "walltime.h"

#define FLUSH_EVERY_MS 1000

/* Members waiting to be added to or removed from one live set. */
typedef struct {
    char *ids[CONSOLE_BATCH];     /* owned copies */
    long long at[CONSOLE_BATCH];  /* adds: the start, ms since the epoch */
    size_t n;                     /* used entries */
} batch;

struct engine_console {
    struct store *store;                  /* where it all goes */
    long long ttl_ms[CHANNEL_COUNT];      /* an unended start counts this long */
    batch adds[CHANNEL_COUNT];            /* starts not sent yet */
    batch removes[CHANNEL_COUNT];         /* ends not sent yet */
    struct event *flush;                  /* the one-second timer */
};

static void noted(store_status st, const redisReply *reply, void *arg)
{
    (void)arg;
    if (st != STORE_OK || reply->type == REDIS_REPLY_ERROR)
        log_warn("engine.console_note_failed", "why=%s", st != STORE_OK ? store_status_name(st) : "redis_error");
}

static void send_command(engine_console *c, int argc, const char **argv)
{
    store_command(c->store, argc, argv, NULL, noted, NULL);
}

void engine_console_change(engine_console *c, const char *kind, const char *session_id)
{
    const char *argv[] = {"XADD", ENGINE_CHANGES_KEY, "MAXLEN", "~", ENGINE_CHANGES_MAX, "*",
                          "kind", kind, "id", session_id};
    send_command(c, 10, argv);
}

void engine_console_queue(engine_console *c, const char *session_id, bool joined)
{
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)walltime_ms());
    if (joined)
        send_command(c, 4, (const char *[]){"ZADD", ENGINE_QUEUE_KEY, now, session_id});
    else
        send_command(c, 3, (const char *[]){"ZREM", ENGINE_QUEUE_KEY, session_id});
}

/* Live sets ---------------------------------------------------------------------*/

static void batch_clear(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->ids[i]);
    b->n = 0;
}

/* Sends a channel's starts (then drops from its set what is older than
 * its TTL: sessions that expired unended) and then its ends. */
static void flush_channel(engine_console *c, channel_kind ch)
{
    char key[sizeof ENGINE_LIVE_PREFIX + 16];
    snprintf(key, sizeof key, ENGINE_LIVE_PREFIX "%s", channel_name(ch));
    batch *adds = &c->adds[ch], *removes = &c->removes[ch];
    if (adds->n > 0) {
        const char *argv[2 + 2 * CONSOLE_BATCH];
        char (*scores)[24] = mem_calloc(adds->n, sizeof *scores);
        int argc = 0;
        argv[argc++] = "ZADD";
        argv[argc++] = key;
        for (size_t i = 0; i < adds->n; i++) {
            snprintf(scores[i], sizeof scores[i], "%lld", adds->at[i]);
            argv[argc++] = scores[i];
            argv[argc++] = adds->ids[i];
        }
        send_command(c, argc, argv);
        free(scores);
        char oldest[32];
        snprintf(oldest, sizeof oldest, "(%lld", (long long)walltime_ms() - c->ttl_ms[ch]);
        send_command(c, 4, (const char *[]){"ZREMRANGEBYSCORE", key, "-inf", oldest});
        batch_clear(adds);
    }
    if (removes->n > 0) {
        const char *argv[2 + CONSOLE_BATCH];
        int argc = 0;
        argv[argc++] = "ZREM";
        argv[argc++] = key;
        for (size_t i = 0; i < removes->n; i++)
            argv[argc++] = removes->ids[i];
        send_command(c, argc, argv);
        batch_clear(removes);
    }
}

static void flush_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    engine_console *c = arg;
    for (int ch = 0; ch < CHANNEL_COUNT; ch++)
        flush_channel(c, (channel_kind)ch);
}

void engine_console_live(engine_console *c, channel_kind ch, const char *session_id, bool started)
{
    if ((unsigned)ch >= CHANNEL_COUNT)
        return;
    batch *b = started ? &c->adds[ch] : &c->removes[ch];
    if (b->n == CONSOLE_BATCH)
        flush_channel(c, ch);
    b->ids[b->n] = mem_strdup(session_id);
    b->at[b->n] = (long long)walltime_ms();
    b->n++;
}

/* Lifecycle --------------------------------------------------------------------*/

engine_console *engine_console_new(struct event_base *base, struct store *st, const int ttl_s[CHANNEL_COUNT])
{
    engine_console *c = mem_calloc(1, sizeof *c);
    c->store = st;
    for (int ch = 0; ch < CHANNEL_COUNT; ch++)
        c->ttl_ms[ch] = (long long)ttl_s[ch] * 1000;
    c->flush = event_new(base, -1, EV_PERSIST, flush_due, c);
    struct timeval every = {FLUSH_EVERY_MS / 1000, (FLUSH_EVERY_MS % 1000) * 1000};
    if (c->flush == NULL || event_add(c->flush, &every) != 0)
        mem_out_of_memory("engine console: event_new");
    return c;
}

void engine_console_free(engine_console *c)
{
    if (c == NULL)
        return;
    event_free(c->flush);
    for (int ch = 0; ch < CHANNEL_COUNT; ch++) {
        batch_clear(&c->adds[ch]);
        batch_clear(&c->removes[ch]);
    }
    free(c);
}
