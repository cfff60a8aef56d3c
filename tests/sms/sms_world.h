/* sms_world — the SMS module hosted for a test: real redis-server, real
 * registry simulator, a runtime on a dialplan directory, an httpd on a free
 * port with the module routed, all run by a loop thread of their own so the
 * test thread can be the client (directly, or through Kannel). */
#ifndef CARDLINE_TEST_SMS_WORLD_H
#define CARDLINE_TEST_SMS_WORLD_H

#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"
#include "httpd.h"
#include "rtworld.h"
#include "sms.h"

typedef struct {
    tr_world core;              /* real Redis and simulator, the runtime; its loop run by `thread` */
    httpd *http;                /* the listener hosting /sms/kannel */
    sms *sms;                   /* the module under test */
    int port;                   /* the listener's port */
    pthread_t thread;           /* runs the loop until `stop` */
    atomic_int stop;            /* asks the loop thread to return */
    pthread_mutex_t phone_lock; /* guards the phone's fields (written by the loop) */
    int phone_count;            /* SMS sent at once (one-time codes) */
    char phone_to[32];          /* the last one's number */
    char phone_text[512];       /* and its text */
} sms_world;

/* The `key` the module expects, as Kannel's get-url sends it. */
#define SMS_WORLD_KEY "sms-world-test-key"

/* Starts everything with `dialplans` (a directory) and `opt`; NULL opt =
 * defaults. Without a secret (and allow_unsigned off) the module expects
 * SMS_WORLD_KEY. Returns NULL (everything stopped) on failure. */
sms_world *sms_world_start(const char *dialplans, const sms_options *opt);
void sms_world_stop(sms_world *w);

/* The six-digit code in the last SMS sent at once to `to` (a one-time
 * code), into `code` (7 bytes); false when none went there. */
bool sms_world_last_code(sms_world *w, const char *to, char code[7]);

/* How many SMS were sent at once so far. */
int sms_world_sent(sms_world *w);

#endif
