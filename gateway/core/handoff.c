/* handoff — a locked FIFO from a worker thread to the main loop, woken
 * through an eventfd (see handoff.h). */
#include "handoff.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

struct handoff {
    handoff_fn *fn;              /* the loop's reader */
    void *arg;                   /* and its argument */
    int wake_fd;                 /* eventfd a post writes */
    struct event *wake_ev;       /* the loop's read event on it */
    pthread_mutex_t lock;        /* guards head and tail */
    handoff_item *head, *tail;   /* waiting items, oldest first */
};

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    handoff *h = arg;
    uint64_t count;
    if (read(fd, &count, sizeof count) < 0 && errno != EAGAIN)
        log_error("handoff.wake", "errno=%d", errno);
    h->fn(h, h->arg);
}

handoff *handoff_new(struct event_base *base, handoff_fn *fn, void *arg)
{
    handoff *h = mem_calloc(1, sizeof *h);
    h->fn = fn;
    h->arg = arg;
    pthread_mutex_init(&h->lock, NULL);
    h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    h->wake_ev = h->wake_fd < 0 ? NULL : event_new(base, h->wake_fd, EV_READ | EV_PERSIST, on_wake, h);
    if (h->wake_ev == NULL || event_add(h->wake_ev, NULL) != 0) {
        handoff_free(h);
        return NULL;
    }
    return h;
}

void handoff_post(handoff *h, handoff_item *item)
{
    item->next = NULL;
    pthread_mutex_lock(&h->lock);
    if (h->tail)
        h->tail->next = item;
    else
        h->head = item;
    h->tail = item;
    pthread_mutex_unlock(&h->lock);
    uint64_t one = 1;
    if (write(h->wake_fd, &one, sizeof one) != sizeof one)
        log_error("handoff.wake", "errno=%d", errno); /* only at 2^64-1 pending: cannot happen */
}

handoff_item *handoff_take(handoff *h)
{
    pthread_mutex_lock(&h->lock);
    handoff_item *item = h->head;
    if (item) {
        h->head = item->next;
        if (h->head == NULL)
            h->tail = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    return item;
}

void handoff_free(handoff *h)
{
    if (h == NULL)
        return;
    if (h->wake_ev)
        event_free(h->wake_ev);
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
