/* USSD sessions walked through HAProxy (TLS, signed as the aggregator
 * signs) over three gateways; halfway, the gateway that served the last
 * hop is SIGKILLed. Every session must go on at its next hop on another
 * gateway and end as it would have: counts sessions continued and lost
 * (0), and hops each gateway served. Ordinary hops only: no "98" page, no
 * slow registry (no holding page). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "cluster_world.h"
#include "world.h"

#define SESSIONS 12
#define HOPS 6
#define KILL_AFTER 3                /* hops every session has made when the gateway is killed */
#define HOP_WAIT_MS 10000

/* 王伟 of the demo seed: status in Chinese, then goodbye. Each hop's
 * `text` is the whole history, in the aggregator convention, and what
 * its answer must hold. */
static const struct {
    const char *text;
    const char *want;
} walk[HOPS] = {
    {"", "CON 欢迎使用社会保障卡服务"},
    {"1", "1 卡状态/补卡进度"},
    {"1*1", "18位身份证号码"},
    {"1*1*110101199003074514", "6位社保卡服务密码"},
    {"1*1*110101199003074514*246810", "状态：正常"},
    {"1*1*110101199003074514*246810*2", "END 感谢使用"},
};

typedef struct {
    char *body;                     /* the answer */
    size_t len;
    char node[16];                  /* X-Cardline-Node: the gateway HAProxy chose */
} answer;

static size_t take_body(char *data, size_t size, size_t n, void *arg)
{
    answer *a = arg;
    char *grown = realloc(a->body, a->len + size * n + 1);
    assert_non_null(grown);
    memcpy(grown + a->len, data, size * n);
    a->len += size * n;
    grown[a->len] = '\0';
    a->body = grown;
    return size * n;
}

static size_t take_header(char *data, size_t size, size_t n, void *arg)
{
    answer *a = arg;
    const char name[] = "X-Cardline-Node:";
    if (size * n > sizeof name && strncasecmp(data, name, sizeof name - 1) == 0)
        sscanf(data + sizeof name - 1, " %15[a-z0-9]", a->node);
    return size * n;
}

/* One hop through HAProxy's TLS door, trusting only the test's certificate. */
static long hop(const cw_world *w, int session, int step, answer *a)
{
    char sid[32], phone[32], form[512], url[64];
    snprintf(sid, sizeof sid, "cluster-%d", session);
    snprintf(phone, sizeof phone, "+86138001000%02d", session);
    tw_ussd_form(form, sizeof form, sid, phone, walk[step].text);
    snprintf(url, sizeof url, "https://127.0.0.1:%d/ussd", w->haproxy.port);
    memset(a, 0, sizeof *a);
    CURL *c = curl_easy_init();
    struct curl_slist *h = th_ussd_sign(NULL, form);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, w->ca);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, take_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, take_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)HOP_WAIT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    long status = 0;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        print_message("hop %d of session %d: %s\n", step, session, curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* Makes hops [from, to) of `session`; true when each was answered 200
 * with what the walk wants. Counts the gateways that served them. */
static bool walk_session(const cw_world *w, int session, int from, int to, int served[CW_NODES], char last[16])
{
    for (int step = from; step < to; step++) {
        answer a;
        long status = hop(w, session, step, &a);
        bool ok = status == 200 && a.body && strstr(a.body, walk[step].want);
        int node = cw_node_index(a.node);
        if (node >= 0)
            served[node]++;
        if (!ok)
            print_message("session %d hop %d: status %ld on %s, answer: %s\n", session, step, status,
                          a.node[0] ? a.node : "?", a.body ? a.body : "");
        snprintf(last, 16, "%s", a.node);
        free(a.body);
        if (!ok)
            return false;
    }
    return true;
}

static void ussd_sessions_outlive_their_gateway(void **state)
{
    cw_world *w = *state;
    int served_before[CW_NODES] = {0}, served_after[CW_NODES] = {0};
    char last[16] = "";

    for (int s = 0; s < SESSIONS; s++)
        assert_true(walk_session(w, s, 0, KILL_AFTER, served_before, last));
    int victim = cw_node_index(last);
    assert_true(victim >= 0);
    for (int i = 0; i < CW_NODES; i++)
        assert_true(served_before[i] > 0); /* round robin: every gateway served hops */
    cw_kill_node(w, victim);

    int continued = 0, lost = 0;
    for (int s = 0; s < SESSIONS; s++) {
        if (walk_session(w, s, KILL_AFTER, HOPS, served_after, last))
            continued++;
        else
            lost++;
    }
    print_message("killed %s after %d hops of each of %d sessions: %d continued, %d lost\n", w->node[victim].name,
                  KILL_AFTER, SESSIONS, continued, lost);
    for (int i = 0; i < CW_NODES; i++)
        print_message("  %s served %d hops before, %d after\n", w->node[i].name, served_before[i], served_after[i]);
    assert_int_equal(lost, 0);
    assert_int_equal(continued, SESSIONS);
    assert_int_equal(served_after[victim], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ussd_sessions_outlive_their_gateway, cw_setup, cw_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
