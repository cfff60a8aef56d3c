/* walltime: the wall clock in milliseconds, the one CLOCK_REALTIME reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <time.h>

#include "walltime.h"

/* The same clock as CLOCK_REALTIME read directly, cut to milliseconds:
 * what another gateway or a person compares a date with. */
static void test_is_clock_realtime_in_ms(void **state)
{
    (void)state;
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    int64_t ms = walltime_ms();
    clock_gettime(CLOCK_REALTIME, &b);
    assert_true(ms >= (int64_t)a.tv_sec * 1000 + a.tv_nsec / 1000000);
    assert_true(ms <= (int64_t)b.tv_sec * 1000 + b.tv_nsec / 1000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_clock_realtime_in_ms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
