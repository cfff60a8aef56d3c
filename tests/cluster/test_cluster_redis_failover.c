/* test_cluster_redis_failover — loss reports survive a Redis failover. Two
 * real cardline daemons run with [redis] sentinels (three real Sentinels,
 * down-after 1 s) and replicas = 1 against a master with one replica and
 * the real registry simulator; callers confirm loss reports by USSD, one
 * after another, their hops alternating between the two nodes, while the
 * master is SIGKILLed. The Sentinels promote the
 * replica, both gateways follow it, and the killed master is started again
 * as the new master's replica; until it is in sync, callers hear
 * "unconfirmed" (the report is on the master only) unless the registry
 * confirmed it in time. A caller whose hop failed starts again in a
 * new session (a report that landed unheard is then refused by the
 * registry: the card is no longer in normal use).
 *
 * At the end every report a caller heard as done, accepted or unconfirmed
 * is in the registry under the reference the caller heard, the registry
 * applied exactly one report per card reported (none lost, none twice),
 * and nothing is left in the outbox. The test prints what it counted and
 * the failover gap (first failed hop after the kill to the first good
 * hop); no assertion depends on timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "domain.h"
#include "world.h"

#define WAIT_MS 30000            /* bound of every wait */
#define PEOPLE 24                /* callers, each with one normal card */
#define KILL_AFTER 6             /* reports confirmed before the master is killed */
#define SENTINELS 3
#define MASTER_NAME "cardline"
#define ALREADY_LOST "已临时挂失，无需重复办理" /* loss_already */
#define REFERENCE_LEN 14         /* "GS" + 12, gateway/loss/loss.h */

typedef enum { HEARD_NOTHING, HEARD_REPORT, HEARD_ALREADY_LOST } heard;

typedef struct {
    char id[19];
    char pin[7];
    char card[10];
    char mobile[20];
    int attempt;                 /* sessions started */
    char session[40];
    char phone[24];
    char text[128];
    heard outcome;
    char said[16];               /* done | accepted | unconfirmed */
    char reference[REFERENCE_LEN + 1];
} person;

typedef struct {
    tw_world tw;                 /* node 1, the first master (tw.redis) and the simulator */
    tw_world node2;              /* node 2: its own directory, config and listener; tw's servers */
    int hops;                    /* hops sent, alternating between the nodes */
    th_proc replica;             /* the first replica */
    th_proc sentinel[SENTINELS];
    char seed[300];
    person people[PEOPLE];
    long killed_at;              /* th_now_ms of the SIGKILL, 0 before */
    long first_failed_hop;       /* after the kill */
    long first_good_hop;         /* after that */
    int failed_hops;
    char last[512];              /* the last answer heard, for a failure's message */
} world;

/* People and the registry ---------------------------------------------------------*/

static void make_people(world *w)
{
    for (int i = 0; i < PEOPLE; i++) {
        person *p = &w->people[i];
        char id17[18];
        snprintf(id17, sizeof id17, "1101011981%02d%02d23%d", 1 + i / 28, 1 + i % 28, i % 10);
        snprintf(p->id, sizeof p->id, "%s%c", id17, domain_id_check_char(id17));
        snprintf(p->pin, sizeof p->pin, "%06d", 246810 + 7919 * i);
        snprintf(p->card, sizeof p->card, "T3%07d", i + 1);
        snprintf(p->mobile, sizeof p->mobile, "+861381%07d", i + 1);
    }
}

static void write_seed(world *w)
{
    tw_seed_person seed[PEOPLE];
    for (int i = 0; i < PEOPLE; i++) {
        const person *p = &w->people[i];
        seed[i] = (tw_seed_person){p->id, p->card, p->pin, p->mobile};
    }
    assert_true(tw_write_seed(&w->tw, seed, PEOPLE, w->seed));
}

/* The card's active loss reference ("" when none), -1 status if no answer. */
static int card_status(const world *w, const char *card, char reference[65])
{
    char path[64];
    snprintf(path, sizeof path, "/v1/cards/%s", card);
    json_t *j = th_sim_json(&w->tw.sim, path);
    int status = j ? (int)json_integer_value(json_object_get(j, "status")) : -1;
    const char *ref = json_string_value(json_object_get(json_object_get(j, "loss_report"), "reference"));
    snprintf(reference, 65, "%s", ref ? ref : "");
    json_decref(j);
    return status;
}

/* Redis and the Sentinels -----------------------------------------------------------*/

static bool linked(const void *arg)
{
    const th_proc *replica = arg;
    return th_redis_info_has(replica->port, "replication", "master_link_status:up");
}

static bool sentinels_settled(const void *arg)
{
    const world *w = arg;
    return th_sentinels_settled(w->sentinel, SENTINELS, MASTER_NAME);
}

/* The Sentinels name the first replica as the master. */
static bool failed_over(const void *arg)
{
    const world *w = arg;
    return th_sentinel_master_port(&w->sentinel[0], MASTER_NAME) == w->replica.port;
}

static void wait_for(bool (*cond)(const void *), const void *arg, const char *what)
{
    if (!th_poll_until(cond, arg, WAIT_MS))
        fail_msg("timed out waiting for %s", what);
}

/* The gateway ---------------------------------------------------------------------------*/

/* One node's config: the same Redis, Sentinels, registry and secrets,
 * its own listener and outbox consumer. */
static void write_conf(const world *w, const tw_world *node, const char *consumer)
{
    th_write_filef(node->conf,
                   "[log]\nlevel = info\nflush_ms = 0\n"
                   "[http]\nlisten = 127.0.0.1:%d\n"
                   "[redis]\nport = %d\nreconnect_min_ms = 20\nreconnect_max_ms = 200\nping_interval_ms = 100\n"
                   "sentinels = 127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d\nmaster_name = " MASTER_NAME "\n"
                   "replicas = 1\nreplica_wait_ms = 500\n"
                   "[registry]\nurl = http://127.0.0.1:%d\ntimeout_ms = 500\nconnect_timeout_ms = 200\n"
                   "read_retries = 0\nhealth_interval_ms = 100\n"
                   "[dialplans]\ndir = %s/dialplans\n"
                   "[ussd]\nanswer_deadline_ms = 10000\nhop_key_secret = cluster failover test secret\n"
                   TH_USSD_SECRET_LINE
                   "[outbox]\nconsumer = %s\npoll_interval_ms = 20\nlease_ms = 1000\n"
                   "backoff_min_ms = 50\nbackoff_max_ms = 500\n"
                   "[workflows]\nloss_confirm_wait_ms = 300\ndigest_secret = cluster failover digest key\n"
                   "[gateway]\nshutdown_grace_ms = 3000\n",
                   node->http_port, w->tw.redis.port, w->sentinel[0].port, w->sentinel[1].port,
                   w->sentinel[2].port, w->tw.sim.port, CL_SOURCE_DIR, consumer);
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    *state = w;
    tw_init(&w->tw, "cl-failover");
    make_people(w);
    write_seed(w);
    if (!tw_start_servers(&w->tw, true, w->seed, NULL))
        return -1;
    th_subdir(w->tw.dir, "replica", w->replica.dir);
    if (!th_redis_start_replica(&w->replica, w->replica.dir, w->tw.redis.port))
        return -1;
    wait_for(linked, &w->replica, "the replica's link");
    for (int i = 0; i < SENTINELS; i++) {
        char name[16];
        snprintf(name, sizeof name, "sentinel%d", i + 1);
        th_subdir(w->tw.dir, name, w->sentinel[i].dir);
        if (!th_sentinel_start(&w->sentinel[i], w->sentinel[i].dir, MASTER_NAME, w->tw.redis.port, 1000, 2000))
            return -1;
    }
    wait_for(sentinels_settled, w, "the Sentinels to know each other and the replica");
    tw_init(&w->node2, "cl-failover-n2");
    write_conf(w, &w->tw, "gw-node1");
    write_conf(w, &w->node2, "gw-node2");
    if (!tw_start_gateway(&w->tw, true, WAIT_MS) || !tw_start_gateway(&w->node2, true, WAIT_MS))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    for (int i = 0; i < SENTINELS; i++)
        th_stop(&w->sentinel[i], 2000);
    th_stop(&w->replica, 2000);
    bool clean = tw_stop(&w->node2, WAIT_MS); /* its gateway: the servers are tw's */
    clean = tw_stop(&w->tw, WAIT_MS) && clean;
    free(w);
    return clean ? 0 : -1;
}

/* USSD -----------------------------------------------------------------------------------*/

static void new_session(person *p, int index)
{
    p->attempt++;
    snprintf(p->session, sizeof p->session, "failover-%d-%d", index, p->attempt);
    snprintf(p->phone, sizeof p->phone, "+86139%03d%05d", p->attempt, index);
    p->text[0] = '\0';
}

/* One hop; false (and the hop counted as failed) unless it answers 200
 * with `head` and `needle`. The reply goes to *body (malloc'd). */
static bool hop(world *w, person *p, const char *input, const char *head, const char *needle, char **body)
{
    if (input) {
        size_t used = strlen(p->text);
        snprintf(p->text + used, sizeof p->text - used, "%s%s", used ? "*" : "", input);
    }
    char form[512];
    long status;
    tw_ussd_form(form, sizeof form, p->session, p->phone, p->text);
    /* Any hop of a session may land on any node. */
    *body = tw_call(w->hops++ % 2 ? &w->node2 : &w->tw, "/ussd", form, &status, WAIT_MS);
    snprintf(w->last, sizeof w->last, "%ld %s", status, *body);
    bool good = status == 200 && strncmp(*body, head, strlen(head)) == 0 && strstr(*body, needle) != NULL;
    long now = th_now_ms();
    if (w->killed_at && !good) {
        w->failed_hops++;
        if (!w->first_failed_hop)
            w->first_failed_hop = now;
    } else if (w->first_failed_hop && !w->first_good_hop && good) {
        w->first_good_hop = now;
    }
    return good;
}

static bool hops_to_confirm(world *w, person *p)
{
    const char *steps[][3] = {
        {NULL, "CON ", "1 中文"},
        {"1", "CON ", "2 挂失"},
        {"2", "CON ", "身份证号码"},
        {p->id, "CON ", "服务密码"},
        {p->pin, "CON ", "后4位"},
        {p->card + strlen(p->card) - 4, "CON ", "1 确认挂失"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char *body;
        bool good = hop(w, p, steps[i][0], steps[i][1], steps[i][2], &body);
        /* The report of an earlier session landed though its caller never
         * heard so: the menu says the card is already reported. */
        if (strstr(body, ALREADY_LOST))
            p->outcome = HEARD_ALREADY_LOST;
        free(body);
        if (!good)
            return false;
    }
    return true;
}

static bool reference_in(const char *body, char out[REFERENCE_LEN + 1])
{
    const char *at = strstr(body, "受理编号");
    if (at == NULL)
        return false;
    at += strlen("受理编号");
    if (strspn(at, "0123456789ABCDEFGHJKMNPQRSTVWXYZ") != REFERENCE_LEN)
        return false;
    memcpy(out, at, REFERENCE_LEN);
    out[REFERENCE_LEN] = '\0';
    return true;
}

/* Confirms; true when the caller heard an outcome worth keeping. */
static bool confirm(world *w, person *p)
{
    static const struct {
        const char *text;
        const char *said;
    } outcomes[] = {{"挂失已办理", "done"}, {"挂失申请已受理", "accepted"}, {"挂失申请已收到", "unconfirmed"}};
    char *body;
    hop(w, p, "1", "", "", &body);
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++) {
        if (strstr(body, outcomes[i].text) && reference_in(body, p->reference)) {
            p->outcome = HEARD_REPORT;
            snprintf(p->said, sizeof p->said, "%s", outcomes[i].said);
            free(body);
            return true;
        }
    }
    /* As above, found by the registry refusing a second report. */
    if (strstr(body, "不能办理电话挂失"))
        p->outcome = HEARD_ALREADY_LOST;
    else if (w->killed_at && !w->first_failed_hop)
        w->first_failed_hop = th_now_ms(), w->failed_hops++;
    free(body);
    return p->outcome != HEARD_NOTHING;
}

static void report(world *w, int index)
{
    person *p = &w->people[index];
    long deadline = th_now_ms() + WAIT_MS;
    while (p->outcome == HEARD_NOTHING) {
        if (th_now_ms() > deadline)
            fail_msg("caller %d got nowhere in %d sessions; the last answer: %s", index, p->attempt, w->last);
        new_session(p, index);
        if ((hops_to_confirm(w, p) && confirm(w, p)) || p->outcome != HEARD_NOTHING)
            return;
        th_poll_pause();
    }
}

/* The test -------------------------------------------------------------------------------*/

/* No loss_report entry is left in the stream on the current master. */
static bool outbox_drained(const void *arg)
{
    const world *w = arg;
    int port = th_sentinel_master_port(&w->sentinel[0], MASTER_NAME);
    const char *script[] = {"EVAL",
                            "local n = 0 for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do "
                            "local f = e[2] for i = 1, #f, 2 do if f[i] == 'kind' and f[i + 1] == 'loss_report' "
                            "then n = n + 1 end end end return n",
                            "1", "cl:outbox"};
    char *n = port ? th_redis_cmd(&(th_proc){.port = port}, 4, script) : NULL;
    bool yes = n && strcmp(n, "0") == 0;
    free(n);
    return yes;
}

static void test_loss_reports_survive_a_redis_failover(void **state)
{
    world *w = *state;
    for (int i = 0; i < PEOPLE; i++) {
        if (i == KILL_AFTER) {
            kill(w->tw.redis.pid, SIGKILL);
            w->killed_at = th_now_ms();
            waitpid(w->tw.redis.pid, NULL, 0);
            w->tw.redis.pid = 0;
        }
        report(w, i);
        /* Bring the killed master back, as an operator would, as the
         * replica of the one the Sentinels promoted. */
        if (w->killed_at && w->tw.redis.pid == 0 && failed_over(w))
            assert_true(th_redis_start_replica(&w->tw.redis, w->tw.redis.dir, w->replica.port));
    }
    wait_for(failed_over, w, "the failover");
    if (w->tw.redis.pid == 0)
        assert_true(th_redis_start_replica(&w->tw.redis, w->tw.redis.dir, w->replica.port));
    wait_for(linked, &w->tw.redis, "the old master to follow the new one");
    wait_for(outbox_drained, w, "the outbox to deliver every report");

    int heard = 0, already = 0, said_done = 0, said_accepted = 0, said_unconfirmed = 0, sessions = 0;
    int unconfirmed_lost = 0;
    for (int i = 0; i < PEOPLE; i++) {
        person *p = &w->people[i];
        char ref[65];
        long deadline = th_now_ms() + WAIT_MS;
        /* A report heard as accepted or unconfirmed may still be on its way. */
        while (card_status(w, p->card, ref) != 4 && th_now_ms() < deadline)
            th_poll_pause();
        sessions += p->attempt;
        if (p->outcome == HEARD_REPORT) {
            heard++;
            said_done += !strcmp(p->said, "done");
            said_accepted += !strcmp(p->said, "accepted");
            said_unconfirmed += !strcmp(p->said, "unconfirmed");
            /* "Unconfirmed" told the caller it might not hold: check, and
             * report again if it did not. */
            if (!strcmp(p->said, "unconfirmed") && ref[0] == '\0')
                unconfirmed_lost++;
            else if (strcmp(ref, p->reference) != 0)
                fail_msg("caller %d heard %s %s, the registry holds \"%s\"", i, p->said, p->reference, ref);
        } else {
            already++;
            assert_true(ref[0] != '\0');
        }
    }
    long long applied = th_sim_applied(&w->tw.sim, "loss_reports");
    long long replays = th_sim_stat(&w->tw.sim, "replays");
    printf("failover: %d callers in %d sessions; heard %d (done %d, accepted %d, unconfirmed %d), "
           "%d landed unheard, %d unconfirmed and lost; registry applied %lld loss reports, %lld replays; "
           "%d failed hops; "
           "failover gap %ld ms (first failed hop to first good hop)\n",
           PEOPLE, sessions, heard, said_done, said_accepted, said_unconfirmed, already, unconfirmed_lost, applied, replays,
           w->failed_hops, w->first_good_hop && w->first_failed_hop ? w->first_good_hop - w->first_failed_hop : -1L);
    assert_int_equal(heard + already, PEOPLE);
    assert_int_equal(applied, PEOPLE - unconfirmed_lost); /* one per card: none lost, none twice */
    assert_true(w->first_failed_hop > 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_loss_reports_survive_a_redis_failover, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
