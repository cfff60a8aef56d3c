/* The agent API's pure parts: masking of free text and events (view.c),
 * the tokens file with FILE:LINE errors and the bearer check (auth.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "view.h"

static void masks(const char *in, unsigned flags, const char *want)
{
    char out[VIEW_MAX_TEXT];
    agents_view_mask_text(in, flags, out, sizeof out);
    assert_string_equal(out, want);
}

static void test_mask_text(void **state)
{
    (void)state;
    const unsigned all = VIEW_MASK_IDENTIFIERS | VIEW_MASK_SHORT_NUMBERS;
    masks("110101199003074514", all, "110101********4514");
    masks("ID 11010119900307451X ok", all, "ID 110101********451X ok");
    masks("手机13800000001", all, "手机138****0001");
    masks("+8613800000001,", all, "+86138****0001,");
    masks("PIN 246810", all, "PIN ******");
    masks("PIN 246810", VIEW_MASK_IDENTIFIERS, "PIN 246810");
    masks("110101199003074514", VIEW_MASK_SHORT_NUMBERS, "110101199003074514");
    masks("menu 1, 2 or 123", all, "menu 1, 2 or 123");
    masks("abc246810", all, "abc246810"); /* inside a word: not a number of its own */
    masks("", all, "");
    char small[8];
    agents_view_mask_text("中文中文", 0, small, sizeof small); /* never cuts a character */
    assert_string_equal(small, "中文");
}

static void test_events(void **state)
{
    (void)state;
    json_t *e = agents_view_event("input identify.ask_id 1795319578901 110101199003074514", false);
    assert_string_equal(json_string_value(json_object_get(e, "kind")), "input");
    assert_string_equal(json_string_value(json_object_get(e, "node")), "identify.ask_id");
    assert_int_equal(json_integer_value(json_object_get(e, "at_ms")), 1795319578901LL);
    assert_string_equal(json_string_value(json_object_get(e, "input")), "110101********4514");
    json_decref(e);
    e = agents_view_event("input main.main_menu 1 246810", true);
    assert_string_equal(json_string_value(json_object_get(e, "input")), "******");
    json_decref(e);
    e = agents_view_event("start main.welcome 5", true);
    assert_null(json_object_get(e, "input"));
    json_decref(e);
    e = agents_view_event("garbage", true);
    assert_string_equal(json_string_value(json_object_get(e, "kind")), "unreadable");
    json_decref(e);
}

/* Only whitelisted variables: a PIN-like variable never shows. */
static void test_context_whitelist(void **state)
{
    (void)state;
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s}, s:{s:s}}", "id", "sms:+8613800000001",
                            "channel", "sms", "caller", "+8613800000001", "state", "wait", "flow", "main", "vars",
                            "lang", "zh", "verified_id", "110101199003074514", "pin", "246810", "new_pin_digest",
                            "abc", "code", "123456", "card", "T20000001", "last_hop", "output", "246810");
    json_t *ctx = agents_view_context(doc, NULL, NULL, true);
    char *text = json_dumps(ctx, 0);
    assert_null(strstr(text, "246810"));
    assert_null(strstr(text, "123456"));
    assert_null(strstr(text, "digest"));
    assert_non_null(strstr(text, "T20000001"));
    free(text);
    json_decref(ctx);
    ctx = agents_view_context(doc, NULL, NULL, false);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ctx, "vars"), "card")), "*****0001");
    assert_int_equal(json_array_size(json_object_get(ctx, "held")), 0);
    json_decref(ctx);
    json_decref(doc);
}

/* The tokens file -----------------------------------------------------------------*/

static char path[64];

static int make_file(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/cl-agents-units-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int remove_file(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static void write_text(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Any 64 hex digits. */
#define TOK_SHA "a3e1ba74d5f0a8d6a8f8fb8d43ef4a68e3c02b62fd7dd6e1cf7a5a0da7d1a0b0"

static void expect_error(size_t i, const agents_errors *errs, int line, const char *rest)
{
    char want[512];
    snprintf(want, sizeof want, "%s:%d: %s", path, line, rest);
    assert_true(i < errs->count);
    assert_string_equal(errs->lines[i], want);
}

static void test_tokens_file_errors(void **state)
{
    (void)state;
    write_text("agents:\n"
               "  - name: li\n"
               "    role: chief\n"
               "    token_sha256: 12\n"
               "    expires: 2027-02-30T00:00:00Z\n"
               "  - name: wang\n"
               "    role: agent\n"
               "    token_sha256: " TOK_SHA "\n"
               "    phone: 1\n"
               "  - role: agent\n");
    agents_errors errs;
    assert_int_equal(agents_check(path, &errs), -1);
    expect_error(0, &errs, 3, "role 'chief' is not observer, agent or supervisor");
    expect_error(1, &errs, 4, "token_sha256 must be 64 hex digits (the SHA-256 of the token)");
    expect_error(2, &errs, 5, "expires must be a UTC time as YYYY-MM-DDTHH:MM:SSZ");
    expect_error(3, &errs, 9, "unknown key 'phone' in an agent");
    expect_error(4, &errs, 10, "agent lacks 'name'");
    assert_int_equal(errs.count, 6); /* and 'token_sha256' */
    agents_errors_free(&errs);

    write_text("agents: [\n");
    assert_int_equal(agents_check(path, &errs), -1);
    assert_int_equal(errs.count, 1);
    assert_non_null(strstr(errs.lines[0], "YAML syntax error"));
    agents_errors_free(&errs);

    write_text("agents: []\n");
    assert_int_equal(agents_check(path, &errs), -1);
    expect_error(0, &errs, 1, "'agents' must list 1 to 1024 agents");
    agents_errors_free(&errs);

    assert_int_equal(agents_check("/nonexistent/agents.yaml", &errs), -1);
    assert_string_equal(errs.lines[0], "/nonexistent/agents.yaml: cannot open: No such file or directory");
    agents_errors_free(&errs);
}

static void test_bearer_check(void **state)
{
    (void)state;
    /* sha256("demo-agent-li"), as configs/agents.yaml */
    write_text("agents:\n"
               "  - name: li\n    role: agent\n"
               "    token_sha256: f7606fd3d17ce45aa42f8f7c5978eda7885e9767b036a2208a01f7914e3640e1\n"
               "    expires: 2030-01-01T00:00:00Z\n");
    agents_errors errs;
    auth_table *t = agents_auth_load(path, &errs);
    assert_non_null(t);
    assert_int_equal(errs.count, 0);
    const auth_agent *who;
    assert_int_equal(agents_auth_check(t, "Bearer demo-agent-li", 1700000000, &who), AUTH_OK);
    assert_string_equal(who->name, "li");
    assert_int_equal(who->role, AGENT_AGENT);
    assert_int_equal(agents_auth_check(t, "bearer demo-agent-li", 1700000000, &who), AUTH_OK);
    assert_int_equal(agents_auth_check(t, "Bearer demo-agent-li", 1893456000, &who), AUTH_EXPIRED);
    assert_string_equal(who->name, "li");
    assert_int_equal(agents_auth_check(t, NULL, 0, &who), AUTH_MISSING);
    assert_int_equal(agents_auth_check(t, "Bearer ", 0, &who), AUTH_MALFORMED);
    assert_int_equal(agents_auth_check(t, "Bearer a b", 0, &who), AUTH_MALFORMED);
    assert_int_equal(agents_auth_check(t, "Token demo-agent-li", 0, &who), AUTH_MALFORMED);
    assert_int_equal(agents_auth_check(t, "Bearer demo-agent-lj", 0, &who), AUTH_UNKNOWN);
    assert_null(who);
    agents_auth_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_text),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_context_whitelist),
        cmocka_unit_test_setup_teardown(test_tokens_file_errors, make_file, remove_file),
        cmocka_unit_test_setup_teardown(test_bearer_check, make_file, remove_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
