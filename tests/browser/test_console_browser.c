/* test_console_browser — the agent console (console/) in a real browser.
 * The real cardline daemon with the Agent API, against a real redis-server
 * and registry simulator (demo seed); each case runs console_test.py,
 * which drives Debian's headless Chromium through Selenium as an agent, a
 * supervisor or an observer. This program plays the citizens (USSD hops
 * signed as the aggregator, SMS as Kannel) and looks into Redis when the
 * script asks: one line `@REQUEST ARGS` on the script's stdout, answered
 * `ok` or `fail WHY` on its stdin.
 *
 * Cases: a wrong token is refused in words; an SMS conversation arrives in
 * the agent's queue without a reload, the agent replies and the reply
 * reaches the outbox; an observer has no action buttons and a reply forged
 * from the page with the observer's token is refused and reaches nothing;
 * a supervisor sees the funnel of a scripted USSD batch with its counts; a
 * context after PIN entry holds no PIN anywhere in the page; a USSD
 * callback arrives live and is claimed, then done; a call handed to the
 * agent is sent to PIN entry (a resume URI) and its outcome shows when
 * the caller is back; with 1,000
 * conversations waiting the page shows 50 at a time and pages through all
 * of them to the last, whose context opens. Screenshots
 * land in tests/browser-shots under the build tree. A missing browser is a
 * failure, not a skip: scripts/test installs it.
 *
 * And the Grafana dashboard (configs/grafana/cardline.json): valid JSON,
 * and every metric it names is one this daemon's /metrics serves (voice is
 * off in this world: voice and speech series are looked up among the names
 * the source registers instead). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agents_world.h"

#define PYTHON "/usr/bin/python3"                 /* Debian's, with python3-selenium */
#define CASE_MS 240000                            /* one case, browser start to quit */
#define PHONE "+8613800000001"                    /* 王伟's registered mobile */
#define ID "110101199003074514"                   /* his citizen ID */
#define PIN "246810"                              /* his service PIN */
#define VOICE_SESSION "voice:console-call-1"      /* a call handed to an agent (see voice_session) */
#define HELD_SMS "我的新卡还没到，什么时候能领？" /* held for the agent; the script looks for part of it */

static const aw_agent AGENTS[] = {
    {"li", "agent", "tok-console-li", "    sip_uri: sip:li@127.0.0.1:5070\n"},
    {"wang", "supervisor", "tok-console-wang", "    sip_uri: sip:wang@127.0.0.1:5070\n"},
    {"zhao", "observer", "tok-console-zhao", ""},
};

/* The citizens and Redis, as the script asks ------------------------------------*/

/* Outbox entries of kind sms to PHONE whose text contains `needle`. */
static int outbox_sms(const char *needle)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", aw_world_get()->tw.redis.port, tv);
    assert_true(c && !c->err);
    redisReply *r = redisCommand(c, "XRANGE cl:outbox - +");
    assert_non_null(r);
    int n = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *f = r->element[i]->element[1];
        for (size_t j = 0; j + 1 < f->elements; j += 2) {
            if (strcmp(f->element[j]->str, "payload") != 0)
                continue;
            json_t *p = json_loads(f->element[j + 1]->str, 0, NULL);
            const char *to = json_string_value(json_object_get(p, "to"));
            const char *text = json_string_value(json_object_get(p, "text"));
            n += to && text && strcmp(to, PHONE) == 0 && strstr(text, needle) != NULL;
            json_decref(p);
        }
    }
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* A Redis command on the test's own connection; fails the test unless it
 * is answered without an error. */
static void redis_do(int argc, const char **argv)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", aw_world_get()->tw.redis.port, tv);
    assert_true(c && !c->err);
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    freeReplyObject(r);
    redisFree(c);
    assert_true(ok);
}

/* Waits until the reply `needle` is in the outbox. */
static bool wait_outbox(const char *needle)
{
    long deadline = th_now_ms() + AW_WAIT_MS;
    while (outbox_sms(needle) == 0) {
        if (th_now_ms() > deadline)
            return false;
        th_poll_pause();
    }
    return true;
}

/* Four USSD sessions that leave the main flow at known steps (a wrong
 * key is asked again twice, [settings] retries, before it counts as
 * invalid): two choose English, one then opens the status check, one
 * presses 8 at the main menu three times (invalid, goodbye); one presses 5
 * at the language menu three times (invalid, on to the main menu); one
 * only dials. */
static void ussd_batch(void)
{
    aw_ussd("console-f1", PHONE, NULL, "English");
    aw_ussd("console-f1", PHONE, "2", "Card status");
    aw_ussd("console-f1", PHONE, "1", "");
    aw_ussd("console-f2", PHONE, NULL, "English");
    aw_ussd("console-f2", PHONE, "2", "Card status");
    aw_ussd("console-f2", PHONE, "8", "CON ");
    aw_ussd("console-f2", PHONE, "8", "CON ");
    aw_ussd("console-f2", PHONE, "8", "END ");
    aw_ussd("console-f3", PHONE, NULL, "English");
    for (int i = 0; i < 3; i++)
        aw_ussd("console-f3", PHONE, "5", "CON ");
    aw_ussd("console-f4", PHONE, NULL, "English");
}

/* The status check with ID and PIN, as tests/agents does it. */
static void ussd_pin(void)
{
    aw_ussd("console-pin", PHONE, NULL, "1 中文");
    aw_ussd("console-pin", PHONE, "1", "1 卡状态");
    aw_ussd("console-pin", PHONE, "1", "身份证");
    aw_ussd("console-pin", PHONE, ID, "密码");
    aw_ussd("console-pin", PHONE, PIN, "状态");
}

/* `n` citizens (+86139…, each a number of their own) text AGENT: `n`
 * conversations wait for an agent. */
static void sms_many(int n)
{
    for (int i = 0; i < n; i++) {
        char phone[32];
        snprintf(phone, sizeof phone, "+86139%08d", i);
        aw_sms(phone, "AGENT", "");
    }
}

/* A USSD caller presses 0 at the language menu and books a callback. */
static void ussd_callback(void)
{
    aw_ussd("console-cb", PHONE, NULL, "English");
    aw_ussd("console-cb", PHONE, "0", "CON ");
    aw_ussd("console-cb", PHONE, "1", "END ");
}

/* A call transferred to an agent, written as the voice channel and the
 * engine leave it (the store's layout, the queue index, the change log
 * consoles poll): this world has no SIP. With `assist`, the caller is back
 * from PIN entry, verified. */
static void voice_session(bool assist)
{
    char doc[1024], now[24];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(now, sizeof now, "%lld", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    snprintf(doc, sizeof doc,
             "{\"v\":2,\"id\":\"" VOICE_SESSION
             "\",\"channel\":\"voice\",\"caller\":\"+8613800000002\","
             "\"entry\":\"12333\",\"dialplan\":\"x\",\"flow\":\"agent\",\"node\":\"to_agent\","
             "\"state\":\"transfer\",\"vars\":{\"caller\":\"+8613800000002\",\"channel\":\"voice\","
             "\"lang\":\"zh\",\"session\":\"" VOICE_SESSION
             "\",\"node\":\"main.main_menu\"%s},"
             "\"fails\":{},\"back\":[],\"transfer\":{\"queue\":\"general\","
             "\"reason\":\"caller asked for an agent at main.main_menu\"},\"last_hop\":null,"
             "\"created_at\":%s,\"updated_at\":%s}",
             assist ? ",\"verified_id\":\"" ID "\",\"assist_node\":\"verify_pin\",\"assist_result\":\"verified\"" : "",
             now, now);
    redis_do(6, (const char *[]){"HSET", "cl:s:" VOICE_SESSION, "rev", assist ? "2" : "1", "doc", doc});
    redis_do(3, (const char *[]){"EXPIRE", "cl:s:" VOICE_SESSION, "600"});
    redis_do(5, (const char *[]){"ZADD", "cl:q", "NX", now, VOICE_SESSION}); /* handed over once */
    redis_do(7, (const char *[]){"XADD", "cl:console", "*", "kind", assist ? "session" : "queue", "id", VOICE_SESSION});
}

/* Carries out one request line of the script; the answer line into `out`. */
static void serve(const char *req, char *out, size_t size)
{
    snprintf(out, size, "ok\n");
    if (strcmp(req, "sms_agent") == 0) {
        aw_sms(PHONE, "AGENT", "");
        aw_sms(PHONE, HELD_SMS, "");
    } else if (strcmp(req, "ussd_batch") == 0) {
        ussd_batch();
    } else if (strncmp(req, "sms_many ", 9) == 0) {
        sms_many(atoi(req + 9));
    } else if (strcmp(req, "ussd_callback") == 0) {
        ussd_callback();
    } else if (strcmp(req, "voice_transfer") == 0) {
        voice_session(false);
    } else if (strcmp(req, "voice_back") == 0) {
        voice_session(true);
    } else if (strcmp(req, "ussd_pin") == 0) {
        ussd_pin();
    } else if (strncmp(req, "outbox ", 7) == 0) {
        if (!wait_outbox(req + 7))
            snprintf(out, size, "fail the reply never reached the outbox\n");
    } else if (strncmp(req, "no_outbox ", 10) == 0) {
        if (outbox_sms(req + 10) != 0)
            snprintf(out, size, "fail the forged reply is in the outbox\n");
    } else {
        snprintf(out, size, "fail unknown request %.64s\n", req);
    }
}

/* The script --------------------------------------------------------------------*/

static void exec_script(const char *name, int in, int out)
{
    aw_world *w = aw_world_get();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", w->api_port);
    setpgid(0, 0); /* its own group: a stuck case takes chromium down with it */
    dup2(in, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    setenv("CONSOLE_URL", url, 1);
    setenv("TOKEN_AGENT", AGENTS[0].token, 1);
    setenv("TOKEN_SUPERVISOR", AGENTS[1].token, 1);
    setenv("TOKEN_OBSERVER", AGENTS[2].token, 1);
    setenv("SHOTS", CL_SHOTS_DIR, 1);
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1); /* no __pycache__ in the source tree */
    execl(PYTHON, PYTHON, CL_CONSOLE_SCRIPT, name, (char *)NULL);
    fprintf(stderr, "cannot run %s: %s\n", PYTHON, strerror(errno));
    _exit(127);
}

/* Reads one line from `fd` into `line` before `deadline`; false at the
 * end of the stream or the deadline. */
static bool read_line(int fd, char *line, size_t size, long deadline)
{
    size_t n = 0;
    while (n + 1 < size) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long left = deadline - th_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return false;
        char c;
        if (read(fd, &c, 1) != 1)
            return false;
        if (c == '\n')
            break;
        line[n++] = c;
    }
    line[n] = '\0';
    return true;
}

/* Runs console_test.py `name`, serving its requests; fails the test unless
 * it exits 0 within CASE_MS. */
static void run_case(const char *name)
{
    int to_script[2], from_script[2];
    assert_int_equal(pipe(to_script), 0);
    assert_int_equal(pipe(from_script), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(to_script[1]);
        close(from_script[0]);
        exec_script(name, to_script[0], from_script[1]);
    }
    close(to_script[0]);
    close(from_script[1]);
    long deadline = th_now_ms() + CASE_MS;
    char line[1024], answer[256];
    while (read_line(from_script[0], line, sizeof line, deadline)) {
        if (line[0] != '@') {
            fprintf(stderr, "%s: %s\n", name, line);
            continue;
        }
        serve(line + 1, answer, sizeof answer);
        fprintf(stderr, "%s: %s -> %s", name, line, answer);
        if (write(to_script[1], answer, strlen(answer)) != (ssize_t)strlen(answer))
            break;
    }
    bool late = th_now_ms() > deadline;
    if (late)
        kill(-pid, SIGKILL);
    close(to_script[1]);
    close(from_script[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (late)
        fail_msg("case %s took longer than %d ms", name, CASE_MS);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("case %s failed (exit status %d; its log is above)", name,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* The dashboard -----------------------------------------------------------------*/

#define DASHBOARD CL_SOURCE_DIR "/configs/grafana/cardline.json"
#define NAME_MAX_LEN 96

/* Copies the metric name starting at `p` (cardline_[a-z0-9_]+) into `name`;
 * returns its length. */
static size_t metric_name(const char *p, char name[NAME_MAX_LEN])
{
    size_t n = 0;
    while ((islower((unsigned char)p[n]) || isdigit((unsigned char)p[n]) || p[n] == '_') && n + 1 < NAME_MAX_LEN) {
        name[n] = p[n];
        n++;
    }
    name[n] = '\0';
    return n;
}

/* Voice is off here: its series (and speech's, which voice drives) are not
 * served; the source must register them instead. */
static bool voice_only(const char *name)
{
    return strncmp(name, "cardline_voice_", 15) == 0 || strncmp(name, "cardline_speech_", 16) == 0;
}

static bool registered_in_source(const char *name)
{
    char cmd[512], out[64];
    snprintf(cmd, sizeof cmd, "grep -rlF '\"%s\"' %s/gateway | head -1", name, CL_SOURCE_DIR);
    return th_run(cmd, out, sizeof out) == 0 && out[0] != '\0';
}

static void test_grafana_series(void **state)
{
    (void)state;
    json_error_t err;
    json_t *dash = json_load_file(DASHBOARD, 0, &err);
    if (!dash)
        fail_msg("%s:%d: %s", DASHBOARD, err.line, err.text);
    assert_true(json_array_size(json_object_get(dash, "panels")) > 0);
    json_decref(dash);

    char *metrics = NULL;
    assert_int_equal(th_http_get(aw_world_get()->tw.http_port, "/metrics", &metrics), 200);
    char *text = th_read_text(DASHBOARD);
    char missing[NAME_MAX_LEN] = "";
    int names = 0;
    for (const char *p = strstr(text, "cardline_"); p && !missing[0]; p = strstr(p, "cardline_")) {
        char name[NAME_MAX_LEN], family[NAME_MAX_LEN + 16];
        p += metric_name(p, name);
        snprintf(family, sizeof family, "# TYPE %s ", name);
        bool found = voice_only(name) ? registered_in_source(name) : strstr(metrics, family) != NULL;
        if (!found)
            snprintf(missing, sizeof missing, "%s", name);
        names++;
    }
    free(text);
    free(metrics);
    if (missing[0])
        fail_msg("the dashboard names %s, which %s", missing,
                 voice_only(missing) ? "no source registers" : "/metrics lacks");
    assert_true(names > 20);
}

/* The world and the cases -------------------------------------------------------*/

static int setup(void **state)
{
    return aw_setup(state, "console", false, AGENTS, sizeof AGENTS / sizeof AGENTS[0],
                    "[outbox]\nconsumer = gw-console\n[agents]\nconsole_dir = " CL_SOURCE_DIR "/console\n");
}

/* test_CASE runs the case CASE of console_test.py. */
#define BROWSER_CASE(name)                                                                                             \
    static void test_##name(void **state)                                                                              \
    {                                                                                                                  \
        (void)state;                                                                                                   \
        run_case(#name);                                                                                               \
    }

BROWSER_CASE(wrong_token)
BROWSER_CASE(funnel)
BROWSER_CASE(sms)
BROWSER_CASE(observer)
BROWSER_CASE(no_pin)
BROWSER_CASE(callback)
BROWSER_CASE(voice)
BROWSER_CASE(queue_1000)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrong_token), cmocka_unit_test(test_funnel),
        cmocka_unit_test(test_sms),         cmocka_unit_test(test_observer),
        cmocka_unit_test(test_no_pin),      cmocka_unit_test(test_callback),
        cmocka_unit_test(test_voice),       cmocka_unit_test(test_grafana_series),
        cmocka_unit_test(test_queue_1000), /* last: the other cases expect a short queue */
    };
    return cmocka_run_group_tests(tests, setup, aw_teardown);
}
