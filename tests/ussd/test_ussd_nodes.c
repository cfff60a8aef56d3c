/* test_ussd_nodes — any hop on any gateway. Two real cardline daemons share
 * one real redis-server and the real registry simulator; USSD sessions are
 * walked with each request sent to the other daemon than the one before:
 *   - a multi-page answer ([ussd] page_octets = 64 makes the shipped menus
 *     several pages) paged with `98` on alternating nodes, every request
 *     retried on the other node, and the pages compared with the same
 *     session walked on one node;
 *   - a held session (the registry slowed past answer_deadline_ms): the
 *     holding page on one node, its retry and the caller's replies while
 *     the hop still runs and after it ended on the other, the PIN checked
 *     once, every reply retried on the other node identically (the held
 *     request itself still a holding page after the answer came), and the
 *     menu after it seeing only the caller's new choice;
 *   - a node SIGKILLed with a session at a multi-page answer: the next
 *     page and the rest of the session on the other node.
 * Every wait is a bounded poll; nothing is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "world.h"

#define WAIT_MS 20000
#define NODES 2
#define WANG_ID "110101199003074514"
#define WANG_PIN "246810"
#define WANG_PHONE "+8613800000001"
#define HOLDING "CON 正在查询，请回复1继续"
#define MAX_PAGES 40

typedef struct {
    tw_world tw;                  /* Redis, the simulator, node 0 (tw.gw) */
    th_proc node1;                /* the second daemon */
    tw_world at[NODES];           /* each node's listener, for tw_call */
    char conf1[300];              /* node 1's config */
} world;

static void write_conf(const world *w, const char *path, int port, int node)
{
    th_write_filef(path,
                   "[log]\nlevel = info\nflush_ms = 0\n"
                   "[http]\nlisten = 127.0.0.1:%d\n"
                   "[redis]\nport = %d\n"
                   "[registry]\nurl = http://127.0.0.1:%d\ntimeout_ms = 5000\n"
                   "[dialplans]\ndir = %s/dialplans\n"
                   "[ussd]\nanswer_deadline_ms = 300\npage_octets = 64\n"
                   "hop_key_secret = the nodes' shared hop key secret\n" TH_USSD_SECRET_LINE
                   "[outbox]\nconsumer = node-%d\n"
                   "[workflows]\ndigest_secret = the nodes' shared digest secret\n"
                   "[session]\nhandler_timeout_ms = 8000\n"
                   "[gateway]\nnodes = %d\nshutdown_grace_ms = 3000\n",
                   port, w->tw.redis.port, w->tw.sim.port, CL_SOURCE_DIR, node, NODES);
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    *state = w;
    tw_init(&w->tw, "cl-ussd-nodes");
    if (!tw_start_servers(&w->tw, false, NULL, NULL))
        return -1;
    write_conf(w, w->tw.conf, w->tw.http_port, 0);
    w->at[0] = w->tw;
    w->at[1] = w->tw;
    w->at[1].http_port = th_free_port();
    snprintf(w->conf1, sizeof w->conf1, "%s/node1.conf", w->tw.dir);
    write_conf(w, w->conf1, w->at[1].http_port, 1);
    th_subdir(w->tw.dir, "gw1", w->node1.dir);
    const char *argv[] = {CL_GATEWAY_BIN, "--config", w->conf1, NULL};
    if (!tw_start_gateway(&w->tw, true, WAIT_MS) || !th_spawn(&w->node1, "cardline", argv) ||
        !th_wait_healthz(w->at[1].http_port, "\"status\":\"ok\"", WAIT_MS))
        return -1;
    return 0;
}

/* Both daemons exit cleanly (under the sanitizers: no leak). */
static int teardown(void **state)
{
    world *w = *state;
    int status = th_stop(&w->node1, WAIT_MS);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    clean = tw_stop(&w->tw, WAIT_MS) && clean;
    free(w);
    return clean ? 0 : -1;
}

/* One request of session `sid` to node `node`: its status must be 200. */
static char *hop(const world *w, int node, const char *sid, const char *text)
{
    char form[2048];
    long status = 0;
    tw_ussd_form(form, sizeof form, sid, WANG_PHONE, text);
    char *body = tw_call(&w->at[node], "/ussd", form, &status, WAIT_MS);
    if (status != 200)
        fail_msg("node %d, text \"%s\": status %ld, %s", node, text, status, body);
    return body;
}

/* The request on `node`, then its retry on the other: the same answer. */
static char *hop_and_retry(const world *w, int node, const char *sid, const char *text)
{
    char *body = hop(w, node, sid, text);
    char *again = hop(w, 1 - node, sid, text);
    assert_string_equal(again, body);
    free(again);
    return body;
}

static void append(char *text, size_t size, const char *input)
{
    size_t len = strlen(text);
    snprintf(text + len, size - len, "%s%s", len ? "*" : "", input);
}

static bool more_pages(const char *body)
{
    return strstr(body, "\n98 更多") || strstr(body, "\n98 More");
}

/* How a walk sends its requests. */
typedef struct {
    bool alternate;               /* each to the other node than the one before (else all to node 0) */
    bool retry;                   /* each retried on the other node */
} route;

/* One request of a walk on `node`, retried on the other when `how` says. */
static char *walk_hop(const world *w, const route *how, int node, const char *sid, const char *text)
{
    return how->retry ? hop_and_retry(w, node, sid, text) : hop(w, node, sid, text);
}

/* Pages a menu with 98 until its last page: `pages` gets every page's
 * body; each request goes to the node after the previous one (`node`,
 * advanced) when `how` alternates. */
static int page_through(const world *w, const route *how, const char *sid, char *text, size_t size, int *node,
                        char **pages, int n)
{
    while (more_pages(pages[n - 1])) {
        assert_true(n < MAX_PAGES);
        append(text, size, "98");
        pages[n++] = walk_hop(w, how, *node, sid, text);
        if (how->alternate)
            *node = 1 - *node;
    }
    return n;
}

/* A whole status check, every menu paged, as the caller sees it. */
static int walk(const world *w, const char *sid, const route *how, char **pages)
{
    static const char *const inputs[] = {"1", "1", WANG_ID, WANG_PIN, "2"};
    char text[1024] = "";
    int node = 0, n = 0;
    pages[n++] = walk_hop(w, how, node, sid, text);
    if (how->alternate)
        node = 1;
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        n = page_through(w, how, sid, text, sizeof text, &node, pages, n);
        append(text, sizeof text, inputs[i]);
        assert_true(n < MAX_PAGES);
        pages[n++] = walk_hop(w, how, node, sid, text);
        if (how->alternate)
            node = 1 - node;
    }
    return n;
}

/* The same session walked on one node, on alternating nodes (a node never
 * sees the request before the one it gets), and on alternating nodes with
 * every request retried on the other: the same pages. */
static void test_pages_on_alternating_nodes(void **state)
{
    world *w = *state;
    static const route one_node = {false, false}, alternating = {true, false}, retried = {true, true};
    char *one[MAX_PAGES], *both[MAX_PAGES], *again[MAX_PAGES];
    int n_one = walk(w, "nodes-one", &one_node, one);
    int n_both = walk(w, "nodes-both", &alternating, both);
    int n_again = walk(w, "nodes-again", &retried, again);
    int paged = 0;
    for (int i = 0; i < n_one; i++)
        paged += more_pages(one[i]);
    print_message("walked %d pages, %d of them ending in 98\n", n_one, paged);
    assert_true(paged >= 3);
    assert_memory_equal(one[n_one - 1], "END ", 4);
    assert_int_equal(n_both, n_one);
    assert_int_equal(n_again, n_one);
    for (int i = 0; i < n_one; i++) {
        assert_string_equal(both[i], one[i]);
        assert_string_equal(again[i], one[i]);
        free(one[i]);
        free(both[i]);
        free(again[i]);
    }
}

static void set_fault(const world *w, const char *json)
{
    assert_int_equal(th_http(w->tw.sim.port, "PUT", "/_sim/fault", json, NULL, NULL), 200);
}

/* Takes the language and status menus and the ID on alternating nodes,
 * paging through each on the node after. */
static int walk_to_pin(const world *w, const char *sid, char *text, size_t size)
{
    static const char *const inputs[] = {"1", "1", WANG_ID};
    static const route alternating = {true, false};
    char *pages[MAX_PAGES];
    int node = 0, n = 0;
    pages[n++] = hop(w, node, sid, text);
    node = 1;
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        n = page_through(w, &alternating, sid, text, size, &node, pages, n);
        append(text, size, inputs[i]);
        pages[n++] = hop(w, node, sid, text);
        node = 1 - node;
    }
    n = page_through(w, &alternating, sid, text, size, &node, pages, n);
    for (int i = 0; i < n; i++)
        free(pages[i]);
    return node;
}

static void test_held_session_on_the_other_node(void **state)
{
    world *w = *state;
    char text[1024] = "";
    int node = walk_to_pin(w, "nodes-held", text, sizeof text);
    long long before = th_sim_applied(&w->tw.sim, "pin_verifications");
    set_fault(w, "{\"delay_ms\": 2000, \"count\": 1, \"path_prefix\": \"/v1/\"}");
    append(text, sizeof text, WANG_PIN);
    char *held = hop(w, node, "nodes-held", text);
    assert_string_equal(held, HOLDING);
    free(held);
    char pin_text[1024];
    snprintf(pin_text, sizeof pin_text, "%s", text);
    held = hop(w, 1 - node, "nodes-held", pin_text);   /* its retry, while the hop runs */
    assert_string_equal(held, HOLDING);
    free(held);

    /* The caller replies 1 until the answer is there (bounded), each reply
     * on the other node than the one before, each retried on the other. */
    char *r = NULL;
    int holding = 0;
    do {
        free(r);
        assert_true(++holding < 100);
        struct timespec pause = {0, 100 * 1000000};  /* a caller's pace, not a timing assumption */
        nanosleep(&pause, NULL);
        node = 1 - node;
        append(text, sizeof text, "1");
        r = hop_and_retry(w, node, "nodes-held", text);
    } while (strcmp(r, HOLDING) == 0);
    print_message("%d replies to holding pages before the answer\n", holding);
    assert_true(holding >= 2);   /* at least one reply came while the hop ran */
    assert_non_null(strstr(r, "状态：正常"));
    assert_int_equal(th_sim_applied(&w->tw.sim, "pin_verifications"), before + 1);
    for (int n = 0; n < NODES; n++) {
        held = hop(w, n, "nodes-held", pin_text);          /* a late retry: still what it was answered */
        assert_string_equal(held, HOLDING);
        free(held);
    }
    int pages = 1;
    while (more_pages(r)) {
        free(r);
        assert_true(++pages < MAX_PAGES);
        node = 1 - node;
        append(text, sizeof text, "98");
        r = hop_and_retry(w, node, "nodes-held", text);
    }
    assert_non_null(strstr(r, "2 结束"));
    free(r);

    node = 1 - node;
    append(text, sizeof text, "2");              /* the menu sees only "2" */
    char *bye = hop_and_retry(w, node, "nodes-held", text);
    assert_string_equal(bye, "END 感谢使用，再见。");
    free(bye);
    assert_int_equal(th_sim_applied(&w->tw.sim, "pin_verifications"), before + 1);
}

/* Node 0 is SIGKILLed with a session standing at a multi-page answer: the
 * session goes on at node 1 from the page the caller saw. Last: node 0
 * stays down. */
static void test_session_outlives_its_node(void **state)
{
    world *w = *state;
    static const char *const inputs[] = {"1", "1", WANG_ID};
    static const route one_node = {false, false};
    char text[1024] = "";
    char *pages[MAX_PAGES];
    int node = 0, n = 0;
    pages[n++] = hop(w, 0, "nodes-killed", text);
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        n = page_through(w, &one_node, "nodes-killed", text, sizeof text, &node, pages, n);
        append(text, sizeof text, inputs[i]);
        pages[n++] = hop(w, 0, "nodes-killed", text);
    }
    n = page_through(w, &one_node, "nodes-killed", text, sizeof text, &node, pages, n);
    append(text, sizeof text, WANG_PIN);
    char *first = hop(w, 0, "nodes-killed", text);
    assert_true(more_pages(first));
    th_kill(&w->tw.gw);

    append(text, sizeof text, "98");
    char *second = hop(w, 1, "nodes-killed", text);
    assert_string_not_equal(second, first);
    assert_null(strstr(second, "回复有误"));
    char *again = hop(w, 1, "nodes-killed", text);
    assert_string_equal(again, second);
    while (more_pages(again)) {
        free(again);
        append(text, sizeof text, "98");
        again = hop(w, 1, "nodes-killed", text);
    }
    assert_non_null(strstr(again, "2 结束"));
    append(text, sizeof text, "2");
    char *bye = hop(w, 1, "nodes-killed", text);
    assert_string_equal(bye, "END 感谢使用，再见。");
    for (int i = 0; i < n; i++)
        free(pages[i]);
    free(first);
    free(second);
    free(again);
    free(bye);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages_on_alternating_nodes),
        cmocka_unit_test(test_held_session_on_the_other_node),
        cmocka_unit_test(test_session_outlives_its_node),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
