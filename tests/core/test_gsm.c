/* The one GSM 03.38 table: which text is GSM-7, what an extension
 * character and a character outside the BMP cost, and the octets a text
 * takes in the coding it needs (the USSD string's 160). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "gsm.h"

static size_t octets(const char *s)
{
    return gsm_octets(s, strlen(s));
}

static void test_alphabet(void **state)
{
    (void)state;
    const char *latin = "Ü ö ñ à: £ and é, @ and €\n";
    assert_true(gsm_is_gsm7(latin, strlen(latin)));
    assert_true(gsm_is_gsm7("", 0));
    assert_false(gsm_is_gsm7("状态", strlen("状态")));
    assert_false(gsm_is_gsm7("Bank: 中国工商银行", strlen("Bank: 中国工商银行")));
    assert_false(gsm_is_gsm7("`", 1));                     /* a backtick has no septet */
    assert_false(gsm_is_gsm7("ok\xFF", 3));                /* malformed */
    assert_true(gsm_is_gsm7("ok 状态", 3));                /* only the first 3 bytes count */
}

static void test_costs(void **state)
{
    (void)state;
    assert_int_equal(gsm_septets("abc", 3), 3);
    assert_int_equal(gsm_septets("{€}", strlen("{€}")), 6);  /* extension characters take two */
    assert_int_equal(gsm_char_septets("\n", 1), 1);
    assert_int_equal(gsm_char_septets("卡", 3), 0);
    assert_int_equal(gsm_ucs2_units("社保卡 1", strlen("社保卡 1")), 5);
    assert_int_equal(gsm_ucs2_units("\xF0\x9F\x93\xB1", 4), 2); /* outside the BMP: a surrogate pair */
    assert_int_equal(gsm_char_ucs2(3), 1);
}

static void test_octets(void **state)
{
    (void)state;
    char s[200];
    memset(s, 'a', 182);
    s[182] = '\0';
    assert_int_equal(octets(s), GSM_USSD_OCTETS);          /* 182 septets fill a USSD string */
    s[181] = '^';
    assert_int_equal(gsm_octets(s, 182), 161);             /* 183 septets do not */
    assert_int_equal(octets("卡"), 2);
    assert_int_equal(octets("1 中文\n2 English"), 2 * 14);  /* one Chinese character makes all UCS-2 */
    assert_int_equal(octets(""), 0);
    assert_int_equal(gsm_septet_octets(8), 7);
    assert_int_equal(gsm_ucs2_octets(80), GSM_USSD_OCTETS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alphabet),
        cmocka_unit_test(test_costs),
        cmocka_unit_test(test_octets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
