/* handoff — items passed from a worker thread to the main loop, in the
 * order posted: a FIFO under a lock and an eventfd the loop watches. The
 * SIP thread hands its events over this way, the speech worker its
 * finished sounds. An item is embedded in the poster's own struct (no
 * allocation here per item); the loop is woken once for any number. */
#ifndef CARDLINE_HANDOFF_H
#define CARDLINE_HANDOFF_H

#include <stddef.h>

struct event_base;

typedef struct handoff handoff;

/* Embedded in the struct handed over; handoff's own. */
typedef struct handoff_item {
    struct handoff_item *next; /* FIFO order */
} handoff_item;

/* Called on the main loop when items wait: the callee takes them with
 * handoff_take until it returns NULL. */
typedef void handoff_fn(handoff *h, void *arg);

/* The struct an item is embedded in. */
#define handoff_owner(item, type, member) ((type *)(void *)((char *)(item) - offsetof(type, member)))

/* A handoff to the loop of `base`, read by `fn`. NULL when the eventfd or
 * its event cannot be had (the caller reports it and does not start). */
handoff *handoff_new(struct event_base *base, handoff_fn *fn, void *arg);

/* Appends `item` and wakes the loop. Any thread. */
void handoff_post(handoff *h, handoff_item *item);

/* The oldest item, or NULL when none waits. Any thread; the main loop's,
 * or the owner's once the worker has stopped. */
handoff_item *handoff_take(handoff *h);

/* Stops watching and frees. Items still waiting are the caller's: it takes
 * them first, once the worker can post no more. */
void handoff_free(handoff *h);

#endif
