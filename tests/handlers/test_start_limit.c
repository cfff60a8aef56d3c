/* test_start_limit — the text channels' per-number start limit has one
 * source, [workflows] (handler_config): USSD and SMS options start from its
 * defaults and are refused outside its ranges, which the channels once
 * wrote again (30 in 3600 s, a window of 1-86400 s against the table's
 * 60-86400). Pure: no servers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "handlers.h"
#include "sms.h"
#include "ussd.h"

static handler_limits table_defaults(void)
{
    handler_limits l = {0};
    conf_section_defaults(&handler_config, &l);
    return l;
}

static void test_channel_defaults_are_the_tables(void **state)
{
    (void)state;
    handler_limits l = table_defaults();
    ussd_options uo;
    sms_options so;
    ussd_options_default(&uo);
    sms_options_default(&so);
    assert_int_equal(uo.starts_per_number, l.sessions_per_number);
    assert_int_equal(uo.number_window_s, l.number_window_s);
    assert_int_equal(so.starts_per_number, l.sessions_per_number);
    assert_int_equal(so.number_window_s, l.number_window_s);
}

static void test_ranges_are_the_tables(void **state)
{
    (void)state;
    char why[96];
    handler_limits l = table_defaults();
    assert_null(handlers_start_limit_problem(l.sessions_per_number, l.number_window_s, why, sizeof why));
    assert_null(handlers_start_limit_problem(1, 60, why, sizeof why));
    assert_null(handlers_start_limit_problem(1000000, 86400, why, sizeof why));
    assert_non_null(handlers_start_limit_problem(0, 3600, why, sizeof why));
    assert_string_equal(why, "sessions_per_number must be 1-1000000");
    assert_non_null(handlers_start_limit_problem(30, 59, why, sizeof why));
    assert_string_equal(why, "number_window_s must be 60-86400");
    assert_non_null(handlers_start_limit_problem(30, 86401, why, sizeof why));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_defaults_are_the_tables),
        cmocka_unit_test(test_ranges_are_the_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
