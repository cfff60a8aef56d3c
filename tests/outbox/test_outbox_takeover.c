/* test_outbox_takeover — an outbox lease taken over by another node. Two
 * real cardline daemons share one real redis-server, each with its own
 * [outbox] consumer, in front of the real registry simulator (demo seed).
 * Four callers report their cards lost through node A while the registry
 * holds every loss report for a minute: node A leases the four entries
 * and its attempts hang. Node B starts, node A is SIGKILLed, the registry
 * comes back to normal, and node B delivers each entry once its lease ends.
 * Counted: entries delivered, duplicates (registry writes beyond the
 * reports), losses (reports not applied) — the last two must be zero —
 * and each card in temporary loss under the reference its caller heard.
 * Every wait is a bounded poll; how long the takeover took is printed,
 * never asserted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "world.h"

#define WAIT_MS 20000
#define LEASE_MS 3000             /* [outbox] lease_ms on both nodes */
#define HANG_MS 60000             /* how long the registry holds node A's attempts */
#define REFERENCE_LEN 14          /* "GS" + 12, gateway/loss/loss.h */
#define ACCEPTED "挂失申请已受理"
#define CALLERS 4

/* The demo seed's people with a normal card (tools/registry-sim/README.md). */
typedef struct {
    const char *id;               /* citizen ID */
    const char *pin;              /* service PIN */
    const char *card;             /* the normal card */
    char text[160];               /* the USSD history so far */
    char reference[REFERENCE_LEN + 1]; /* what the caller heard */
} caller;

typedef struct {
    tw_world tw;                  /* Redis, the simulator, node A (tw.gw) */
    tw_world b;                   /* node B's listener (b.gw is node B) */
    char conf_b[300];             /* node B's config */
    caller callers[CALLERS];
} world;

static void write_conf(const world *w, const char *path, int port, const char *consumer, int registry_timeout_ms)
{
    th_write_filef(path,
                   "[log]\nlevel = info\nflush_ms = 0\n"
                   "[http]\nlisten = 127.0.0.1:%d\n"
                   "[redis]\nport = %d\n"
                   "[registry]\nurl = http://127.0.0.1:%d\ntimeout_ms = %d\nread_retries = 0\n"
                   "[dialplans]\ndir = %s/dialplans\n"
                   "[ussd]\nanswer_deadline_ms = 10000\nhop_key_secret = the nodes' shared hop key secret\n"
                   TH_USSD_SECRET_LINE
                   "[outbox]\nconsumer = %s\npoll_interval_ms = 20\nlease_ms = %d\n"
                   "backoff_min_ms = 50\nbackoff_max_ms = 500\n"
                   "[workflows]\nloss_confirm_wait_ms = 300\ndigest_secret = the nodes' shared digest secret\n"
                   "[gateway]\nnodes = 2\nshutdown_grace_ms = 3000\n",
                   port, w->tw.redis.port, w->tw.sim.port, registry_timeout_ms, CL_SOURCE_DIR, consumer, LEASE_MS);
}

static int setup(void **state)
{
    static const caller people[CALLERS] = {
        {"110101199003074514", "246810", "A52870316", "", ""},
        {"320102199508184642", "731864", "J36815240", "", ""},
        {"370102196807202922", "620418", "L58304167", "", ""},
        {"610103198303105120", "402719", "M14729853", "", ""},
    };
    world *w = calloc(1, sizeof *w);
    memcpy(w->callers, people, sizeof people);
    tw_init(&w->tw, "cl-outbox-takeover");
    if (!tw_start_servers(&w->tw, false, NULL, NULL))
        return -1;
    /* Node A waits on the registry past its lease: its attempts hang. */
    write_conf(w, w->tw.conf, w->tw.http_port, "node-a", HANG_MS / 2);
    w->b = w->tw;
    w->b.gw = (th_proc){0};
    w->b.http_port = th_free_port();
    snprintf(w->conf_b, sizeof w->conf_b, "%s/node-b.conf", w->tw.dir);
    snprintf(w->b.conf, sizeof w->b.conf, "%s", w->conf_b);
    th_subdir(w->tw.dir, "gw-b", w->b.gw.dir);
    write_conf(w, w->conf_b, w->b.http_port, "node-b", 2000);
    if (!tw_start_gateway(&w->tw, true, WAIT_MS))
        return -1;
    *state = w;
    return 0;
}

/* Node A was killed; node B exits cleanly (under the sanitizers: no leak). */
static int teardown(void **state)
{
    world *w = *state;
    int status = th_stop(&w->b.gw, WAIT_MS);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    clean = tw_stop(&w->tw, 0) && clean;
    free(w);
    return clean ? 0 : -1;
}

/* One hop of `c` on node A: `input` joins the history; the reply must be
 * 200 and contain `needle`. Returns the body. */
static char *hop(const world *w, caller *c, const char *session, const char *input, const char *needle)
{
    if (input) {
        size_t used = strlen(c->text);
        snprintf(c->text + used, sizeof c->text - used, "%s%s", used ? "*" : "", input);
    }
    char form[512];
    long status = 0;
    tw_ussd_form(form, sizeof form, session, "+8613900000000", c->text);
    char *body = tw_call(&w->tw, "/ussd", form, &status, WAIT_MS);
    if (status != 200 || !strstr(body, needle))
        fail_msg("%s after \"%s\": status %ld, wanted …%s…, got: %s", session, input ? input : "(dial)", status,
                 needle, body);
    return body;
}

/* 中文, 挂失, ID, PIN, the card's last four: the confirmation menu. */
static void dial_to_confirm(const world *w, caller *c, const char *session)
{
    free(hop(w, c, session, NULL, "1 中文"));
    free(hop(w, c, session, "1", "2 挂失"));
    free(hop(w, c, session, "2", "身份证号码"));
    free(hop(w, c, session, c->id, "服务密码"));
    free(hop(w, c, session, c->pin, "后4位"));
    free(hop(w, c, session, c->card + strlen(c->card) - 4, "1 确认挂失"));
}

static void confirm(const world *w, caller *c, const char *session)
{
    char *body = hop(w, c, session, "1", ACCEPTED);
    const char *at = strstr(body, "受理编号");
    assert_non_null(at);
    at += strlen("受理编号");
    assert_int_equal(strspn(at, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"), REFERENCE_LEN);
    memcpy(c->reference, at, REFERENCE_LEN);
    c->reference[REFERENCE_LEN] = '\0';
    free(body);
}

/* Redis ----------------------------------------------------------------------------------*/

/* A count a Lua script works out in Redis (KEYS[1] = the outbox stream). */
static long long outbox_count(const world *w, const char *script, const char *arg)
{
    const char *argv[] = {"EVAL", script, "1", "cl:outbox", arg};
    char *text = th_redis_cmd(&w->tw.redis, arg ? 5 : 4, argv);
    assert_non_null(text);
    long long n = strtoll(text, NULL, 10);
    free(text);
    return n;
}

/* Entries of kind loss_report still in the outbox. */
static int loss_entries(const world *w)
{
    static const char script[] =
        "local n = 0 "
        "for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do "
        "  for i = 1, #e[2], 2 do "
        "    if e[2][i] == 'kind' and e[2][i + 1] == 'loss_report' then n = n + 1 end "
        "  end "
        "end return n";
    return (int)outbox_count(w, script, NULL);
}

/* Entries the consumer group holds leased by `consumer`. */
static long long leased_by(const world *w, const char *consumer)
{
    return outbox_count(w, "return #redis.call('XPENDING', KEYS[1], 'cl:senders', '-', '+', 1000, ARGV[1])",
                        consumer);
}

/* The registry -----------------------------------------------------------------------------*/

/* True when the registry has `c`'s card in temporary loss (status 4) under
 * the reference its caller heard. */
static bool in_loss_as_heard(const world *w, const caller *c)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/cards/%s", c->card);
    json_t *card = th_sim_json(&w->tw.sim, path);
    json_t *report = json_object_get(card, "loss_report");
    bool heard = json_integer_value(json_object_get(card, "status")) == 4 &&
                 json_is_string(json_object_get(report, "reference")) &&
                 strcmp(json_string_value(json_object_get(report, "reference")), c->reference) == 0;
    json_decref(card);
    return heard;
}

static void set_fault(const world *w, const char *fault)
{
    assert_int_equal(th_http(w->tw.sim.port, "PUT", "/_sim/fault", fault, NULL, NULL), 200);
}

/* Polls until the registry saw `n` more requests than `before`. */
static void wait_requests(const world *w, long long before, int n)
{
    long deadline = th_now_ms() + WAIT_MS;
    while (th_sim_stat(&w->tw.sim, "requests") < before + n) {
        assert_true(th_now_ms() < deadline);
        th_poll_pause();
    }
}

/* Lines of p's log with an attempt of `kind` that ended done. */
static int done_lines(const th_proc *p, const char *kind)
{
    char *text = th_read_text(p->log);
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        n += strstr(line, "event=outbox.attempt") && strstr(line, kind) && strstr(line, "outcome=done");
    free(text);
    return n;
}

/* The test ----------------------------------------------------------------------------------*/

static void test_killed_nodes_leases_delivered_once_by_another(void **state)
{
    world *w = *state;
    char session[CALLERS][32];
    for (int i = 0; i < CALLERS; i++) {
        snprintf(session[i], sizeof session[i], "takeover-%d", i);
        dial_to_confirm(w, &w->callers[i], session[i]);
    }
    long long applied_before = th_sim_applied(&w->tw.sim, "loss_reports");
    long long requests = th_sim_stat(&w->tw.sim, "requests");
    char fault[160];
    snprintf(fault, sizeof fault, "{\"delay_ms\": %d, \"count\": %d, \"path_prefix\": \"/v1/cards/\"}", HANG_MS,
             CALLERS);
    set_fault(w, fault);
    for (int i = 0; i < CALLERS; i++)
        confirm(w, &w->callers[i], session[i]);   /* durable in the outbox: "accepted" */
    /* Node A's attempts reached the registry and hang there. */
    wait_requests(w, requests, CALLERS);
    assert_int_equal(loss_entries(w), CALLERS);
    assert_true(leased_by(w, "node-a") >= CALLERS);
    assert_int_equal(th_sim_applied(&w->tw.sim, "loss_reports"), applied_before);

    assert_true(tw_start_gateway(&w->b, true, WAIT_MS));   /* two nodes on one Redis */
    th_kill(&w->tw.gw);
    long killed = th_now_ms();
    assert_int_equal(th_http(w->tw.sim.port, "DELETE", "/_sim/fault", NULL, NULL, NULL), 200);

    long deadline = killed + LEASE_MS + WAIT_MS;
    while (loss_entries(w) > 0) {
        assert_true(th_now_ms() < deadline);
        th_poll_pause();
    }
    long long applied = th_sim_applied(&w->tw.sim, "loss_reports") - applied_before;
    int in_loss = 0;
    for (int i = 0; i < CALLERS; i++)
        in_loss += in_loss_as_heard(w, &w->callers[i]);
    long long duplicates = applied > CALLERS ? applied - CALLERS : 0;
    long long losses = CALLERS - in_loss;
    print_message("node B delivered %d entries %ld ms after node A was killed (lease %d ms): "
                  "applied %lld, duplicates %lld, losses %lld, registry replays %lld\n",
                  in_loss, th_now_ms() - killed, LEASE_MS, applied, duplicates, losses,
                  th_sim_stat(&w->tw.sim, "replays"));
    assert_int_equal(duplicates, 0);
    assert_int_equal(losses, 0);
    assert_int_equal(applied, CALLERS);
    assert_int_equal(done_lines(&w->b.gw, "kind=loss_report"), CALLERS);   /* node B delivered them */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_killed_nodes_leases_delivered_once_by_another, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
