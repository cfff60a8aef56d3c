/* The gateway's UTF-8 check: well-formed text passes, every ill-formed
 * kind RFC 3629 names is refused, lengths count characters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "utf8.h"

static void test_well_formed_text(void **state)
{
    (void)state;
    assert_true(utf8_valid(""));
    assert_true(utf8_valid("CX 1"));
    assert_true(utf8_valid("社保卡"));
    assert_true(utf8_valid("\xF0\x9F\x93\xB1"));       /* U+1F4F1, four bytes */
    assert_true(utf8_valid("\xF4\x8F\xBF\xBF"));       /* U+10FFFF, the last */
    assert_int_equal(utf8_length("社保卡 CX"), 6);
    assert_int_equal(utf8_char_len("卡"), 3);
}

static void test_ill_formed_text_is_refused(void **state)
{
    (void)state;
    assert_false(utf8_valid("\xC0\xAF"));              /* overlong '/' */
    assert_false(utf8_valid("\xE0\x80\xAF"));          /* overlong, three bytes */
    assert_false(utf8_valid("\xF0\x80\x80\xAF"));      /* overlong, four bytes */
    assert_false(utf8_valid("\xED\xA0\x80"));          /* a surrogate */
    assert_false(utf8_valid("\xF4\x90\x80\x80"));      /* above U+10FFFF */
    assert_false(utf8_valid("\xF5\x80\x80\x80"));      /* no such lead byte */
    assert_false(utf8_valid("\x80"));                  /* a lone continuation */
    assert_false(utf8_valid("\xE5\x8D"));              /* cut short */
    assert_false(utf8_valid("ok\xFF"));                /* a Latin-1 byte */
    assert_int_equal(utf8_length("\xE5\x8D"), -1);
    assert_int_equal(utf8_char_len(""), 0);
}

/* A cut keeps whole characters: never more than asked, never half of one. */
static void test_cut_keeps_whole_characters(void **state)
{
    (void)state;
    assert_int_equal(utf8_cut("CX 1", 10), 4);          /* fits: all of it */
    assert_int_equal(utf8_cut("CX 1", 4), 4);
    assert_int_equal(utf8_cut("CX 1", 2), 2);
    assert_int_equal(utf8_cut("社保卡", 9), 9);
    assert_int_equal(utf8_cut("社保卡", 8), 6);         /* not 2/3 of 卡 */
    assert_int_equal(utf8_cut("社保卡", 7), 6);
    assert_int_equal(utf8_cut("社保卡", 6), 6);
    assert_int_equal(utf8_cut("社保卡", 2), 0);
    assert_int_equal(utf8_cut("a\xF0\x9F\x93\xB1", 4), 1); /* four-byte character */
    assert_int_equal(utf8_cut("", 0), 0);
    assert_int_equal(utf8_cut("abc", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_formed_text),
        cmocka_unit_test(test_ill_formed_text_is_refused),
        cmocka_unit_test(test_cut_keeps_whole_characters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
