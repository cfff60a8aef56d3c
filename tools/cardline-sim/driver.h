/* driver — one session of cardline-sim run through the daemon's own code:
 * the runtime (store, registry client, handlers, engine) on a private event
 * loop, one hop at a time, each engine output rendered as lines the way the
 * channel would show it:
 *
 *   text channels (USSD, SMS)  prompt texts, then [reply: 1 2 0] or
 *                              [enter 18 chars, secret]
 *   voice                      prompt texts, then [press 1 2 0] or
 *                              [press 6 keys, # to finish, secret]
 *   any                        [transfer to QUEUE: reason] (the session
 *                              then waits for an agent: DRV_AGENT), [end],
 *                              [engine: STATUS] when a hop is refused
 *
 * The driver never prints or keeps an input: a secret one only passes into
 * the engine's hop. Every wait (Redis connection, each hop) is bounded. */
#ifndef CARDLINE_SIM_DRIVER_H
#define CARDLINE_SIM_DRIVER_H

#include <stdbool.h>
#include <stddef.h>

#include "channel.h"
#include "settings.h"

typedef struct driver driver;

/* Who starts the session and how. Strings are copied. */
typedef struct {
    channel_kind channel;    /* voice, ussd or sms */
    const char *caller;      /* phone number or SIP user */
    const char *entry;       /* number dialled, USSD code or first SMS text */
    const char *lang;        /* preferred language, or NULL for the default */
    const char *session_id;  /* the channel's session id, or NULL to make one up */
} drv_session;

/* What the channel shows after one hop. */
typedef struct {
    char **lines;            /* rendered lines, each malloc'd */
    size_t count;            /* number of lines */
    bool waiting;            /* the session waits for input */
    bool secret;             /* the awaited input is secret */
} drv_reply;

/* Input lines with a meaning of their own; any other line is input. */
#define DRV_TIMEOUT ":timeout"   /* the waiting node timed out */
#define DRV_NO_INPUT ":noinput"  /* input ended empty (just the terminator) */
#define DRV_HANGUP ":hangup"     /* the caller left */
#define DRV_CODE ":code"         /* types the digits of the last one-time code
                                  * the simulated phone received ("[sms to …]") */
#define DRV_AGENT ":agent "  /* ":agent FLOW.NODE": an agent sends the transferred
                             * session to that node (as the Agent API does) */
#define DRV_EXPIRE_CODE ":expire-code"       /* the code's life runs out (its Redis key goes) */
#define DRV_EXPIRE_SESSION ":expire-session" /* the session's TTL runs out (its document goes) */

/* Lifecycle -----------------------------------------------------------------*/

/* Loads the dialplans of `c` (errors printed to stderr as FILE:LINE:
 * message), starts the runtime and waits up to `connect_timeout_ms` for
 * Redis. NULL after printing why it cannot run. */
driver *drv_new(const conf *c, int connect_timeout_ms);
void drv_free(driver *d);

/* A session -----------------------------------------------------------------*/

/* Starts the session. Returns false when the driver failed (hop deadline);
 * an engine refusal is a reply line, not a failure. */
bool drv_start(driver *d, const drv_session *s, drv_reply *out);

/* Sends one input line (or DRV_TIMEOUT, DRV_NO_INPUT, DRV_HANGUP) to the
 * session; DRV_EXPIRE_* make time pass instead (the reply says what
 * expired and the session waits as before). Same return as drv_start. */
bool drv_send(driver *d, const char *line, drv_reply *out);

void drv_reply_free(drv_reply *r);

#endif
