/* test_store_sentinel — the store behind Redis Sentinels and its durable
 * lane, against real servers: a master, a replica and three Sentinels
 * (redis-server --sentinel). Discovery through the Sentinels past one
 * that answers garbage, a forced failover and a killed master followed,
 * a replica named by a stale Sentinel refused by ROLE, READONLY after a
 * master turned replica, and durable writes acknowledged by the replica
 * and, with the replica stopped, reported short without holding up the
 * main connection. The hostile Sentinel is a tiny in-process server with
 * canned answers. Loops wait for events with bounded deadlines; no
 * assertion depends on timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "harness.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "store.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 30000
#define MASTER "cardline"
#define SENTINELS 3

typedef struct {
    struct evconnlistener *listener;
    int port;
    const char *answers[4]; /* RESP answers to successive questions; the last repeats */
    int nanswers;
    int questions;          /* get-master-addr-by-name questions received */
    struct bufferevent *conns[256]; /* its connections, NULL once closed */
    int nconns;
} fake_sentinel;

typedef struct {
    th_proc redis[2];               /* [0] starts as master, [1] as its replica */
    th_proc sentinel[SENTINELS];    /* real Sentinels, when started */
    struct event_base *base;
    struct event *tick;
    fake_sentinel fake;
    FILE *log;                      /* the captured log */
} fixture;

typedef struct {
    int calls;
    store_status st;
    char text[64];      /* the reply: status/string text, "ERR:<code>" for an error */
    store_durability d;
    int order;          /* when it ran, by a counter shared in a test */
} result;

static int call_order;

/* Fake Sentinel -----------------------------------------------------------------*/

static void fake_read(struct bufferevent *bev, void *arg)
{
    fake_sentinel *fk = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    char *data = malloc(len + 1);
    evbuffer_remove(in, data, len);
    data[len] = '\0';
    if (strstr(data, "get-master-addr-by-name")) {
        int i = fk->questions < fk->nanswers ? fk->questions : fk->nanswers - 1;
        fk->questions++;
        bufferevent_write(bev, fk->answers[i], strlen(fk->answers[i]));
    }
    free(data);
}

static void fake_event(struct bufferevent *bev, short what, void *arg)
{
    fake_sentinel *fk = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    for (int i = 0; i < fk->nconns; i++)
        if (fk->conns[i] == bev)
            fk->conns[i] = NULL;
    bufferevent_free(bev);
}

static void fake_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    (void)sa, (void)len;
    struct bufferevent *bev =
        bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    fake_sentinel *fk = arg;
    assert_true(fk->nconns < 256);
    fk->conns[fk->nconns++] = bev;
    bufferevent_setcb(bev, fake_read, NULL, fake_event, arg);
    bufferevent_enable(bev, EV_READ);
}

static void fake_start(fixture *f)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    f->fake.listener = evconnlistener_new_bind(f->base, fake_accept, &f->fake,
                                               LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
                                               (struct sockaddr *)&sin, sizeof sin);
    assert_non_null(f->fake.listener);
    struct sockaddr_in bound;
    socklen_t blen = sizeof bound;
    getsockname(evconnlistener_get_fd(f->fake.listener), (struct sockaddr *)&bound, &blen);
    f->fake.port = ntohs(bound.sin_port);
}

/* "*2 $ip $port" as a Sentinel answers. */
static char *address_answer(const char *ip, int port)
{
    char p[16], *out;
    snprintf(p, sizeof p, "%d", port);
    assert_true(asprintf(&out, "*2\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(ip), ip, strlen(p), p) > 0);
    return out;
}

/* Real servers ------------------------------------------------------------------*/

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

static bool replica_linked(const void *arg)
{
    const th_proc *replica = arg;
    return th_redis_info_has(replica->port, "replication", "master_link_status:up");
}

static bool sentinels_settled(const void *arg)
{
    const fixture *f = arg;
    return th_sentinels_settled(f->sentinel, SENTINELS, MASTER);
}

static int setup_pair(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    th_mkdtemp(f->redis[0].dir, "cl-sentinel-m");
    th_mkdtemp(f->redis[1].dir, "cl-sentinel-r");
    f->base = event_base_new();
    f->tick = event_new(f->base, -1, EV_PERSIST, tick, NULL);
    struct timeval every = {0, 10000};
    event_add(f->tick, &every);
    metrics_reset();
    f->log = tmpfile();
    log_set_stream(f->log);
    *state = f;
    if (!th_redis_start(&f->redis[0], f->redis[0].dir, true) ||
        !th_redis_start_replica(&f->redis[1], f->redis[1].dir, f->redis[0].port))
        return -1;
    return th_poll_until(replica_linked, &f->redis[1], WAIT_MS) ? 0 : -1;
}

static int setup_sentinels(void **state)
{
    if (setup_pair(state) != 0)
        return -1;
    fixture *f = *state;
    for (int i = 0; i < SENTINELS; i++) {
        th_mkdtemp(f->sentinel[i].dir, "cl-sentinel-s");
        if (!th_sentinel_start(&f->sentinel[i], f->sentinel[i].dir, MASTER, f->redis[0].port, 1000, 2000))
            return -1;
    }
    return th_poll_until(sentinels_settled, f, WAIT_MS) ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < SENTINELS; i++) {
        th_stop(&f->sentinel[i], 2000);
        if (f->sentinel[i].dir[0])
            th_rmdir(f->sentinel[i].dir);
    }
    for (int i = 0; i < 2; i++) {
        if (f->redis[i].pid > 0)
            kill(f->redis[i].pid, SIGCONT);
        th_stop(&f->redis[i], 2000);
        th_rmdir(f->redis[i].dir);
    }
    if (f->fake.listener)
        evconnlistener_free(f->fake.listener);
    for (int i = 0; i < f->fake.nconns; i++)
        if (f->fake.conns[i])
            bufferevent_free(f->fake.conns[i]);
    event_free(f->tick);
    event_base_free(f->base);
    log_set_stream(stderr);
    fclose(f->log);
    free(f);
    return 0;
}

/* The store ----------------------------------------------------------------------*/

/* `host`/`port` point at the replica: a store that ignored the Sentinels
 * would meet READONLY on every write. */
static store_options sentinel_options(const fixture *f, const char *list)
{
    store_options o;
    store_options_default(&o);
    o.port = f->redis[1].port;
    o.op_timeout_ms = 2000;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 200;
    o.ping_interval_ms = 200;
    o.sentinels = list;
    return o;
}

static char *sentinel_list(const fixture *f, int fake_port)
{
    char *out = NULL;
    if (fake_port)
        assert_true(asprintf(&out, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", fake_port,
                             f->sentinel[0].port, f->sentinel[1].port, f->sentinel[2].port) > 0);
    else
        assert_true(asprintf(&out, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", f->sentinel[0].port,
                             f->sentinel[1].port, f->sentinel[2].port) > 0);
    return out;
}

static void keep_reply(result *r, store_status st, const redisReply *reply)
{
    r->calls++;
    r->st = st;
    r->order = ++call_order;
    r->text[0] = '\0';
    if (reply && reply->type == REDIS_REPLY_ERROR)
        snprintf(r->text, sizeof r->text, "ERR:%.*s", (int)strcspn(reply->str, " "), reply->str);
    else if (reply && (reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_STRING))
        snprintf(r->text, sizeof r->text, "%.*s", (int)reply->len, reply->str);
}

static void on_reply(store_status st, const redisReply *reply, void *arg)
{
    keep_reply(arg, st, reply);
}

static void on_durable(store_status st, const redisReply *reply, store_durability d, void *arg)
{
    result *r = arg;
    keep_reply(r, st, reply);
    r->d = d;
}

static result command(fixture *f, store *s, int argc, const char **argv)
{
    result r = {0};
    store_command(s, argc, argv, NULL, on_reply, &r);
    assert_true(tl_run_until_count(f->base, &r.calls, 1, WAIT_MS));
    return r;
}

static result durable(fixture *f, store *s, int argc, const char **argv)
{
    result r = {0};
    store_command_durable(s, argc, argv, NULL, on_durable, &r);
    assert_true(tl_run_until_count(f->base, &r.calls, 1, WAIT_MS));
    return r;
}

typedef struct {
    fixture *f;
    store *s;
    const char *key;
    const char *value;
    int port;
} write_probe;

/* Writes key=value through the store until the server on `port`, a
 * master before the write, holds it: the store has reached that server. */
static bool written_on(const void *arg)
{
    const write_probe *w = arg;
    /* Master first: a replica would hold a write made on its master, and
     * one promoted after the write would too. */
    if (!store_connected(w->s) || !th_redis_info_has(w->port, "replication", "role:master"))
        return false;
    result r = {0};
    const char *set[] = {"SET", w->key, w->value};
    store_command(w->s, 3, set, NULL, on_reply, &r);
    if (!tl_run_until_count(w->f->base, &r.calls, 1, 5000) || r.st != STORE_OK || strcmp(r.text, "OK") != 0)
        return false;
    const char *get[] = {"GET", w->key};
    char *got = th_redis_cmd(&(th_proc){.port = w->port}, 2, get);
    bool yes = got && strcmp(got, w->value) == 0;
    free(got);
    return yes;
}

static void wait_written_on(fixture *f, store *s, const char *key, const char *value, int port)
{
    write_probe w = {f, s, key, value, port};
    assert_true(tl_run_until(f->base, written_on, &w, WAIT_MS));
}

static char *log_text(fixture *f)
{
    fflush(f->log);
    long n = ftell(f->log);
    char *buf = calloc(1, (size_t)n + 1);
    rewind(f->log);
    assert_int_equal(fread(buf, 1, (size_t)n, f->log), (size_t)n);
    return buf;
}

/* Fails the test, showing the captured log, unless `needle` is in it. */
static void assert_logged(fixture *f, const char *needle)
{
    char *text = log_text(f);
    bool found = strstr(text, needle) != NULL;
    if (!found)
        fprintf(stderr, "--- log without %s:\n%s", needle, text);
    free(text);
    assert_true(found);
}

static double counter(const char *name, const char *labels)
{
    return metrics_value(metrics_counter(name, "", labels));
}

/* Tests --------------------------------------------------------------------------*/

static void test_discovery_skips_a_garbage_answer(void **state)
{
    fixture *f = *state;
    fake_start(f);
    f->fake.answers[0] = "*2\r\n$9\r\nnot.an.ip\r\n$5\r\n70000\r\n";
    f->fake.nanswers = 1;
    char *list = sentinel_list(f, f->fake.port);
    store_options o = sentinel_options(f, list);
    store *s = store_new(f->base, &o);
    assert_non_null(s);
    wait_written_on(f, s, "found", "1", f->redis[0].port);
    assert_true(f->fake.questions >= 1);
    assert_logged(f, "event=store.sentinel_failed");
    assert_logged(f, "why=bad_answer");
    char want[64];
    snprintf(want, sizeof want, "event=store.master_found host=\"127.0.0.1\" port=%d", f->redis[0].port);
    assert_logged(f, want);
    store_free(s);
    free(list);
}

static void test_failover_and_killed_master_followed(void **state)
{
    fixture *f = *state;
    char *list = sentinel_list(f, 0);
    store_options o = sentinel_options(f, list);
    store *s = store_new(f->base, &o);
    assert_non_null(s);
    wait_written_on(f, s, "before", "1", f->redis[0].port);
    assert_true(counter("cardline_store_failovers_total", NULL) == 0);

    /* A forced failover: the replica becomes the master, announced by
     * +switch-master, and the old master is turned into its replica. */
    const char *failover[] = {"SENTINEL", "FAILOVER", MASTER};
    char *ok = th_redis_cmd(&f->sentinel[0], 3, failover);
    assert_string_equal(ok, "OK");
    free(ok);
    wait_written_on(f, s, "after_failover", "2", f->redis[1].port);
    assert_logged(f, "event=store.switch_master");
    assert_true(counter("cardline_store_failovers_total", NULL) >= 1);

    /* The new master is killed: the Sentinels agree it is down and promote
     * the old one again once it is in sync. */
    assert_true(th_poll_until(replica_linked, &f->redis[0], WAIT_MS));
    th_kill(&f->redis[1]);
    wait_written_on(f, s, "after_kill", "3", f->redis[0].port);
    assert_true(counter("cardline_store_failovers_total", NULL) >= 2);
    store_free(s);
    free(list);
}

static void test_replica_refused_and_readonly_reasked(void **state)
{
    fixture *f = *state;
    fake_start(f);
    char *replica = address_answer("127.0.0.1", f->redis[1].port);
    char *master = address_answer("127.0.0.1", f->redis[0].port);
    /* A stale Sentinel names the replica first: ROLE refuses it. */
    f->fake.answers[0] = replica;
    f->fake.answers[1] = master;
    f->fake.answers[2] = replica;
    f->fake.nanswers = 3;
    char list[64];
    snprintf(list, sizeof list, "127.0.0.1:%d", f->fake.port);
    store_options o = sentinel_options(f, list);
    o.port = f->redis[0].port; /* here the direct address is the master: only a re-ask finds the new one */
    store *s = store_new(f->base, &o);
    assert_non_null(s);
    wait_written_on(f, s, "first", "1", f->redis[0].port);
    assert_int_equal(f->fake.questions, 2);
    assert_logged(f, "event=store.not_master");

    /* The roles swap behind the store's back: its next write meets
     * READONLY, and it asks again. */
    char port[16];
    snprintf(port, sizeof port, "%d", f->redis[1].port);
    const char *promote[] = {"REPLICAOF", "NO", "ONE"};
    const char *demote[] = {"REPLICAOF", "127.0.0.1", port};
    char *ok = th_redis_cmd(&f->redis[1], 3, promote);
    free(ok);
    ok = th_redis_cmd(&f->redis[0], 3, demote);
    free(ok);
    const char *set[] = {"SET", "second", "2"};
    result r = command(f, s, 3, set);
    assert_int_equal(r.st, STORE_OK);
    assert_true(strncmp(r.text, "ERR:", 4) == 0); /* READONLY, or LOADING while it syncs */
    wait_written_on(f, s, "third", "3", f->redis[1].port);
    assert_int_equal(f->fake.questions, 3);
    assert_logged(f, "event=store.reask");
    store_free(s);
    free(replica);
    free(master);
}

/* A store connected to the master directly, waiting for `replicas`. */
static store *direct_store(fixture *f, int replicas)
{
    store_options o;
    store_options_default(&o);
    o.port = f->redis[0].port;
    o.op_timeout_ms = 2000;
    o.reconnect_min_ms = 20;
    o.ping_interval_ms = 200;
    o.replicas = replicas;
    o.replica_wait_ms = 1500;
    store *s = store_new(f->base, &o);
    assert_non_null(s);
    assert_true(tl_wait_store(f->base, s, WAIT_MS));
    return s;
}

static void test_durable_writes_ok_then_short(void **state)
{
    fixture *f = *state;
    store *s = direct_store(f, 1);

    const char *set_a[] = {"SET", "a", "1"};
    result r = durable(f, s, 3, set_a);
    assert_int_equal(r.st, STORE_OK);
    assert_string_equal(r.text, "OK");
    assert_int_equal(r.d.acked, 1);
    assert_true(r.d.replicated);

    /* The replica stops: WAIT gives up after replica_wait_ms and says so,
     * while the main connection keeps answering meanwhile. */
    kill(f->redis[1].pid, SIGSTOP);
    enum { N = 3 };
    result many[N] = {{0}}, probe = {0};
    const char *set_b[] = {"SET", "b", "2"};
    call_order = 0;
    for (int i = 0; i < N; i++)
        store_command_durable(s, 3, set_b, NULL, on_durable, &many[i]);
    const char *get[] = {"GET", "a"};
    store_command(s, 2, get, NULL, on_reply, &probe);
    assert_true(tl_run_until_count(f->base, &many[N - 1].calls, 1, WAIT_MS));
    assert_int_equal(probe.calls, 1);
    assert_int_equal(probe.order, 1); /* before any durable write's answer */
    assert_string_equal(probe.text, "1");
    for (int i = 0; i < N; i++) {
        assert_int_equal(many[i].calls, 1);
        assert_int_equal(many[i].st, STORE_OK);
        assert_string_equal(many[i].text, "OK");
        assert_int_equal(many[i].d.acked, 0);
        assert_false(many[i].d.replicated);
    }
    const char *get_b[] = {"GET", "b"};
    char *b = th_redis_cmd(&f->redis[0], 2, get_b);
    assert_string_equal(b, "2");
    free(b);
    assert_true(counter("cardline_store_replica_wait_total", "result=\"ok\"") == 1);
    assert_true(counter("cardline_store_replica_wait_total", "result=\"short\"") == N);
    kill(f->redis[1].pid, SIGCONT);
    store_free(s);
}

static void test_durable_without_replicas_is_a_command(void **state)
{
    fixture *f = *state;
    store *s = direct_store(f, 0);
    const char *set[] = {"SET", "plain", "1"};
    result r = durable(f, s, 3, set);
    assert_int_equal(r.st, STORE_OK);
    assert_true(r.d.replicated);
    assert_int_equal(r.d.acked, 0);
    /* One connection: the store's, besides this query. */
    const char *list[] = {"CLIENT", "LIST"};
    char *clients = th_redis_cmd(&f->redis[0], 2, list);
    assert_int_equal(th_count(clients, "cmd="), 2 + 1); /* + the replica's link */
    free(clients);
    store_free(s);
}

static void test_bad_sentinel_lists_refused(void **state)
{
    fixture *f = *state;
    const char *bad[] = {"127.0.0.1", "localhost:26379", "127.0.0.1:0", "127.0.0.1:26379,", "[::1:26379"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        store_options o = sentinel_options(f, bad[i]);
        assert_null(store_new(f->base, &o));
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_sentinel_lists_refused, setup_pair, teardown),
        cmocka_unit_test_setup_teardown(test_durable_without_replicas_is_a_command, setup_pair, teardown),
        cmocka_unit_test_setup_teardown(test_durable_writes_ok_then_short, setup_pair, teardown),
        cmocka_unit_test_setup_teardown(test_replica_refused_and_readonly_reasked, setup_pair, teardown),
        cmocka_unit_test_setup_teardown(test_discovery_skips_a_garbage_answer, setup_sentinels, teardown),
        cmocka_unit_test_setup_teardown(test_failover_and_killed_master_followed, setup_sentinels, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
