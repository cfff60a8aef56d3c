/* Citizen-ID checksum, card number format and PIN strength rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "domain.h"

static void test_id_checksum_accepts_valid_ids(void **state)
{
    (void)state;
    assert_true(domain_id_valid("110101199003074514"));
    assert_true(domain_id_valid("44030419851231002X"));
    assert_true(domain_id_valid("110105194910010015"));
}

static void test_id_checksum_rejects_wrong_check_char(void **state)
{
    (void)state;
    assert_false(domain_id_valid("110101199003074515"));
    assert_false(domain_id_valid("440304198512310021"));
    assert_false(domain_id_valid("44030419851231002x")); /* not normalized */
}

static void test_id_rejects_bad_format(void **state)
{
    (void)state;
    assert_false(domain_id_valid(NULL));
    assert_false(domain_id_valid(""));
    assert_false(domain_id_valid("11010119900307451"));    /* 17 chars */
    assert_false(domain_id_valid("010101199003074514"));   /* leading zero */
    assert_false(domain_id_valid("110101179003074514"));   /* century 17 */
    assert_false(domain_id_valid("110101199013074514"));   /* month 13 */
    assert_false(domain_id_valid("11010119900307A514"));   /* letter inside */
}

static void test_id_normalize_maps_star_and_lowercase_x(void **state)
{
    (void)state;
    char out[DOMAIN_ID_LEN + 1];
    assert_true(domain_id_normalize("44030419851231002*", out));
    assert_string_equal(out, "44030419851231002X");
    assert_true(domain_id_valid(out));
    assert_true(domain_id_normalize("44030419851231002x", out));
    assert_string_equal(out, "44030419851231002X");
    assert_false(domain_id_normalize("4403041985", out));
}

static void test_card_number_format(void **state)
{
    (void)state;
    assert_true(domain_card_number_valid("A10000001"));
    assert_true(domain_card_number_valid("12345678"));
    assert_false(domain_card_number_valid("a10000001"));
    assert_false(domain_card_number_valid("A1234567"));   /* 8 but not digits */
    assert_false(domain_card_number_valid("A100000011"));
    assert_false(domain_card_number_valid(NULL));
}

static void test_pin_rules(void **state)
{
    (void)state;
    const char *id = "110101199003074514"; /* born 1990-03-07 */
    assert_int_equal(domain_pin_check("480213", "123456", id), DOMAIN_PIN_OK);
    assert_int_equal(domain_pin_check("12345", NULL, NULL), DOMAIN_PIN_MALFORMED);
    assert_int_equal(domain_pin_check("12345a", NULL, NULL), DOMAIN_PIN_MALFORMED);
    assert_int_equal(domain_pin_check("1234567", NULL, NULL), DOMAIN_PIN_MALFORMED);
    assert_int_equal(domain_pin_check("123456", "123456", id), DOMAIN_PIN_INITIAL);
    assert_int_equal(domain_pin_check("888888", "123456", id), DOMAIN_PIN_REPEATED);
    assert_int_equal(domain_pin_check("345678", "123456", id), DOMAIN_PIN_SEQUENCE);
    assert_int_equal(domain_pin_check("987654", "123456", id), DOMAIN_PIN_SEQUENCE);
    assert_int_equal(domain_pin_check("900307", "123456", id), DOMAIN_PIN_BIRTH_DATE);
    assert_int_equal(domain_pin_check("030790", "123456", id), DOMAIN_PIN_BIRTH_DATE);
    assert_int_equal(domain_pin_check("070390", "123456", id), DOMAIN_PIN_BIRTH_DATE);
    /* Without an ID the birth-date rule cannot apply. */
    assert_int_equal(domain_pin_check("900307", "123456", NULL), DOMAIN_PIN_OK);
    assert_string_equal(domain_pin_verdict_name(DOMAIN_PIN_SEQUENCE), "sequence");
}

/* One spelling whoever wrote the number; E.164 only where workflows store
 * and compare, short codes too where the SMS channel keys sessions. */
static void test_phone_normalize(void **state)
{
    (void)state;
    char out[DOMAIN_PHONE_MAX];
    const char *same[] = {"13800000001", "+86 138-0000-0001", "8613800000001", "008613800000001"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        assert_true(domain_phone_normalize(same[i], true, out));
        assert_string_equal(out, "+8613800000001");
    }
    assert_true(domain_phone_normalize("+4915112345678", true, out));
    assert_string_equal(out, "+4915112345678");
    assert_false(domain_phone_normalize("12333", true, out));       /* a short code is no E.164 */
    assert_false(domain_phone_normalize("4915112345678", true, out)); /* foreign without "+" */
    assert_true(domain_phone_normalize("12333", false, out));
    assert_string_equal(out, "12333");
    assert_true(domain_phone_normalize("4915112345678", false, out));
    assert_string_equal(out, "4915112345678");
    assert_false(domain_phone_normalize("12", false, out));
    assert_false(domain_phone_normalize("alice", false, out));
    assert_false(domain_phone_normalize("1+2345", false, out));
    assert_false(domain_phone_normalize("123456789012345678901", false, out));
    assert_false(domain_phone_normalize(NULL, false, out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_checksum_accepts_valid_ids),
        cmocka_unit_test(test_id_checksum_rejects_wrong_check_char),
        cmocka_unit_test(test_id_rejects_bad_format),
        cmocka_unit_test(test_id_normalize_maps_star_and_lowercase_x),
        cmocka_unit_test(test_card_number_format),
        cmocka_unit_test(test_pin_rules),
        cmocka_unit_test(test_phone_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
