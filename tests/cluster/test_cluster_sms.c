/* SMS conversations through a real Kannel whose get-url goes through
 * HAProxy's TLS door (smsbox trusting only the test's certificate, as
 * configs/cluster/kannel.conf does); the gateway that served the last
 * message is SIGKILLed, and every conversation's next message is answered
 * by another as if nothing happened. Counts conversations continued and
 * lost (0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_world.h"
#include "kannel.h"

#define MT_WAIT_MS 15000
#define SERVICE "12333"

/* Demo people who read their card's status by SMS: sender and ID. */
static const struct {
    const char *phone;
    const char *id;
} people[] = {
    {"+8613800000001", "110101199003074514"},
    {"+8613800000002", "310104198506123025"},
    {"+8613800000009", "370102196807202922"},
};
#define PEOPLE (sizeof people / sizeof people[0])

typedef struct {
    cw_world *w;
    tk_kannel k;
} sms_cluster;

static int teardown(void **state);

static int setup(void **state)
{
    *state = NULL;
    if (!tk_available()) {
        fprintf(stderr, "kannel binaries missing: apt-get install kannel kannel-extras\n");
        return 0;
    }
    sms_cluster *c = calloc(1, sizeof *c);
    void *world = NULL;
    if (cw_setup(&world) != 0) { /* it stopped what it started */
        free(c);
        return -1;
    }
    c->w = world;
    *state = c;
    char url[200];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/sms/kannel?key=" TH_SMS_KEY "&from=%%p&to=%%P&text=%%a",
             c->w->haproxy.port);
    tk_options opt = {.get_url = url, .trusted_ca = c->w->ca};
    if (tk_start(&c->k, &opt))
        return 0;
    teardown(state); /* cmocka runs no teardown after a failed setup */
    return -1;
}

static int teardown(void **state)
{
    sms_cluster *c = *state;
    if (!c)
        return 0;
    tk_stop(&c->k);
    void *world = c->w;
    int rc = cw_teardown(&world);
    free(c);
    *state = NULL;
    return rc;
}

/* One MO and its answer: true when the answer holds `want`. */
static bool exchange(sms_cluster *c, const char *phone, const char *text, const char *want)
{
    tk_mt mt;
    if (!tk_mo(&c->k, phone, SERVICE, text) || !tk_wait_mt(&c->k, phone, MT_WAIT_MS, &mt)) {
        print_message("%s: no answer to a message\n", phone);
        return false;
    }
    bool ok = strstr(mt.text, want) != NULL;
    if (!ok)
        print_message("%s: wanted \"%s\", got \"%s\"\n", phone, want, mt.text);
    tk_mt_free(&mt);
    return ok;
}

/* Messages each gateway has taken from Kannel so far. */
static void sms_served(const cw_world *w, double out[CW_NODES])
{
    for (int i = 0; i < CW_NODES; i++)
        out[i] = w->node[i].killed ? 0 : cw_metric(w, i, "cardline_sms_requests_total");
}

static void sms_conversations_outlive_their_gateway(void **state)
{
    sms_cluster *c = *state;
    if (!c)
        skip();
    double before[CW_NODES], after[CW_NODES];
    int victim = -1;
    for (size_t p = 0; p < PEOPLE; p++) {
        sms_served(c->w, before);
        assert_true(exchange(c, people[p].phone, "CX", "请回复您的18位身份证号码"));
        sms_served(c->w, after);
        for (int i = 0; i < CW_NODES; i++)
            if (after[i] > before[i])
                victim = i;
    }
    assert_true(victim >= 0);
    cw_kill_node(c->w, victim);

    int continued = 0, lost = 0;
    for (size_t p = 0; p < PEOPLE; p++) {
        if (exchange(c, people[p].phone, people[p].id, "状态："))
            continued++;
        else
            lost++;
    }
    print_message("killed %s, which served the last message, mid-conversation: %d of %zu conversations "
                  "continued, %d lost\n",
                  c->w->node[victim].name, continued, PEOPLE, lost);
    assert_int_equal(lost, 0);
    assert_int_equal(continued, (int)PEOPLE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sms_conversations_outlive_their_gateway, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
