/* handoff: items a worker thread posts reach the main loop, all of them,
 * in the order posted, through the loop's own callback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>

#include "handoff.h"

#define ITEMS 10000

typedef struct {
    int seq;
    handoff_item item;
} note;

static struct event_base *base;
static int received, out_of_order, wakes;

static void on_items(handoff *h, void *arg)
{
    (void)arg;
    wakes++;
    for (handoff_item *it; (it = handoff_take(h)) != NULL;) {
        note *n = handoff_owner(it, note, item);
        if (n->seq != received)
            out_of_order++;
        received++;
        free(n);
    }
    if (received == ITEMS)
        event_base_loopbreak(base);
}

static void *worker(void *arg)
{
    handoff *h = arg;
    for (int i = 0; i < ITEMS; i++) {
        note *n = calloc(1, sizeof *n);
        if (!n)
            abort();
        n->seq = i;
        handoff_post(h, &n->item);
    }
    return NULL;
}

static void test_items_reach_the_loop_in_order(void **state)
{
    (void)state;
    base = event_base_new();
    received = out_of_order = wakes = 0;
    handoff *h = handoff_new(base, on_items, NULL);
    assert_non_null(h);
    assert_null(handoff_take(h));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, worker, h), 0);
    event_base_dispatch(base);                /* until the last item came */
    pthread_join(t, NULL);
    assert_int_equal(received, ITEMS);
    assert_int_equal(out_of_order, 0);
    assert_true(wakes >= 1 && wakes <= ITEMS);
    handoff_free(h);
    event_base_free(base);
}

/* Items left when the owner stops are taken by it, before the free. */
static void test_items_left_are_the_owners(void **state)
{
    (void)state;
    base = event_base_new();
    handoff *h = handoff_new(base, on_items, NULL);
    note a = {.seq = 1}, b = {.seq = 2};
    handoff_post(h, &a.item);
    handoff_post(h, &b.item);
    assert_ptr_equal(handoff_take(h), &a.item);
    assert_ptr_equal(handoff_take(h), &b.item);
    assert_null(handoff_take(h));
    handoff_free(h);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_items_reach_the_loop_in_order),
        cmocka_unit_test(test_items_left_are_the_owners),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
