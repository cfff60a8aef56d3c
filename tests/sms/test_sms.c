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

#include "gsm.h"
#include "sms_world.h"

#define PHONE "+8613800000001"
#define ID "110101199003074514"
#define PIN "246810"
#define ASK_ID "请回复您的18位身份证号码。"
#define ASK_PIN "请回复6位社保卡服务密码。忘记密码请回复0。"
#define STATUS_OK "状态：正常"
#define ASK_CODE "为确认是您本人办理，验证码已发送到本手机，5分钟内有效。请回复短信中的6位验证码。"
#define HELP "社保卡短信服务，请用登记的手机发送：CX 查询状态和补卡进度；GS 挂失；JG 解除挂失；QY 启用（激活）新卡；BD 修改手机号或地址；XK 新旧卡号说明；RG 转人工客服（短信回复）。短信办理不需要服务密码，请勿在短信中发送密码。也可拨打12333。For English, send HELP."
#define EN_ASK_ID "Please reply with your 18-character ID number."
#define TO_AGENT "您的消息已转给人工客服，请稍候，客服将通过短信回复您。"
#define HELD_ACK "您的消息已转给人工客服，客服将通过短信回复您。"
#define HELD_KEY "cl:held:sms:" PHONE
#define HELD_KEEP 50

static int setup_shipped(void **state)
{
    *state = sms_world_start(CL_SOURCE_DIR "/dialplans", NULL);
    return *state ? 0 : -1;
}

#define STARTS_PER_NUMBER 3

/* The shipped dialplans, Kannel allowed from 127.0.0.1 only, and a small
 * allowance of conversations per sender. */
static int setup_guarded(void **state)
{
    sms_options o;
    sms_options_default(&o);
    o.allow_from = "127.0.0.1";
    o.starts_per_number = STARTS_PER_NUMBER;
    *state = sms_world_start(CL_SOURCE_DIR "/dialplans", &o);
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
    snprintf(path, sizeof path, "/sms/kannel?key=" SMS_WORLD_KEY "&from=%s&to=12333&text=%s", f, t);
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
    return th_redis_cmd(&w->core.redis, 3, argv);
}

/* Conversations ---------------------------------------------------------------*/

static void test_cx_status_over_several_messages(void **state)
{
    sms_world *w = *state;
    converse(w, "CX", ASK_ID);
    converse(w, ID, STATUS_OK);
    char *doc = session_doc(w, PHONE);
    assert_non_null(doc);
    assert_non_null(strstr(doc, "\"state\":\"wait\""));
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
    assert_non_null(strstr(body, STATUS_OK));
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
    converse(w, "GS", ASK_ID);
    converse(w, ID, ASK_CODE);
    char *body = NULL;
    assert_int_equal(mo(w, PHONE, "cx", &body), 200);
    assert_string_equal(body, ASK_ID);
    free(body);
    converse(w, ID, STATUS_OK);
}

static void test_after_the_end_a_text_starts_anew(void **state)
{
    sms_world *w = *state;
    converse(w, "CX", ASK_ID);
    converse(w, ID, STATUS_OK);
    converse(w, "2", "感谢使用");
    converse(w, "2", HELP);
}

/* Held for an agent -----------------------------------------------------------*/

/* The held list, one message per line as stored. */
static char *held_messages(const sms_world *w)
{
    const char *argv[] = {"EVAL", "return table.concat(redis.call('LRANGE', KEYS[1], 0, -1), '\\n')", "1",
                          HELD_KEY};
    return th_redis_cmd(&w->core.redis, 4, argv);
}

static long redis_number(const sms_world *w, const char *cmd, const char *key)
{
    const char *argv[] = {cmd, key};
    char *n = th_redis_cmd(&w->core.redis, 2, argv);
    assert_non_null(n);
    long v = strtol(n, NULL, 10);
    free(n);
    return v;
}

/* Sends `text` and asserts the reply is exactly `expect`. */
static void converse_exactly(const sms_world *w, const char *text, const char *expect)
{
    char *body = NULL;
    long status = mo(w, PHONE, text, &body);
    if (status != 200 || strcmp(body ? body : "", expect) != 0)
        print_error("sent %s, got %ld: %s\n", text, status, body ? body : "(none)");
    assert_int_equal(status, 200);
    assert_string_equal(body, expect);
    free(body);
}

static void assert_held(json_t *msg, const char *text, long long *last_at)
{
    assert_true(json_is_object(msg));
    assert_int_equal(json_object_size(msg), 2);
    assert_string_equal(json_string_value(json_object_get(msg, "text")), text);
    long long at = json_integer_value(json_object_get(msg, "at_ms"));
    assert_true(at >= *last_at && at > 1700000000000LL);
    *last_at = at;
}

/* RG hands the conversation to an agent; what follows, keywords too, is
 * held in order for the agent and acknowledged, and changes nothing in the
 * session. Once the session is gone (the agent released it), the next
 * text starts anew. */
static void test_talk_to_a_person_holds_messages(void **state)
{
    sms_world *w = *state;
    converse_exactly(w, "rg", TO_AGENT);
    char *doc = session_doc(w, PHONE);
    assert_non_null(strstr(doc, "\"state\":\"transfer\""));
    free(doc);
    const char *argv_rev[] = {"HGET", "cl:s:sms:" PHONE, "rev"};
    char *rev = th_redis_cmd(&w->core.redis, 3, argv_rev);

    converse_exactly(w, "我的卡丢了，想挂失", HELD_ACK);
    converse_exactly(w, "还在吗？", HELD_ACK);
    converse_exactly(w, "CX", HELD_ACK);      /* a keyword is held too */
    converse_exactly(w, "RG", HELD_ACK);

    char *held = held_messages(w);
    assert_non_null(held);
    const char *want[] = {"我的卡丢了，想挂失", "还在吗？", "CX", "RG"};
    long long at = 0;
    char *save = NULL;
    size_t n = 0;
    for (char *line = strtok_r(held, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
        assert_true(n < 4);
        json_t *msg = json_loads(line, 0, NULL);
        assert_held(msg, want[n], &at);
        json_decref(msg);
    }
    assert_int_equal(n, 4);
    free(held);
    long ttl = redis_number(w, "TTL", HELD_KEY);
    assert_true(ttl > 890 && ttl <= 900);      /* the SMS session TTL */
    char *rev2 = th_redis_cmd(&w->core.redis, 3, argv_rev);
    assert_string_equal(rev, rev2);
    free(rev);
    free(rev2);

    /* Released: the session is gone, a text starts a new conversation. */
    const char *del[] = {"DEL", "cl:s:sms:" PHONE};
    free(th_redis_cmd(&w->core.redis, 2, del));
    converse_exactly(w, "GS", ASK_ID);
    converse_exactly(w, ID, ASK_CODE);
    assert_int_equal(redis_number(w, "LLEN", HELD_KEY), 4);   /* the API deletes it on release */
}

/* The held list keeps the newest 50; the acknowledgement is in the
 * conversation's language. */
static void test_held_list_keeps_the_newest(void **state)
{
    sms_world *w = *state;
    converse_exactly(w, "人工", TO_AGENT);
    for (int i = 0; i < HELD_KEEP; i++) {
        char item[64];
        snprintf(item, sizeof item, "{\"at_ms\":1,\"text\":\"old-%d\"}", i);
        const char *argv[] = {"RPUSH", HELD_KEY, item};
        free(th_redis_cmd(&w->core.redis, 3, argv));
    }
    converse_exactly(w, "newest", HELD_ACK);
    assert_int_equal(redis_number(w, "LLEN", HELD_KEY), HELD_KEEP);
    char *held = held_messages(w);
    const char *oldest = "{\"at_ms\":1,\"text\":\"old-1\"}\n";
    assert_true(strncmp(held, oldest, strlen(oldest)) == 0);
    char *last = strrchr(held, '\n');
    json_t *msg = json_loads(last + 1, 0, NULL);
    long long at = 0;
    assert_held(msg, "newest", &at);
    json_decref(msg);
    free(held);

    /* The acknowledgement speaks the conversation's language. */
    const char *to_en = "local d = redis.call('HGET', KEYS[1], 'doc') "
                        "redis.call('HSET', KEYS[1], 'doc', (string.gsub(d, '\"lang\":\"zh\"', '\"lang\":\"en\"')))";
    const char *argv[] = {"EVAL", to_en, "1", "cl:s:sms:" PHONE};
    free(th_redis_cmd(&w->core.redis, 4, argv));
    converse_exactly(w, "hello?", "Your message is with an agent, who will reply by SMS.");
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
    th_response r = th_request(w->port, "GET", "/sms/kannel?key=" SMS_WORLD_KEY "&from=%2B8613800000003&text=longzh",
                               NULL, hdr);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "X-Kannel-Coding: 2"));
    assert_false(gsm_is_gsm7(r.body, strlen(r.body)));
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
    th_response r = th_request(w->port, "GET", "/sms/kannel?key=" SMS_WORLD_KEY "&from=%2B8613800000003&text=LONGEN",
                               NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "X-Kannel-Coding: 0"));
    assert_true(gsm_is_gsm7(r.body, strlen(r.body)));
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
    assert_true(gsm_is_gsm7(buf, strlen(buf)));
    assert_true(sms_fit(buf, sizeof buf, 1));
    assert_int_equal(strlen(buf), 78 + 3);
    buf[0] = '\0';
    for (int i = 0; i < 70; i++)
        strcat(buf, "中");
    assert_false(sms_fit(buf, sizeof buf, 1));
    strcat(buf, "a");
    assert_true(sms_fit(buf, sizeof buf, 1));
    assert_int_equal(utf8_chars(buf), 70);
}

/* Bad input -------------------------------------------------------------------*/

static void assert_no_session(const sms_world *w)
{
    const char *argv[] = {"EXISTS", "cl:s:sms:+8613800000009"};
    char *n = th_redis_cmd(&w->core.redis, 2, argv);
    assert_string_equal(n, "0");
    free(n);
}

static void test_bad_input_is_refused_and_changes_nothing(void **state)
{
    sms_world *w = *state;
    assert_int_equal(th_http_get(w->port, "/sms/kannel?key=" SMS_WORLD_KEY "&text=CX", NULL), 400);
    assert_int_equal(th_http_get(w->port, "/sms/kannel?key=" SMS_WORLD_KEY "&from=%2B8613800000009", NULL), 400);
    assert_int_equal(th_http_get(w->port, "/sms/kannel?key=" SMS_WORLD_KEY "&from=%2B8613800000009&text=C%FFX", NULL),
                     400);
    assert_int_equal(th_http_get(w->port, "/sms/kannel?key=" SMS_WORLD_KEY "&from=%2B86%FF&text=CX", NULL), 400);
    assert_int_equal(th_http_get(w->port, "/sms/kannel?key=" SMS_WORLD_KEY "&from=nobody&text=CX", NULL), 400);
    char form[700];
    int n = snprintf(form, sizeof form, "key=" SMS_WORLD_KEY "&from=%%2B8613800000009&text=");
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
    assert_int_equal(th_http(w->port, "POST", "/sms/kannel",
                             "key=" SMS_WORLD_KEY "&from=%2B8613800000001&to=12333&text=CX", hdr, &body),
                     200);
    assert_string_equal(body, ASK_ID);
    free(body);
}

static size_t ignore_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* GET `path` from the loopback address `source`; the HTTP status. */
static long get_from(const sms_world *w, const char *source, const char *path)
{
    char url[600];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", w->port, path);
    CURL *c = curl_easy_init();
    long status = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_INTERFACE, source);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ignore_body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 15000L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

static long redis_dbsize(const sms_world *w)
{
    const char *argv[] = {"DBSIZE"};
    char *n = th_redis_cmd(&w->core.redis, 1, argv);
    long v = n ? strtol(n, NULL, 10) : -1;
    free(n);
    return v;
}

/* A get-url without Kannel's key, with a wrong one, or from a source not
 * allowed is refused (401/403, a clear body) and changes nothing: a forged
 * `from` cannot start a conversation as that citizen. */
static void test_requests_without_the_key_change_nothing(void **state)
{
    sms_world *w = *state;
    th_response r = th_request(w->port, "GET", "/sms/kannel?from=%2B8613800000001&to=12333&text=CX", NULL, NULL);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "key parameter is required"));
    th_response_free(&r);
    r = th_request(w->port, "GET", "/sms/kannel?key=sms-world-test-kez&from=%2B8613800000001&text=CX", NULL, NULL);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "key does not match"));
    th_response_free(&r);
    const char *const hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    assert_int_equal(th_http(w->port, "POST", "/sms/kannel", "key=&from=%2B8613800000001&text=CX", hdr, NULL), 401);
    assert_int_equal(get_from(w, "127.0.0.2", "/sms/kannel?key=" SMS_WORLD_KEY "&from=%2B8613800000001&text=CX"),
                     403);
    assert_int_equal(redis_dbsize(w), 0);
    char *body = NULL;
    assert_int_equal(mo(w, PHONE, "CX", &body), 200);
    assert_string_equal(body, ASK_ID);
    free(body);
}

/* Each keyword starts a conversation; past the sender's allowance the
 * reply is a polite "try later" and no hop runs. */
static void test_conversation_starts_limited_per_sender(void **state)
{
    sms_world *w = *state;
    for (int i = 0; i < STARTS_PER_NUMBER; i++)
        converse(w, "GS", ASK_ID);
    converse(w, ID, ASK_CODE);
    char *body = NULL;
    assert_int_equal(mo(w, PHONE, "CX", &body), 200);
    assert_non_null(strstr(body, "try later"));
    free(body);
    converse(w, "000000", "验证码不正确");   /* the conversation under way goes on */
    body = NULL;
    assert_int_equal(mo(w, "+8613800000002", "CX", &body), 200);
    assert_string_equal(body, ASK_ID);
    free(body);
}

/* Identification without a PIN ---------------------------------------------------*/

/* Sends `text` from `from` and returns the reply (caller frees); asserts a
 * 200 and that no reply ever asks for the service PIN. */
static char *reply_to(const sms_world *w, const char *from, const char *text)
{
    char *body = NULL;
    assert_int_equal(mo(w, from, text, &body), 200);
    assert_non_null(body);
    assert_null(strstr(body, ASK_PIN));
    assert_null(strstr(body, "service PIN."));
    return body;
}

static void expect_reply(const sms_world *w, const char *from, const char *text, const char *expect)
{
    char *body = reply_to(w, from, text);
    bool found = strstr(body, expect) != NULL;
    if (!found)
        print_error("sent %s, got: %s\n", text, body);
    free(body);
    assert_true(found);
}

/* GS from the registered mobile: the ID, then a one-time code sent to that
 * mobile (typed wrong once), never the PIN; the code stays out of the
 * session; the report is placed. */
static void test_loss_by_sms_confirmed_by_code(void **state)
{
    sms_world *w = *state;
    expect_reply(w, PHONE, "GS", ASK_ID);
    expect_reply(w, PHONE, ID, ASK_CODE);
    char code[7];
    assert_true(sms_world_last_code(w, PHONE, code));
    char wrong[16];
    snprintf(wrong, sizeof wrong, "%06ld", (strtol(code, NULL, 10) + 1) % 1000000);
    expect_reply(w, PHONE, wrong, "验证码不正确，您还可以再试2次。");
    expect_reply(w, PHONE, code, "卡号的后4位");
    char *doc = session_doc(w, PHONE);
    assert_null(strstr(doc, code));
    free(doc);
    expect_reply(w, PHONE, "0316", "1 确认挂失");
    expect_reply(w, PHONE, "1", "挂失已办理");
}

/* A text from another phone names the person's ID: refused at once, and
 * no code goes anywhere. */
static void test_other_sender_is_refused_without_a_code(void **state)
{
    sms_world *w = *state;
    expect_reply(w, "+8613900000099", "JG", ASK_ID);
    expect_reply(w, "+8613900000099", ID, "请使用您在社保登记的手机号码发送短信办理。");
    assert_int_equal(sms_world_sent(w), 0);
}

/* Reading needs the ID from the registered mobile, no code: the answer
 * goes back to that mobile. */
static void test_status_by_sms_needs_no_code(void **state)
{
    sms_world *w = *state;
    expect_reply(w, PHONE, "CX", ASK_ID);
    expect_reply(w, PHONE, ID, STATUS_OK);
    assert_int_equal(sms_world_sent(w), 0);
}

/* English ----------------------------------------------------------------------------*/

/* Each English keyword starts its task in English, whatever its case. */
static void test_english_keywords_speak_english(void **state)
{
    sms_world *w = *state;
    static const char *const keywords[] = {"STATUS", "lost", "Cancel", "ACTIVATE", "UPDATE", "CARD"};
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        expect_reply(w, PHONE, keywords[i], EN_ASK_ID);
    char *doc = session_doc(w, PHONE);
    assert_non_null(strstr(doc, "\"lang\":\"en\""));
    free(doc);
    expect_reply(w, PHONE, "STATUS", EN_ASK_ID);
    expect_reply(w, PHONE, ID, "Your card ending 0316: in normal use.");
    expect_reply(w, "+8613800000002", "agent", "Your message is with an agent.");
}

/* HELP answers in English, and is a keyword even mid-conversation (it
 * reaches the catch-all's flow, but in a language of its own); the Chinese
 * help names it. */
static void test_help_in_english(void **state)
{
    sms_world *w = *state;
    expect_reply(w, PHONE, "CX", ASK_ID);
    char *body = reply_to(w, PHONE, "help");
    assert_non_null(strstr(body, "STATUS card status"));
    assert_non_null(strstr(body, "LOST report a lost card"));
    assert_non_null(strstr(body, "never send your PIN"));
    free(body);
    expect_reply(w, PHONE, "hello", "For English, send HELP.");
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
        cmocka_unit_test_setup_teardown(test_talk_to_a_person_holds_messages, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_held_list_keeps_the_newest, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_loss_by_sms_confirmed_by_code, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_other_sender_is_refused_without_a_code, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_status_by_sms_needs_no_code, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_english_keywords_speak_english, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_help_in_english, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_long_chinese_reply_fits_three_ucs2_parts, setup_long, teardown),
        cmocka_unit_test_setup_teardown(test_long_ascii_reply_fits_three_gsm_parts, setup_long, teardown),
        cmocka_unit_test(test_fit_boundaries),
        cmocka_unit_test_setup_teardown(test_bad_input_is_refused_and_changes_nothing, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_post_form_works_like_get, setup_shipped, teardown),
        cmocka_unit_test_setup_teardown(test_requests_without_the_key_change_nothing, setup_guarded, teardown),
        cmocka_unit_test_setup_teardown(test_conversation_starts_limited_per_sender, setup_guarded, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
