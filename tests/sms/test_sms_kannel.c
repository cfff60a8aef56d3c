/* End to end through a real Kannel: fakesmsc → bearerbox → smsbox → get-url
 * → the SMS module (hosted here on a free port) → reply body → smsbox →
 * bearerbox → fakesmsc, which receives the MT. Skips when Kannel is not
 * installed (scripts/test installs it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kannel.h"
#include "sms_world.h"

#define PHONE "+8613800000001"
#define SERVICE "12333"
#define MT_WAIT_MS 20000

typedef struct {
    sms_world *w;        /* the module with its runtime */
    tk_kannel k;         /* bearerbox, smsbox, fakesmsc */
} chain;

static int setup(void **state)
{
    if (!tk_available()) {
        fprintf(stderr, "kannel binaries missing (%s): apt-get install kannel kannel-extras\n",
                TK_BEARERBOX_BIN);
        return 0;
    }
    chain *c = calloc(1, sizeof *c);
    *state = c;
    c->w = sms_world_start(CL_SOURCE_DIR "/dialplans", NULL);
    if (!c->w)
        return -1;
    char url[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/sms/kannel?key=" SMS_WORLD_KEY "&from=%%p&to=%%P&text=%%a",
             c->w->port);
    tk_options opt = {.get_url = url};
    return tk_start(&c->k, &opt) ? 0 : -1;
}

static int teardown(void **state)
{
    chain *c = *state;
    if (!c)
        return 0;
    tk_stop(&c->k);
    if (c->w)
        sms_world_stop(c->w);
    free(c);
    return 0;
}

/* MO `text`, then asserts the MT to PHONE contains `expect`. */
static void exchange(chain *c, const char *text, const char *expect)
{
    assert_true(tk_mo(&c->k, PHONE, SERVICE, text));
    tk_mt mt;
    bool got = tk_wait_mt(&c->k, PHONE, MT_WAIT_MS, &mt);
    if (!got)
        print_error("no MT after \"%s\"\n", text);
    assert_true(got);
    if (!strstr(mt.text, expect))
        print_error("after \"%s\" expected \"%s\", got \"%s\"\n", text, expect, mt.text);
    assert_non_null(strstr(mt.text, expect));
    assert_string_equal(mt.from, SERVICE);
    tk_mt_free(&mt);
}

static void test_cx_conversation_through_kannel(void **state)
{
    chain *c = *state;
    if (!c)
        skip();
    exchange(c, "CX", "请回复您的18位身份证号码。");
    exchange(c, "110101199003074514", "状态：正常");
    exchange(c, "2", "感谢使用，再见。");
    assert_int_equal(tk_pending_mt(&c->k), 0);
}

static void test_unknown_text_gets_help_through_kannel(void **state)
{
    chain *c = *state;
    if (!c)
        skip();
    exchange(c, "hello there", "CX 查询状态和补卡进度");
}

/* Fails when `needle` is in any of Kannel's own logs: the log files its
 * configuration names and what bearerbox and smsbox write to stderr (the
 * fake SMSC's output is the handset's screen: it must show the text). */
static void assert_in_no_kannel_log(const chain *c, const char *needle)
{
    static const char *const logs[] = {"bearerbox-core.log", "smsbox-core.log", "bearerbox.log", "smsbox.log"};
    int read = 0;
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
        char path[400];
        snprintf(path, sizeof path, "%s/%s", c->k.dir, logs[i]);
        char *text = th_read_file(path, NULL);
        if (!text)
            continue;
        read++;
        if (strstr(text, needle))
            fail_msg("%s holds the message text \"%s\"", path, needle);
        free(text);
    }
    assert_true(read >= 2);
}

/* A one-time code sent out through Kannel (sendsms, as sms_out_send_now
 * sends it) and a PIN sent in (by habit: SMS never asks for one) reach the
 * handset and the gateway, and appear in none of Kannel's logs. */
static void test_codes_and_pins_never_reach_kannel_logs(void **state)
{
    chain *c = *state;
    if (!c)
        skip();
    exchange(c, "CX", "请回复您的18位身份证号码。");
    exchange(c, "110101199003074514", "状态：正常");
    /* SMS never asks for it, but a citizen may send it by habit. */
    exchange(c, "246810", "回复有误");
    char *text = curl_easy_escape(NULL, "验证码731942，5分钟内有效。", 0);
    char *to = curl_easy_escape(NULL, PHONE, 0);
    char path[512];
    snprintf(path, sizeof path,
             "/cgi-bin/sendsms?username=%s&password=%s&from=%s&to=%s&text=%s&charset=UTF-8&coding=2",
             c->k.user, c->k.pass, SERVICE, to, text);
    curl_free(text);
    curl_free(to);
    long status = th_http_get(c->k.sendsms_port, path, NULL);
    assert_true(status >= 200 && status < 300);
    tk_mt mt;
    assert_true(tk_wait_mt(&c->k, PHONE, MT_WAIT_MS, &mt));
    assert_non_null(strstr(mt.text, "731942"));
    tk_mt_free(&mt);
    assert_in_no_kannel_log(c, "731942");
    assert_in_no_kannel_log(c, "246810");
    assert_in_no_kannel_log(c, "110101199003074514");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cx_conversation_through_kannel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_text_gets_help_through_kannel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codes_and_pins_never_reach_kannel_logs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
