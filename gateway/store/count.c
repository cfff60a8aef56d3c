/* count — windowed counters in Redis for limits shared by every gateway
 * (failed identifications, codes sent, callbacks booked, sessions started).
 *
 * A take is INCR-first in one script: the unit is counted before the caller
 * acts, so racing takes of one key see distinct counts and at most `max` of
 * them pass a `count <= max` check, whatever the number sent at once. The
 * key lives its window from its first unit; a counter found without a TTL
 * (restored, PERSISTed) gets one back, since a counter that never expired
 * would block its subject for good. */
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "store.h"

static const char take_script[] =
    "local n = redis.call('INCR', KEYS[1])\n"
    "if n == 1 or redis.call('TTL', KEYS[1]) < 0 then\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[1])\n"
    "end\n"
    "return n\n";

typedef struct {
    store_count_cb *cb; /* the caller's callback */
    void *arg;          /* its argument */
} count_req;

static void take_replied(store_status st, const struct redisReply *reply, void *arg)
{
    count_req q = *(count_req *)arg;
    free(arg);
    if (st != STORE_OK) {
        q.cb(st, 0, q.arg);
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER) {
        log_warn("store.count_failed", "reply_type=%d", reply->type);
        q.cb(STORE_BAD_DATA, 0, q.arg);
        return;
    }
    q.cb(STORE_OK, reply->integer, q.arg);
}

void store_count_take(store *s, const char *key, int window_s, store_count_cb *cb, void *arg)
{
    count_req *q = mem_malloc(sizeof *q);
    *q = (count_req){cb, arg};
    const char *argv[] = {"EVAL", take_script, "1", key, NULL};
    char window[16];
    snprintf(window, sizeof window, "%d", window_s);
    argv[4] = window;
    /* A bad request goes through store_command as one it refuses, so it
     * ends in STORE_BAD_DATA on the next loop turn like any other. */
    bool valid = key != NULL && key[0] != '\0' && window_s >= 1 && window_s <= STORE_MAX_TTL_S;
    store_command(s, valid ? 5 : 0, argv, NULL, take_replied, q);
}
