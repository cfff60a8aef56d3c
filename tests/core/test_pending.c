/* pending: every started op completes exactly once, on a later loop turn
 * when the answer is known at once, at its deadline, or when the set is
 * completed whole; its completion may free it and start others. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>

#include "mem.h"
#include "pending.h"

#define MAX_SEEN 16

/* A module's request: the op is embedded, the completion frees it. */
typedef struct {
    int id;
    pending_op op;
} request;

static struct event_base *base;
static pending_set set;
static int seen_id[MAX_SEEN], seen_status[MAX_SEEN], nseen;
static int start_more_from; /* the completion of this id starts one more */
static bool keep;           /* completions leave the request allocated */

static void done(pending_op *op, int status)
{
    request *r = pending_owner(op, request, op);
    assert_false(pending_is_pending(op));
    assert_true(nseen < MAX_SEEN);
    seen_id[nseen] = r->id;
    seen_status[nseen] = status;
    nseen++;
    if (r->id == start_more_from) {
        request *more = mem_calloc(1, sizeof *more);
        more->id = 100 + r->id;
        pending_start(&set, &more->op, done);
    }
    if (!keep)
        free(r);
}

static request *start(int id)
{
    request *r = mem_calloc(1, sizeof *r);
    r->id = id;
    pending_start(&set, &r->op, done);
    return r;
}

static int setup(void **state)
{
    (void)state;
    base = event_base_new();
    pending_set_init(&set, base);
    nseen = 0;
    start_more_from = -1;
    keep = false;
    return base ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    pending_complete_all(&set, -1);
    event_base_free(base);
    return 0;
}

static void test_completes_exactly_once(void **state)
{
    (void)state;
    request *r = start(1);
    pending_op *op = &r->op;
    assert_int_equal(set.count, 1);
    assert_true(pending_complete(op, 5));
    /* `r` is freed: its op is not touched again. A second answer for the
     * same request would come through the module, which forgot it. */
    assert_int_equal(nseen, 1);
    assert_int_equal(seen_status[0], 5);
    assert_int_equal(set.count, 0);
}

static void test_second_completion_does_nothing(void **state)
{
    (void)state;
    keep = true;                              /* the request outlives its op */
    request *r = start(1);
    pending_deadline(&r->op, 5, 42);
    assert_true(pending_complete(&r->op, 3));
    assert_false(pending_complete(&r->op, 4));
    pending_complete_soon(&r->op, 5);         /* late answers are dropped */
    pending_deadline(&r->op, 1, 6);
    assert_int_equal(event_base_dispatch(base), 1); /* nothing was armed */
    assert_int_equal(nseen, 1);
    assert_int_equal(seen_status[0], 3);
    assert_int_equal(set.count, 0);
    free(r);
}

static void test_answer_known_at_once_comes_on_a_later_turn(void **state)
{
    (void)state;
    request *r = start(2);
    pending_complete_soon(&r->op, 9);
    pending_complete_soon(&r->op, 10);        /* the last word counts */
    assert_int_equal(nseen, 0);
    assert_true(pending_is_pending(&r->op));
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(nseen, 1);
    assert_int_equal(seen_status[0], 10);
}

/* Answers known at once arrive in the order they were known. */
static void test_soon_completions_keep_their_order(void **state)
{
    (void)state;
    request *r[5];
    for (int i = 0; i < 5; i++)
        r[i] = start(i);
    int order[] = {3, 0, 4, 1, 2};
    for (int i = 0; i < 5; i++)
        pending_complete_soon(&r[order[i]]->op, i);
    event_base_dispatch(base);
    assert_int_equal(nseen, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(seen_id[i], order[i]);
        assert_int_equal(seen_status[i], i);
    }
}

static void test_deadline_completes_once(void **state)
{
    (void)state;
    request *r = start(3);
    pending_deadline(&r->op, 5, 42);
    event_base_dispatch(base);                /* returns when the deadline ran */
    assert_int_equal(nseen, 1);
    assert_int_equal(seen_id[0], 3);
    assert_int_equal(seen_status[0], 42);
}

/* A common timeout works as a deadline too (the store gives every op one). */
static void test_common_timeout_deadline(void **state)
{
    (void)state;
    struct timeval ms5 = {0, 5000};
    const struct timeval *common = event_base_init_common_timeout(base, &ms5);
    request *a = start(5), *b = start(6);
    pending_deadline_tv(&a->op, common, 42);
    pending_deadline_tv(&b->op, common, 43);
    event_base_dispatch(base);
    assert_int_equal(nseen, 2);
    assert_int_equal(seen_id[0], 5);
    assert_int_equal(seen_status[0], 42);
    assert_int_equal(seen_status[1], 43);
}

/* A requeued op counts as the newest: complete-all reaches it last. */
static void test_requeue_moves_to_the_newest_end(void **state)
{
    (void)state;
    request *a = start(1);
    start(2);
    pending_requeue(&a->op);
    pending_complete_all(&set, 0);
    assert_int_equal(nseen, 2);
    assert_int_equal(seen_id[0], 2);
    assert_int_equal(seen_id[1], 1);
}

static void test_answer_before_deadline_cancels_it(void **state)
{
    (void)state;
    request *r = start(4);
    pending_deadline(&r->op, 60000, 42);
    assert_true(pending_complete(&r->op, 1));
    /* With the deadline gone nothing is left for the loop: it returns at
     * once instead of waiting a minute to run a second completion. */
    assert_int_equal(event_base_dispatch(base), 1);
    assert_int_equal(nseen, 1);
    assert_int_equal(seen_status[0], 1);
}

static void test_complete_all_on_free(void **state)
{
    (void)state;
    start(1);
    request *b = start(2);
    request *c = start(3);
    pending_deadline(&b->op, 60000, 42);      /* timers are freed with them */
    pending_complete_soon(&c->op, 7);
    start_more_from = 2;                      /* its completion starts 102 */
    pending_complete_all(&set, -1);
    assert_int_equal(nseen, 4);
    int want[] = {1, 2, 3, 102};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(seen_id[i], want[i]);
        assert_int_equal(seen_status[i], -1);
    }
    assert_int_equal(set.count, 0);
    assert_int_equal(event_base_dispatch(base), 1); /* no timer left behind */
    assert_int_equal(nseen, 4);
}

/* A detached op outlives its set's complete-all and its timers, and its
 * answer still completes it, once. */
static void test_detached_op_completes_on_its_answer(void **state)
{
    (void)state;
    request *a = start(1), *b = start(2);
    pending_deadline(&a->op, 1, 42);
    pending_complete_soon(&b->op, 43);
    pending_detach(&a->op);
    pending_detach(&a->op);                   /* a second detach changes nothing */
    assert_int_equal(set.count, 1);
    assert_true(pending_is_pending(&a->op));
    pending_complete_all(&set, -1);           /* the owner's free: b only */
    assert_int_equal(nseen, 1);
    assert_int_equal(seen_id[0], 2);
    assert_int_equal(event_base_dispatch(base), 1); /* a's deadline went with it */
    assert_int_equal(nseen, 1);
    assert_true(pending_complete(&a->op, 7)); /* its answer came */
    assert_int_equal(nseen, 2);
    assert_int_equal(seen_id[1], 1);
    assert_int_equal(seen_status[1], 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_completes_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_completion_does_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_known_at_once_comes_on_a_later_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soon_completions_keep_their_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_completes_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_before_deadline_cancels_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complete_all_on_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_common_timeout_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requeue_moves_to_the_newest_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detached_op_completes_on_its_answer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
