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

#include "cluster_world.h"
#include "world.h"

#define SESSIONS 12
#define HOPS 6
#define KILL_AFTER 3                /* hops every session has made when the gateway is killed */

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

/* One hop of `session` through HAProxy's citizens' door. */
static cw_answer hop(const cw_world *w, int session, int step)
{
    char sid[32], phone[32], form[512];
    snprintf(sid, sizeof sid, "cluster-%d", session);
    snprintf(phone, sizeof phone, "+86138001000%02d", session);
    tw_ussd_form(form, sizeof form, sid, phone, walk[step].text);
    return cw_https(w, w->haproxy.port, "/ussd", form, NULL);
}

/* Makes hops [from, to) of `session`; true when each was answered 200
 * with what the walk wants. Counts the gateways that served them. */
static bool walk_session(const cw_world *w, int session, int from, int to, int served[CW_NODES], char last[16])
{
    for (int step = from; step < to; step++) {
        cw_answer a = hop(w, session, step);
        bool ok = a.status == 200 && strstr(a.body, walk[step].want);
        int node = cw_node_index(a.node);
        if (node >= 0)
            served[node]++;
        if (!ok)
            print_message("session %d hop %d: status %ld on %s, answer: %s\n", session, step, a.status,
                          a.node[0] ? a.node : "?", a.body);
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
