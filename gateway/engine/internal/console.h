/* console — what agent consoles watch, written by the engine after its
 * saves (docs/agents.md, "Reference"): the queue of sessions waiting for an
 * agent (ENGINE_QUEUE_KEY) and the change log consoles poll
 * (ENGINE_CHANGES_KEY) at once, as they change rarely (transfers); the
 * sessions live per channel (ENGINE_LIVE_PREFIX) in batches, since every
 * session's start and end changes them: a hop appends to a list, and one
 * ZADD or ZREM per channel carries up to CONSOLE_BATCH of them, sent when
 * full and every second. Fire and forget: a failure is logged, never the
 * hop's. Main-thread only. */
#ifndef CARDLINE_ENGINE_CONSOLE_H
#define CARDLINE_ENGINE_CONSOLE_H

#include <stdbool.h>

#include "channel.h"

struct event_base;
struct store;

#define CONSOLE_BATCH 500 /* live-set members per command (the store takes 1024 arguments) */

typedef struct engine_console engine_console;

/* `ttl_s`: each channel's session TTL, how long an unended start counts. */
engine_console *engine_console_new(struct event_base *base, struct store *st, const int ttl_s[CHANNEL_COUNT]);

/* Entries not sent yet are dropped (a second of starts and ends at most). */
void engine_console_free(engine_console *c);

/* One entry of the change log: `kind` queue, session or callbacks. */
void engine_console_change(engine_console *c, const char *kind, const char *session_id);

/* The session joined (a hand-over) or left the queue. */
void engine_console_queue(engine_console *c, const char *session_id, bool joined);

/* The session started (joins its channel's live set) or ended (leaves it). */
void engine_console_live(engine_console *c, channel_kind ch, const char *session_id, bool started);

#endif
