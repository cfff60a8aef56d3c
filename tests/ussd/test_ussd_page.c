/* The USSD pager (ussd_paginate): the budget of a page by the coding its
 * own text needs (182 GSM-7 septets or 80 UCS-2 units in 160 octets), the
 * extension table's double cost, the "98" line counted, cuts at line,
 * sentence and word boundaries (never inside a word), a Chinese rules page,
 * a menu kept whole on the last page, and an unbreakable run cut only at
 * character boundaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "gsm.h"
#include "ussd.h"
#include "utf8.h"

#define PAGE 160

/* Every page within `limit` octets in its own coding, well-formed, all
 * but the last ending with the "98" line; returns the pages' count. */
static size_t check_pages(const ussd_pages *p, const char *lang, size_t limit)
{
    const char *more = ussd_more_line(lang);
    assert_true(p->count >= 1);
    for (size_t i = 0; i < p->count; i++) {
        const char *t = p->text[i];
        assert_true(utf8_valid(t));
        assert_true(gsm_octets(t, strlen(t)) <= limit);
        size_t len = strlen(t), mlen = strlen(more);
        bool has_more = len >= mlen && strcmp(t + len - mlen, more) == 0;
        assert_int_equal(has_more, i + 1 < p->count);
        assert_true(len > (has_more ? mlen : 0));  /* never an empty page */
    }
    return p->count;
}

static size_t pages_of(const char *text, const char *lang, ussd_pages *p)
{
    ussd_paginate(text, strlen(text), lang, PAGE, p);
    return check_pages(p, lang, PAGE);
}

static void repeat(char *out, const char *unit, int n)
{
    out[0] = '\0';
    for (int i = 0; i < n; i++)
        strcat(out, unit);
}

static void test_budget_by_coding(void **state)
{
    (void)state;
    char text[2048];
    ussd_pages p;
    repeat(text, "a", 182);                          /* GSM-7: 182 septets fill 160 octets */
    assert_int_equal(pages_of(text, "en", &p), 1);
    ussd_pages_free(&p);
    repeat(text, "a", 183);
    assert_int_equal(pages_of(text, "en", &p), 2);
    ussd_pages_free(&p);
    repeat(text, "卡", 80);                          /* UCS-2: 80 units */
    assert_int_equal(pages_of(text, "zh", &p), 1);
    ussd_pages_free(&p);
    repeat(text, "卡", 81);
    assert_int_equal(pages_of(text, "zh", &p), 2);
    ussd_pages_free(&p);
    /* One Chinese name makes an English page UCS-2: 81 units do not fit. */
    repeat(text, "a ", 38);
    strcat(text, "Bank: 中国工商银行");               /* 76 + 12 units = 88 */
    assert_int_equal(pages_of(text, "en", &p), 2);
    assert_false(gsm_is_gsm7(p.text[1], strlen(p.text[1])));
    ussd_pages_free(&p);
    /* A page outside the BMP: each such character is two UCS-2 units. */
    repeat(text, "\xF0\x9F\x93\xB1", 40);
    assert_int_equal(pages_of(text, "en", &p), 1);
    ussd_pages_free(&p);
    repeat(text, "\xF0\x9F\x93\xB1", 41);
    assert_int_equal(pages_of(text, "en", &p), 2);
    ussd_pages_free(&p);
}

static void test_extension_characters_cost_two(void **state)
{
    (void)state;
    char text[1024];
    ussd_pages p;
    repeat(text, "€", 91);                           /* 182 septets */
    assert_int_equal(pages_of(text, "en", &p), 1);
    assert_true(gsm_is_gsm7(text, strlen(text)));
    ussd_pages_free(&p);
    repeat(text, "[", 92);                           /* 184 septets */
    assert_int_equal(pages_of(text, "en", &p), 2);
    ussd_pages_free(&p);
}

static void test_more_line_counts(void **state)
{
    (void)state;
    char text[1024];
    ussd_pages p;
    /* 183 septets: the first page holds 174 and the 8 of "\n98 More". */
    repeat(text, "a", 183);
    pages_of(text, "en", &p);
    assert_int_equal(strlen(p.text[0]), 174 + strlen("\n98 More"));
    assert_int_equal(gsm_octets(p.text[0], strlen(p.text[0])), PAGE);
    assert_string_equal(p.text[1], "aaaaaaaaa");
    ussd_pages_free(&p);
    /* Chinese: 74 units and the 6 of "\n98 更多". */
    repeat(text, "卡", 100);
    pages_of(text, "zh", &p);
    assert_int_equal(gsm_ucs2_units(p.text[0], strlen(p.text[0])), 80);
    assert_int_equal(utf8_length(p.text[1]), 26);
    ussd_pages_free(&p);
}

static void test_never_inside_a_word(void **state)
{
    (void)state;
    const char *text =
        "Bring your ID card and the old card if you still have it. A new card takes about 20 working "
        "days; we send an SMS when it is ready. The counter checks your identity, takes a photo or "
        "service bank details, and prints a receipt with the reference of your application.";
    ussd_pages p;
    assert_int_equal(pages_of(text, "en", &p), 2);
    /* The cut is at a sentence end past half the page, not at "servic|e". */
    const char *first = p.text[0];
    size_t body = strlen(first) - strlen("\n98 More");
    assert_int_equal(first[body - 1], '.');
    assert_true(strncmp(text, first, body) == 0);
    assert_true(strncmp(p.text[1], text + body + 1, strlen(p.text[1])) == 0);
    ussd_pages_free(&p);
    /* No sentence end past half the page: a clause mark that is. */
    const char *clauses =
        "Bring your original ID card to a service counter for a formal loss report, a new or replacement "
        "card, unlocking your PIN, and changes to your name, ID number, photo or service bank. Someone "
        "acting for you brings their own ID card.";
    assert_int_equal(pages_of(clauses, "en", &p), 2);
    assert_true(strncmp(p.text[0] + strlen(p.text[0]) - strlen("number,\n98 More"), "number,\n98 More",
                        strlen("number,\n98 More")) == 0);
    assert_true(strncmp(p.text[1], "photo or service", strlen("photo or service")) == 0);
    ussd_pages_free(&p);
    /* No sentence end or clause mark in reach: the last space. */
    char words[1024];
    repeat(words, "photograph ", 30);
    pages_of(words, "en", &p);
    for (size_t i = 0; i < p.count; i++) {
        char *t = p.text[i];
        for (char *w = strtok(t, " \n"); w; w = strtok(NULL, " \n"))
            assert_true(strcmp(w, "photograph") == 0 || strcmp(w, "98") == 0 || strcmp(w, "More") == 0);
    }
    ussd_pages_free(&p);
}

static void test_line_breaks_first(void **state)
{
    (void)state;
    char text[2048];
    ussd_pages p;
    /* A line break past half the page wins over a later sentence end. */
    repeat(text, "a", 100);
    strcat(text, "\n");
    char tail[256];
    repeat(tail, "b. ", 40);
    strcat(text, tail);
    pages_of(text, "en", &p);
    assert_int_equal(strlen(p.text[0]), 100 + strlen("\n98 More"));
    assert_int_equal(p.text[1][0], 'b');
    ussd_pages_free(&p);
}

/* A rules page in Chinese: every page within 80 units, cut after 。 or ，,
 * nothing lost. */
static void test_chinese_rules_page(void **state)
{
    (void)state;
    const char *rules =
        "办理补卡请本人携带居民身份证原件到社保服务窗口，委托他人办理的，代办人还需携带本人身份证原件和委托书。"
        "补卡一般需要二十个工作日，制卡完成后我们会发短信通知领卡地点。领卡后请及时启用新卡并设置服务密码，"
        "原卡挂失后即作废，不能再用于就医结算。";
    ussd_pages p;
    size_t n = pages_of(rules, "zh", &p);
    assert_int_equal(n, 2);
    char joined[2048] = "";
    for (size_t i = 0; i < n; i++) {
        const char *t = p.text[i];
        size_t body = i + 1 < n ? strlen(t) - strlen(ussd_more_line("zh")) : strlen(t);
        const char *last = t + body - strlen("。");
        assert_true(strncmp(last, "。", strlen("。")) == 0 || strncmp(last, "，", strlen("，")) == 0);
        strncat(joined, t, body);
    }
    assert_string_equal(joined, rules);   /* nothing lost, nothing added */
    ussd_pages_free(&p);
}

static void test_menu_kept_whole(void **state)
{
    (void)state;
    char text[2048];
    const char *menu = "请选择：\n1 返回主菜单\n2 结束\n0 人工服务";
    snprintf(text, sizeof text, "%s\n%s",
             "您的社保卡状态：正常。发卡银行：中国工商银行，客服电话95588。社保卡可用于就医结算，请妥善保管，"
             "不要把卡借给他人使用。", menu);   /* 86 units: two pages */
    size_t block = strlen(text) - strlen(menu);
    ussd_pages p;
    ussd_paginate(text, block, "zh", PAGE, &p);
    size_t n = check_pages(&p, "zh", PAGE);
    assert_true(n >= 2);
    const char *last = p.text[n - 1];
    assert_true(strlen(last) >= strlen(menu));
    assert_string_equal(last + strlen(last) - strlen(menu), menu);
    for (size_t i = 0; i + 1 < n; i++)
        assert_null(strstr(p.text[i], "1 返回"));
    ussd_pages_free(&p);
    assert_int_equal(n, 2);
    /* Without the block the last line break that fits would split the menu. */
    ussd_paginate(text, strlen(text), "zh", PAGE, &p);
    n = check_pages(&p, "zh", PAGE);
    assert_non_null(strstr(p.text[0], "请选择"));
    assert_null(strstr(p.text[n - 1], "请选择"));
    ussd_pages_free(&p);
}

static void test_unbreakable_run(void **state)
{
    (void)state;
    char text[2048];
    ussd_pages p;
    repeat(text, "卡", 160);                          /* Chinese with no punctuation at all */
    size_t n = pages_of(text, "zh", &p);
    assert_int_equal(n, 3);
    assert_int_equal(utf8_length(p.text[0]), 74 + 6);  /* and "\n98 更多" */
    ussd_pages_free(&p);
    repeat(text, "\xF0\x9F\x93\xB1", 100);             /* four-byte characters, never split */
    n = pages_of(text, "en", &p);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(p.text[i]) - (i + 1 < n ? strlen(ussd_more_line("en")) : 0);
    assert_int_equal(total, strlen(text));
    ussd_pages_free(&p);
}

static void test_narrower_pages(void **state)
{
    (void)state;
    char text[1024];
    ussd_pages p;
    repeat(text, "word ", 40);
    ussd_paginate(text, strlen(text), "en", USSD_MIN_PAGE_OCTETS, &p);
    assert_true(check_pages(&p, "en", USSD_MIN_PAGE_OCTETS) >= 3);
    ussd_pages_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_by_coding),
        cmocka_unit_test(test_extension_characters_cost_two),
        cmocka_unit_test(test_more_line_counts),
        cmocka_unit_test(test_never_inside_a_word),
        cmocka_unit_test(test_line_breaks_first),
        cmocka_unit_test(test_chinese_rules_page),
        cmocka_unit_test(test_menu_kept_whole),
        cmocka_unit_test(test_unbreakable_run),
        cmocka_unit_test(test_narrower_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
