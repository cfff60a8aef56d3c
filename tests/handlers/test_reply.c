/* Unit tests of handlers/reply: names in the session's language and the
 * wording of an outlet's opening hours, over registry answers written here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>

#include "reply.h"

static json_t *outlet(const char *opening_json, const char *hours)
{
    json_t *o = json_pack("{s:s}", "hours", hours);
    json_object_set_new(o, "opening_hours", json_loads(opening_json, 0, NULL));
    return o;
}

static void expect_hours(const char *opening_json, const char *lang, const char *expected)
{
    json_t *o = outlet(opening_json, "free text");
    char out[REPLY_HOURS_MAX];
    handler_reply_hours(o, lang, out, sizeof out);
    assert_string_equal(out, expected);
    json_decref(o);
}

static void test_names_by_language(void **state)
{
    (void)state;
    json_t *bank = json_pack("{s:s, s:s}", "name", "中国银行", "name_en", "Bank of China");
    assert_string_equal(handler_reply_name(bank, "name", "en"), "Bank of China");
    assert_string_equal(handler_reply_name(bank, "name", "zh"), "中国银行");
    assert_string_equal(handler_reply_name(bank, "name", NULL), "中国银行");
    json_object_set_new(bank, "name_en", json_null()); /* the registry has none */
    assert_string_equal(handler_reply_name(bank, "name", "en"), "中国银行");
    json_object_set_new(bank, "name_en", json_string(""));
    assert_string_equal(handler_reply_name(bank, "name", "en"), "中国银行");
    assert_string_equal(handler_reply_name(NULL, "name", "en"), "");
    json_decref(bank);
}

static void test_hours_worded(void **state)
{
    (void)state;
    static const char week_and_saturday[] =
        "[{\"days\": [1, 2, 3, 4, 5], \"open\": \"09:00\", \"close\": \"17:00\"},"
        " {\"days\": [6], \"open\": \"09:00\", \"close\": \"12:00\"}]";
    expect_hours(week_and_saturday, "zh", "周一至周五9:00-17:00，周六9:00-12:00");
    expect_hours(week_and_saturday, "en", "Mon-Fri 09:00-17:00; Sat 09:00-12:00");
    static const char scattered[] = "[{\"days\": [1, 3, 4, 7], \"open\": \"08:30\", \"close\": \"20:00\"}]";
    expect_hours(scattered, "zh", "周一、周三至周四、周日8:30-20:00");
    expect_hours(scattered, "en", "Mon, Wed-Thu, Sun 08:30-20:00");
}

/* Anything the contract does not allow falls back to the free text. */
static void test_hours_malformed(void **state)
{
    (void)state;
    expect_hours("[{\"days\": [5, 4], \"open\": \"09:00\", \"close\": \"17:00\"}]", "zh", "free text");
    expect_hours("[{\"days\": [8], \"open\": \"09:00\", \"close\": \"17:00\"}]", "en", "free text");
    expect_hours("[{\"days\": [], \"open\": \"09:00\", \"close\": \"17:00\"}]", "en", "free text");
    expect_hours("[{\"days\": [1], \"open\": \"9:00\", \"close\": \"17:00\"}]", "en", "free text");
    expect_hours("[{\"days\": [1], \"open\": \"09:00\", \"close\": \"24:00\"}]", "en", "free text");
    expect_hours("[]", "en", "free text");
    expect_hours("{}", "en", "free text");
    json_t *none = json_object();
    char out[16] = "x";
    handler_reply_hours(none, "en", out, sizeof out);
    assert_string_equal(out, "");
    json_decref(none);
}

/* Hours that do not fit the buffer are not cut: the free text, or nothing. */
static void test_hours_too_long(void **state)
{
    (void)state;
    json_t *o = outlet("[{\"days\": [1, 2, 3, 4, 5], \"open\": \"09:00\", \"close\": \"17:00\"}]", "short");
    char out[12];
    handler_reply_hours(o, "en", out, sizeof out);
    assert_string_equal(out, "short");
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_by_language),
        cmocka_unit_test(test_hours_worded),
        cmocka_unit_test(test_hours_malformed),
        cmocka_unit_test(test_hours_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
