/* mask: ID first 6 + last 4, card last 4, phone 3 + 4 (with a country code
 * kept in front), and input that is short, absent or not the expected kind
 * of number masked entirely. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "mask.h"

static void test_id_keeps_first6_last4(void **state)
{
    (void)state;
    assert_string_equal(mask_id("110101199003074514").s, "110101********4514");
    assert_string_equal(mask_id("44030419851231002X").s, "440304********002X");
}

static void test_card_keeps_last4(void **state)
{
    (void)state;
    assert_string_equal(mask_card("A10000001").s, "*****0001");
    assert_string_equal(mask_card("12345678").s, "****5678");
}

static void test_phone_keeps_3_and_4(void **state)
{
    (void)state;
    assert_string_equal(mask_phone("13800000001").s, "138****0001");
    assert_string_equal(mask_phone("+8613800000001").s, "+86138****0001");
}

static void test_short_and_null_are_all_stars(void **state)
{
    (void)state;
    assert_string_equal(mask_id("1234").s, "****");
    assert_string_equal(mask_card("001").s, "***");
    assert_string_equal(mask_phone("1234567").s, "*******");
    assert_string_equal(mask_id(NULL).s, "");
    assert_string_equal(mask_card(NULL).s, "");
    assert_string_equal(mask_phone(NULL).s, "");
    assert_string_equal(mask_id("").s, "");
}

static void test_session_ids_mask_phone_numbers(void **state)
{
    (void)state;
    /* SMS sessions are keyed by sender */
    assert_string_equal(mask_session("sms:+8613800000001").s, "sms:+86138****0001");
    assert_string_equal(mask_session("sms:13800000001").s, "sms:138****0001");
    /* other ids stay whole, for correlating log lines */
    assert_string_equal(mask_session("ussd:ATUid_5f2c9").s, "ussd:ATUid_5f2c9");
    assert_string_equal(mask_session("call-7").s, "call-7");
    assert_string_equal(mask_session(NULL).s, "");
}

static void test_other_input_is_not_echoed(void **state)
{
    (void)state;
    /* a name typed where an ID was expected */
    assert_string_equal(mask_id("Wang Wei lives here").s, "*******************");
    /* an ID where a card was expected */
    assert_null(strpbrk(mask_card("110101199003074514").s, "0123456789"));
    assert_string_equal(mask_phone("call me maybe").s, "*************");
    /* over-long input: stars, cut to the buffer */
    char big[sizeof(masked) + 64];
    memset(big, '7', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    masked m = mask_phone(big);
    assert_int_equal(strlen(m.s), sizeof m.s - 1);
    assert_null(strchr(m.s, '7'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_keeps_first6_last4),
        cmocka_unit_test(test_card_keeps_last4),
        cmocka_unit_test(test_phone_keeps_3_and_4),
        cmocka_unit_test(test_session_ids_mask_phone_numbers),
        cmocka_unit_test(test_short_and_null_are_all_stars),
        cmocka_unit_test(test_other_input_is_not_echoed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
