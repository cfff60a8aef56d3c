/* monotime: one clock in three units that agree, never going back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <time.h>

#include "monotime.h"

static void test_units_agree_and_never_go_back(void **state)
{
    (void)state;
    monotime t0 = monotime_now();
    int64_t s = monotime_s(), ms = monotime_ms(), us = monotime_us();
    monotime t1 = monotime_now();
    assert_true(s >= t0 / 1000000000 && s <= t1 / 1000000000);
    assert_true(t1 >= t0);
    assert_true(us >= t0 / 1000 && us <= t1 / 1000);
    assert_true(ms >= t0 / 1000000 && ms <= t1 / 1000000);
    assert_true(monotime_ms_since(t0) >= 0);
}

/* The same clock as CLOCK_MONOTONIC read directly: deadlines computed
 * from either agree (libevent's timers use it too). */
static void test_is_clock_monotonic(void **state)
{
    (void)state;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    monotime t = monotime_now();
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_true(t >= (monotime)a.tv_sec * 1000000000 + a.tv_nsec);
    assert_true(t <= (monotime)b.tv_sec * 1000000000 + b.tv_nsec);
}

/* Elapsed time in ms and s is the difference, with fractions. */
static void test_elapsed(void **state)
{
    (void)state;
    monotime past = monotime_now() - 1500000000; /* 1.5 s ago */
    double s = monotime_s_since(past), ms = monotime_ms_since(past);
    assert_true(s >= 1.5 && ms >= 1500.0);
    assert_true(ms / 1000.0 - s < 1.0); /* read a moment apart */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units_agree_and_never_go_back),
        cmocka_unit_test(test_is_clock_monotonic),
        cmocka_unit_test(test_elapsed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
