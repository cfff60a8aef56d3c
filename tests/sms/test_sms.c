/* The SMS channel in-process: the module on a real httpd with a real
 * runtime (redis-server, registry simulator, the shipped dialplans), driven
 * over HTTP the way Kannel's get-url drives it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sms_world.h"

#define PHONE "+8613800000001"
#define ID "110101199003074514"
#define PIN "246810"
#define ASK_ID "请回复您的18位身份证号码。"
#define ASK_PIN "请回复6位社保卡服务密码。"
#define HELP "社保卡短信服务，回复：CX 查询状态和补卡进度；GS 挂失；JG 解除挂失；QY 启用新卡；BD 修改手机号或地址；XK 新旧卡号说明。人工服务请拨打12333。"

static int setup_shipped(void **state)
{
    *state = sms_world_start(CL_SOURCE_DIR "/dialplans", NULL);
    return *state ? 0 : -1;
}

static int setup_long(void **state)
{
    *state = sms_world_start(CL_SOURCE_DIR "/tests/sms/dialplans", NULL);
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    sms_world_stop(*state);
    return 0;
}

/* GET /sms/kannel as Kannel sends it; returns the status, *body the reply. */
static long mo(const sms_world *w, const char *from, const char *text, char **body)
{
    char *f = curl_easy_escape(NULL, from, 0), *t = curl_easy_escape(NULL, text, 0);
    char path[480];
    snprintf(path, sizeof path, "/sms/kannel?from=%s&to=12333&text=%s", f, t);
    curl_free(f);
    curl_free(t);
    return th_http_get(w->port, path, body);
}

/* Sends `text` and asserts a 200 whose reply contains `expect`. */
static void converse(const sms_world *w, const char *text, const char *expect)
{
    char *body = NULL;
    long status = mo(w, PHONE, text, &body);
    if (status != 200 || !strstr(body ? body : "", expect))
        print_error("sent %s, got %ld: %s\n", text, status, body ? body : "(none)");
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, expect));
    free(body);
}

static char *session_doc(const sms_world *w, const char *sender)
{
    char key[64];
    snprintf(key, sizeof key, "cl:s:sms:%s", sender);
    const char *argv[] = {"HGET", key, "doc"};
    return th_redis_cmd(&w->redis, 3, argv);
}

/* Conversations ---------------------------------------------------------------*/

static void test_cx_status_over_several_messages(void **state)
{
    sms_world *w = *state;
    converse(w, "CX", ASK_ID);
    converse(w, ID, ASK_PIN);
    converse(w, PIN, "状态：正常");
    char *doc = session_doc(w, PHONE);
    assert_non_null(doc);
    assert_non_null(strstr(doc, "\"state\":\"wait\""));
    assert_null(strstr(doc, PIN));
    free(doc);
    converse(w, "2", "感谢使用，再见。");
}

static void test_sender_forms_share_one_session(void **state)
{
    sms_world *w = *state;
    char *body = NULL;
    assert_int_equal(mo(w, "8613800000001", "cx", &body), 200);
    assert_string_equal(body, ASK_ID);
    free(body);
    assert_int_equal(mo(w, "13800000001", ID, &body), 200);
    assert_string_equal(body, ASK_PIN);
    free(body);
}

static void test_unknown_text_gets_help(void **state)
{
    sms_world *w = *state;
    char *body = NULL;
    assert_int_equal(mo(w, "+8613900000002", "hello there", &body), 200);
    assert_string_equal(body, HELP);
    free(body);
    char *doc = session_doc(w, "+8613900000002");
    assert_non_null(strstr(doc, "\"state\":\"end\""));
    free(doc);
}

static void test_text_while_waiting_is_input(void **state)
{
    sms_world *w = *state;
    converse(w, "CX", ASK_ID);
    converse(w, "hello", "身份证号码");
    char *body = NULL;
    mo(w, PHONE, "hello", &body);
    assert_null(strstr(body, HELP));
    free(body);
}

static void test_keyword_restarts_mid_conversation(void **state)
{
    sms_world *w = *state;
    converse(w, "CX", ASK_ID);
    converse(w, ID, ASK_PIN);
    char *body = NULL;
    assert_int_equal(mo(w, PHONE, "cx", &body), 200);
    assert_string_equal(body, ASK_ID);
    free(body);
    converse(w, ID, ASK_PIN);
}

static void test_after_the_end_a_text_starts_anew(void **state)
{
    sms_world *w = *state;
    converse(w, "CX", ASK_ID);
    converse(w, ID, ASK_PIN);
    converse(w, PIN, "状态：正常");
    converse(w, "2", "感谢使用");
    converse(w, "2", HELP);
}

/* Reply sizing ----------------------------------------------------------------*/

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void test_long_chinese_reply_fits_three_ucs2_parts(void **state)
{
    sms_world *w = *state;
    const char *const hdr[] = {NULL};
    th_response r = th_request(w->port, "GET", "/sms/kannel?from=%2B8613800000003&text=longzh", NULL,
                               hdr);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "X-Kannel-Coding: 2"));
    assert_false(sms_is_gsm7(r.body));
    size_t chars = utf8_chars(r.body);
    assert_true(chars <= 3 * 67);
    assert_true(chars > 2 * 67);
    size_t len = strlen(r.body);
    assert_true(len > 4);
    assert_string_equal(r.body + len - 3, "…");
    assert_int_equal(r.body[len - 4], '\n');
    assert_non_null(strstr(r.body, "第1行"));
    assert_null(strstr(r.body, "第30行"));
    th_response_free(&r);
}

static void test_long_ascii_reply_fits_three_gsm_parts(void **state)
{
    sms_world *w = *state;
    th_response r = th_request(w->port, "GET", "/sms/kannel?from=%2B8613800000003&text=LONGEN", NULL,
                               NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "X-Kannel-Coding: 0"));
    assert_true(sms_is_gsm7(r.body));
    size_t len = strlen(r.body);
    assert_true(len <= 3 * 153);
    assert_true(len > 2 * 153);
    assert_string_equal(r.body + len - 4, "\n...");
    th_response_free(&r);
}

static void test_fit_boundaries(void **state)
{
    (void)state;
    char buf[2048];
    memset(buf, 'a', 160), buf[160] = '\0';
    assert_false(sms_fit(buf, sizeof buf, 1));
    memset(buf, 'a', 161), buf[161] = '\0';
    assert_true(sms_fit(buf, sizeof buf, 1));
    assert_int_equal(strlen(buf), 160);
    memset(buf, 'a', 459), buf[459] = '\0';
    assert_false(sms_fit(buf, sizeof buf, 3));
    memset(buf, 'a', 460), buf[460] = '\0';
    assert_true(sms_fit(buf, sizeof buf, 3));
    assert_int_equal(strlen(buf), 459);
    /* Extension characters take two septets. */
    memset(buf, '{', 81), buf[81] = '\0';
    assert_true(sms_is_gsm7(buf));
    assert_true(sms_fit(buf, sizeof buf, 1));
    assert_int_equal(strlen(buf), 78 + 3);
    buf[0] = '\0';
    for (int i = 0; i < 70; i++)
        strcat(buf, "中");
    assert_false(sms_fit(buf, sizeof buf, 1));
    strcat(buf, "a");
    assert_true(sms_fit(buf, sizeof buf, 1));
    assert_int_equal(utf8_chars(buf), 70);
    assert_false(sms_is_gsm7("状态"));
    assert_true(sms_is_gsm7("Ü ö ñ à: £ and é, @ and €"));
}

static void test_sender_normalization(void **state)
{
    (void)state;
    char out[32];
    assert_true(sms_normalize_sender("+86 138-0000-0001", out, sizeof out));
    assert_string_equal(out, "+8613800000001");
    assert_true(sms_normalize_sender("008613800000001", out, sizeof out));
    assert_string_equal(out, "+8613800000001");
    assert_true(sms_normalize_sender("12333", out, sizeof out));
    assert_string_equal(out, "12333");
    assert_true(sms_normalize_sender("+4915112345678", out, sizeof out));
    assert_string_equal(out, "+4915112345678");
    assert_false(sms_normalize_sender("alice", out, sizeof out));
    assert_false(sms_normalize_sender("12", out, sizeof out));
    assert_false(sms_normalize_sender("1+2345", out, sizeof out));
    assert_false(sms_normalize_sender("123456789012345678901", out, sizeof out));
}

/* Bad input -------------------------------------------------------------------*/

static void assert_no_session(const sms_world *w)
{
    const char *argv[] = {"EXISTS", "cl:s:sms:+8613800000009"};
    char *n = th_redis_cmd(&w->redis, 2, argv);
    assert_string_equal(n, "0");
    free(n);
}

static void test_bad_input_is_refused_and_changes_nothing(void **state)
{
    sms_world *w = *state;
    assert_int_equal(th_http_get(w->port, "/sms/kannel?text=CX", NULL), 400);
    assert_int_equal(th_http_get(w->port, "/sms/kannel?from=%2B8613800000009", NULL), 400);
    assert_int_equal(th_http_get(w->port, "/sms/kannel?from=%2B8613800000009&text=C%FFX", NULL),
                     400);
    assert_int_equal(th_http_get(w->port, "/sms/kannel?from=%2B86%FF&text=CX", NULL), 400);
    assert_int_equal(th_http_get(w->port, "/sms/kannel?from=nobody&text=CX", NULL), 400);
    char form[700];
    int n = snprintf(form, sizeof form, "from=%%2B8613800000009&text=");
    memset(form + n, 'a', 481);
    form[n + 481] = '\0';
    const char *const hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    assert_int_equal(th_http(w->port, "POST", "/sms/kannel", form, hdr, NULL), 413);
    assert_int_equal(th_http(w->port, "PUT", "/sms/kannel", "from=1&text=2", hdr, NULL), 405);
    assert_no_session(w);
}

static void test_post_form_works_like_get(void **state)
{
    sms_world *w = *state;
    const char *const hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    char *body = NULL;
    assert_int_equal(th_http(w->port, "POST", "/sms/kannel", "from=%2B8613800000001&to=12333&text=CX",
                             hdr, &body),
                     200);
    assert_string_equal(body, ASK_ID);
    free(body);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cx_status_over_several_messages, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_sender_forms_share_one_session, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_text_gets_help, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_text_while_waiting_is_input, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_keyword_restarts_mid_conversation, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_after_the_end_a_text_starts_anew, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_long_chinese_reply_fits_three_ucs2_parts, setup_long, teardown),
        cmocka_unit_test_setup_teardown(test_long_ascii_reply_fits_three_gsm_parts, setup_long, teardown),
        cmocka_unit_test(test_fit_boundaries),
        cmocka_unit_test(test_sender_normalization),
        cmocka_unit_test_setup_teardown(test_bad_input_is_refused_and_changes_nothing, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_post_form_works_like_get, setup_shipped, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
