/* SIP calls through Kamailio spread over three gateways; the gateway
 * holding a call in progress is SIGKILLed. The call is lost with it (media
 * cannot move) but its session is not: agents still read it through the
 * others. Calls placed while Kamailio still believes in the dead gateway
 * fail over to the others (failure_route); once it is marked down every
 * new call succeeds on the survivors. Counts calls ok and failed per phase
 * and per gateway, and how long Kamailio took to take the dead gateway out:
 * under calls, and (a second gateway killed) with none. In a world of its
 * own, a flood of new calls from one address is refused by pike at the
 * door. Callers are sipp (tests/voice/sipp/e2e-hold.xml). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cluster_world.h"

#define CALLS 30                    /* calls per phase */
#define CALL_RATE "10"              /* new calls per second */
#define FLOOD_RATE "200"            /* new calls per second of a flood */
#define SIPP_WAIT_MS 60000          /* bound of a sipp run */
#define HELD_SESSION "voice:held-1@cluster" /* the call in progress when its gateway dies */

typedef struct {
    int ok;                         /* answered and hung up */
    int failed;                     /* anything else */
    int refused;                    /* of those, refused with 503 */
} phase_count;

/* Starts sipp calling 12333 through Kamailio `calls` times, each held for
 * `hold_ms`; Call-IDs "<phase>-N@cluster", so Kamailio's hash spreads them. */
static void sipp_start_at(cw_world *w, th_proc *sipp, const char *phase, int calls, int hold_ms, const char *rate)
{
    char name[32], remote[32], sf[300], port[16], mport[16], cid[64], m[16], hold[16], errors[300], log[300];
    snprintf(name, sizeof name, "sipp-%s", phase);
    th_subdir(w->dir, name, sipp->dir);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", w->kamailio.port);
    snprintf(sf, sizeof sf, "%s/tests/voice/sipp/e2e-hold.xml", CL_SOURCE_DIR);
    snprintf(port, sizeof port, "%d", th_free_port());
    snprintf(mport, sizeof mport, "%d", th_free_port());
    snprintf(cid, sizeof cid, "%s-%%u@cluster", phase);
    snprintf(m, sizeof m, "%d", calls);
    snprintf(hold, sizeof hold, "%d", hold_ms);
    snprintf(errors, sizeof errors, "%s/errors.log", sipp->dir);
    snprintf(log, sizeof log, "%s/scenario.log", sipp->dir);
    const char *argv[] = {"sipp", remote, "-sf", sf, "-s", "12333", "-m", m, "-r", rate, "-d", hold,
                          "-i", "127.0.0.1", "-p", port, "-mp", mport, "-cid_str", cid, "-timeout", "50s",
                          "-timeout_error", "-trace_err", "-error_file", errors, "-trace_logs", "-log_file", log,
                          "-nostdin", NULL};
    assert_true(th_spawn(sipp, "sipp", argv));
}

static void sipp_start(cw_world *w, th_proc *sipp, const char *phase, int calls, int hold_ms)
{
    sipp_start_at(w, sipp, phase, calls, hold_ms, CALL_RATE);
}

/* Waits for sipp to end and counts its calls from the scenario's log. */
static phase_count sipp_wait(th_proc *sipp, int calls)
{
    long deadline = th_now_ms() + SIPP_WAIT_MS;
    int status = 0;
    while (waitpid(sipp->pid, &status, WNOHANG) == 0) {
        if (th_now_ms() > deadline) {
            th_kill(sipp);
            fail_msg("sipp (%s) still running after %d ms", sipp->dir, SIPP_WAIT_MS);
        }
        th_poll_pause();
    }
    sipp->pid = 0;
    char path[300];
    snprintf(path, sizeof path, "%s/scenario.log", sipp->dir);
    char *log = th_read_text(path);
    phase_count c = {.ok = th_count(log, "answered "), .refused = th_count(log, "busy ")};
    c.failed = calls - c.ok;
    free(log);
    return c;
}

/* Polls until one gateway holds a call (cardline_voice_calls 1): its index. */
static int node_holding_a_call(const cw_world *w)
{
    long deadline = th_now_ms() + CW_WAIT_MS;
    for (;;) {
        for (int i = 0; i < CW_NODES; i++)
            if (cw_metric(w, i, "cardline_voice_calls") == 1)
                return i;
        if (th_now_ms() > deadline)
            fail_msg("no gateway holds the call after %d ms", CW_WAIT_MS);
        th_poll_pause();
    }
}

/* GET /v1/sessions/ID through HAProxy's agents door as the demo's agent li:
 * the status. */
static long agent_sees(const cw_world *w, const char *session)
{
    char path[160];
    snprintf(path, sizeof path, "/v1/sessions/%s", session);
    cw_answer a = cw_https(w, w->haproxy_agents, path, NULL, "demo-agent-li");
    if (a.status != 200)
        print_message("GET %s: %ld %s\n", path, a.status, a.body);
    free(a.body);
    return a.status;
}

static phase_count run_phase(cw_world *w, const char *phase, double answered[CW_NODES])
{
    th_proc sipp = {0};
    double before[CW_NODES];
    for (int i = 0; i < CW_NODES; i++)
        before[i] = w->node[i].killed ? 0 : cw_metric(w, i, "cardline_voice_answered_total");
    sipp_start(w, &sipp, phase, CALLS, 100);
    phase_count c = sipp_wait(&sipp, CALLS);
    print_message("%-9s calls ok %d, failed %d; answered by", phase, c.ok, c.failed);
    for (int i = 0; i < CW_NODES; i++) {
        answered[i] = w->node[i].killed ? 0 : cw_metric(w, i, "cardline_voice_answered_total") - before[i];
        print_message(" %s %s", w->node[i].name, w->node[i].killed ? "(dead)" : "");
        if (!w->node[i].killed)
            print_message("%.0f", answered[i]);
    }
    print_message("\n");
    return c;
}

static void calls_move_off_a_killed_gateway(void **state)
{
    cw_world *w = *state;
    double answered[CW_NODES];

    phase_count before = run_phase(w, "before", answered);
    assert_int_equal(before.failed, 0);
    for (int i = 0; i < CW_NODES; i++)
        assert_true(answered[i] > 0); /* the hash spreads calls over every gateway */

    /* The gateway to kill is the one holding a call in progress. */
    th_proc held = {0};
    sipp_start(w, &held, "held", 1, 600000);
    int victim = node_holding_a_call(w);
    assert_int_equal(agent_sees(w, HELD_SESSION), 200);

    /* Calls start at once after the kill: those hashed to the dead gateway
     * time out there and move on, until Kamailio marks it down. */
    char down[64];
    snprintf(down, sizeof down, "gateway down sip:127.0.0.1:%d", w->node[victim].sip_port);
    int seen = th_log_count(&w->kamailio, down);
    long killed_at = th_now_ms();
    cw_kill_node(w, victim);
    th_proc sipp = {0};
    sipp_start(w, &sipp, "failover", CALLS, 100);
    assert_true(th_log_wait(&w->kamailio, down, seen, CW_WAIT_MS));
    long out_ms = th_now_ms() - killed_at;
    phase_count during = sipp_wait(&sipp, CALLS);
    /* The held call is over (its media cannot move), its session is not:
     * an agent still reads it, through a surviving gateway. */
    assert_int_equal(agent_sees(w, HELD_SESSION), 200);
    print_message("the call held on %s: its session still read by agents after the kill\n", w->node[victim].name);
    th_kill(&held);
    print_message("killed %s; Kamailio took it out after %ld ms (probe interval %d s)\n", w->node[victim].name,
                  out_ms, CW_PROBE_S);
    print_message("failover  calls ok %d, failed %d\n", during.ok, during.failed);
    assert_int_equal(during.failed, 0);

    phase_count after = run_phase(w, "after", answered);
    assert_int_equal(after.failed, 0);
    double sum = 0;
    for (int i = 0; i < CW_NODES; i++)
        sum += answered[i];
    assert_int_equal((int)sum, CALLS); /* every call on a survivor */

    /* With no calls to notice it, only the probes take a gateway out. */
    int quiet = (victim + 1) % CW_NODES;
    snprintf(down, sizeof down, "gateway down sip:127.0.0.1:%d", w->node[quiet].sip_port);
    seen = th_log_count(&w->kamailio, down);
    killed_at = th_now_ms();
    cw_kill_node(w, quiet);
    assert_true(th_log_wait(&w->kamailio, down, seen, CW_WAIT_MS));
    print_message("killed %s with no calls: its probes took it out after %ld ms\n", w->node[quiet].name,
                  th_now_ms() - killed_at);
}

/* One address sending new calls far above pike's density is refused with
 * 503 by Kamailio itself, before any gateway sees the excess. */
static void a_flood_is_refused_at_the_door(void **state)
{
    cw_world *w = *state;
    th_proc sipp = {0};
    double answered = 0;
    sipp_start_at(w, &sipp, "flood", 200, 100, FLOOD_RATE);
    phase_count c = sipp_wait(&sipp, 200);
    for (int i = 0; i < CW_NODES; i++)
        answered += cw_metric(w, i, "cardline_voice_answered_total");
    int flagged = th_log_count(&w->kamailio, "flood from 127.0.0.1");
    print_message("flood of 200 calls at %s/s: %d answered, %d refused 503 by Kamailio (%d logged), gateways "
                  "answered %.0f\n",
                  FLOOD_RATE, c.ok, c.refused, flagged, answered);
    assert_true(c.refused > 0);
    assert_true(flagged > 0);
    assert_int_equal((int)answered, c.ok); /* the refused never reached a gateway */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(calls_move_off_a_killed_gateway, cw_setup, cw_teardown),
        cmocka_unit_test_setup_teardown(a_flood_is_refused_at_the_door, cw_setup, cw_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
