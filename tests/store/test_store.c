/* test_store — the session store against a real redis-server: round trips,
 * events appended with saves, compare-and-set races, stored garbage, refused requests, a killed, a hung
 * and an absent server, AUTH and SELECT, and store_free at awkward moments.
 * The loop is driven until the awaited callbacks have run, with a bounded
 * deadline; no assertion depends on timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "harness.h"
#include "loop.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 15000
#define RACERS 50

typedef struct {
    th_proc redis;           /* the real server (pid 0 when not running) */
    struct event_base *base; /* the loop the stores run on */
    struct event *tick;      /* wakes the loop so deadlines are checked */
} fixture;

typedef struct {
    int calls;          /* how many times the callback ran */
    store_status st;    /* the last status reported */
    uint64_t rev;       /* the last revision reported */
    json_t *doc;        /* load: the document, load_events: the array (kept) */
} result;

/* Callbacks -------------------------------------------------------------------*/

static void on_load(store_status st, json_t *doc, uint64_t rev, void *arg)
{
    result *r = arg;
    r->calls++;
    r->st = st;
    r->rev = rev;
    if (doc) {
        json_decref(r->doc);
        r->doc = json_incref(doc);
    }
}

static void on_save(store_status st, uint64_t rev, void *arg)
{
    result *r = arg;
    r->calls++;
    r->st = st;
    r->rev = rev;
}

static void on_events(store_status st, json_t *events, void *arg)
{
    result *r = arg;
    r->calls++;
    r->st = st;
    if (events) {
        json_decref(r->doc);
        r->doc = json_incref(events);
    }
}

static void on_delete(store_status st, void *arg)
{
    result *r = arg;
    r->calls++;
    r->st = st;
}

/* Driving the loop ------------------------------------------------------------*/

typedef struct {
    const result *r; /* first of n results */
    int n;           /* how many */
} result_set;

static bool all_called(const void *arg)
{
    const result_set *set = arg;
    for (int i = 0; i < set->n; i++)
        if (set->r[i].calls == 0)
            return false;
    return true;
}

static void wait_all(fixture *f, const result *r, int n)
{
    result_set set = {r, n};
    assert_true(tl_run_until(f->base, all_called, &set, WAIT_MS));
}

/* One operation at a time: also checks the callback is never synchronous. */

/* The caller owns r.doc. */
static result do_load_keep(fixture *f, store *s, const char *id)
{
    result r = {0};
    store_load(s, id, on_load, &r);
    assert_int_equal(r.calls, 0);
    wait_all(f, &r, 1);
    return r;
}

static result do_load(fixture *f, store *s, const char *id)
{
    result r = do_load_keep(f, s, id);
    json_decref(r.doc);
    r.doc = NULL;
    return r;
}

static result do_save(fixture *f, store *s, const char *id, const char *json,
                      uint64_t expected, int ttl)
{
    result r = {0};
    json_t *doc = json_loads(json, 0, NULL);
    assert_non_null(doc);
    store_save(s, id, doc, expected, ttl, NULL, on_save, &r);
    json_decref(doc);
    assert_int_equal(r.calls, 0);
    wait_all(f, &r, 1);
    return r;
}

static result do_save_events(fixture *f, store *s, const char *id, const char *json,
                             uint64_t expected, int ttl, const store_events *events)
{
    result r = {0};
    json_t *doc = json_loads(json, 0, NULL);
    assert_non_null(doc);
    store_save(s, id, doc, expected, ttl, events, on_save, &r);
    json_decref(doc);
    assert_int_equal(r.calls, 0);
    wait_all(f, &r, 1);
    return r;
}

/* The caller owns r.doc. */
static result do_load_events(fixture *f, store *s, const char *id)
{
    result r = {0};
    store_load_events(s, id, on_events, &r);
    assert_int_equal(r.calls, 0);
    wait_all(f, &r, 1);
    return r;
}

/* The stored events joined by "|", or "NOT_FOUND" / "BAD_DATA" / ... */
static char *events_text(fixture *f, store *s, const char *id)
{
    result r = do_load_events(f, s, id);
    char buf[4096] = "";
    if (r.st != STORE_OK) {
        assert_null(r.doc);
        snprintf(buf, sizeof buf, "%s", store_status_name(r.st));
    }
    size_t i;
    json_t *e;
    json_array_foreach(r.doc, i, e) {
        assert_true(json_is_string(e));
        if (i)
            strcat(buf, "|");
        strcat(buf, json_string_value(e));
    }
    json_decref(r.doc);
    return strdup(buf);
}

static void assert_events(fixture *f, store *s, const char *id, const char *want)
{
    char *got = events_text(f, s, id);
    assert_string_equal(got, want);
    free(got);
}

static result do_delete(fixture *f, store *s, const char *id)
{
    result r = {0};
    store_delete(s, id, on_delete, &r);
    assert_int_equal(r.calls, 0);
    wait_all(f, &r, 1);
    return r;
}

static void assert_loaded(fixture *f, store *s, const char *id, const char *json, uint64_t rev)
{
    result r = do_load_keep(f, s, id);
    assert_int_equal(r.st, STORE_OK);
    assert_int_equal(r.rev, rev);
    json_t *want = json_loads(json, 0, NULL);
    assert_true(json_equal(r.doc, want));
    json_decref(want);
    json_decref(r.doc);
}

/* Servers and stores ----------------------------------------------------------*/

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

static int setup_bare(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    th_mkdtemp(f->redis.dir, "cl-store");
    f->base = event_base_new();
    f->tick = event_new(f->base, -1, EV_PERSIST, tick, NULL);
    struct timeval every = {0, 10000};
    event_add(f->tick, &every);
    metrics_reset();
    *state = f;
    return 0;
}

static int setup_redis(void **state)
{
    setup_bare(state);
    fixture *f = *state;
    return th_redis_start(&f->redis, f->redis.dir, true) ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->redis.pid > 0)
        kill(f->redis.pid, SIGCONT);
    th_stop(&f->redis, 2000);
    th_rmdir(f->redis.dir);
    event_free(f->tick);
    event_base_free(f->base);
    log_set_stream(stderr);
    free(f);
    return 0;
}

static store_options test_options(int port)
{
    store_options o;
    store_options_default(&o);
    o.port = port;
    o.op_timeout_ms = 3000;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 200;
    o.ping_interval_ms = 200;
    return o;
}

static store *connected_store(fixture *f, store_options o)
{
    store *s = store_new(f->base, &o);
    assert_non_null(s);
    assert_true(tl_wait_store(f->base, s, WAIT_MS));
    return s;
}

static char *redis_text(fixture *f, int argc, const char **argv)
{
    char *out = th_redis_cmd(&f->redis, argc, argv);
    assert_non_null(out);
    return out;
}

static void assert_redis(fixture *f, const char *want, int argc, const char **argv)
{
    char *got = redis_text(f, argc, argv);
    assert_string_equal(got, want);
    free(got);
}

static double ops_count(const char *op, const char *result_name)
{
    char labels[64];
    snprintf(labels, sizeof labels, "op=\"%s\",result=\"%s\"", op, result_name);
    return metrics_value(metrics_counter("cardline_store_ops_total", "", labels));
}

static double connected_gauge(void)
{
    return metrics_value(metrics_gauge("cardline_store_connected", "", NULL));
}

static char *read_all(FILE *fp)
{
    fflush(fp);
    long n = ftell(fp);
    char *buf = calloc(1, (size_t)n + 1);
    rewind(fp);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    return buf;
}

typedef struct {
    FILE *fp;           /* the captured log */
    const char *needle; /* text awaited in it */
} log_wait;

static bool log_contains(const void *arg)
{
    const log_wait *w = arg;
    char *text = read_all(w->fp);
    bool found = strstr(text, w->needle) != NULL;
    free(text);
    return found;
}

static void wait_log(fixture *f, FILE *fp, const char *needle)
{
    log_wait w = {fp, needle};
    assert_true(tl_run_until(f->base, log_contains, &w, WAIT_MS));
}

/* Round trip, TTL, not found, metrics ----------------------------------------*/

static void test_round_trip(void **state)
{
    fixture *f = *state;
    FILE *log = tmpfile();
    log_set_stream(log);
    store *s = connected_store(f, test_options(f->redis.port));
    assert_int_equal(connected_gauge(), 1);

    result r = do_save(f, s, "sess-1", "{\"node\":\"menu\",\"marker\":\"DOC-CONTENT-7731\"}", 0, 120);
    assert_int_equal(r.st, STORE_OK);
    assert_int_equal(r.rev, 1);
    assert_loaded(f, s, "sess-1", "{\"node\":\"menu\",\"marker\":\"DOC-CONTENT-7731\"}", 1);

    const char *ttl[] = {"TTL", "cl:s:sess-1"};
    char *left = redis_text(f, 2, ttl);
    assert_in_range(atoi(left), 1, 120);
    free(left);
    const char *rev[] = {"HGET", "cl:s:sess-1", "rev"};
    assert_redis(f, "1", 3, rev);

    r = do_save(f, s, "sess-1", "{\"node\":\"pin\"}", 1, 300);
    assert_int_equal(r.st, STORE_OK);
    assert_int_equal(r.rev, 2);
    assert_loaded(f, s, "sess-1", "{\"node\":\"pin\"}", 2);
    left = redis_text(f, 2, ttl);
    assert_in_range(atoi(left), 121, 300);
    free(left);

    r = do_save(f, s, "sess-1", "{\"node\":\"stale\"}", 1, 300);
    assert_int_equal(r.st, STORE_CONFLICT);
    assert_int_equal(r.rev, 2);
    assert_loaded(f, s, "sess-1", "{\"node\":\"pin\"}", 2);

    assert_int_equal(do_delete(f, s, "sess-1").st, STORE_OK);
    r = do_load(f, s, "sess-1");
    assert_int_equal(r.st, STORE_NOT_FOUND);
    assert_int_equal(r.rev, 0);
    assert_null(r.doc);
    assert_int_equal(do_delete(f, s, "sess-1").st, STORE_NOT_FOUND);
    r = do_save(f, s, "never-made", "{}", 4, 60);
    assert_int_equal(r.st, STORE_CONFLICT);
    assert_int_equal(r.rev, 0);

    assert_int_equal(ops_count("save", "ok"), 2);
    assert_int_equal(ops_count("save", "conflict"), 2);
    assert_int_equal(ops_count("load", "ok"), 3);
    assert_int_equal(ops_count("load", "not_found"), 1);
    assert_int_equal(ops_count("delete", "ok"), 1);
    assert_int_equal(ops_count("delete", "not_found"), 1);
    store_free(s);
    assert_int_equal(connected_gauge(), 0);

    char *text = read_all(log);
    assert_non_null(strstr(text, "event=store.connected"));
    assert_null(strstr(text, "DOC-CONTENT-7731"));
    assert_null(strstr(text, "sess-1"));
    free(text);
    fclose(log);
}

/* Events appended with saves ---------------------------------------------------*/

#define SAME_EXPIRY_SLACK_MS 100

static void assert_same_expiry(fixture *f, const char *id)
{
    char key[64], ekey[64];
    snprintf(key, sizeof key, "cl:s:%s", id);
    snprintf(ekey, sizeof ekey, "cl:e:%s", id);
    const char *sess[] = {"PEXPIRETIME", key};
    const char *list[] = {"PEXPIRETIME", ekey};
    char *a = redis_text(f, 2, sess), *b = redis_text(f, 2, list);
    long long sess_at = atoll(a), list_at = atoll(b);
    free(a);
    free(b);
    assert_true(sess_at > 0 && list_at > 0);
    /* Set by one script, but Redis 7.0 reads its clock at each EXPIRE. */
    assert_true(llabs(sess_at - list_at) <= SAME_EXPIRY_SLACK_MS);
}

static void test_events_saved_and_trimmed(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    const char *first[] = {"start main.welcome 1", "input main.menu 2 1", "result x.y 3 ok"};
    store_events ev = {first, 3, 4};
    assert_int_equal(do_save_events(f, s, "ev", "{\"n\":1}", 0, 120, &ev).st, STORE_OK);
    assert_events(f, s, "ev", "start main.welcome 1|input main.menu 2 1|result x.y 3 ok");
    assert_same_expiry(f, "ev");

    /* Appended after the stored ones, then only the newest `keep` stay. */
    const char *second[] = {"input a.b 4 9", "timeout a.b 5"};
    ev = (store_events){second, 2, 4};
    assert_int_equal(do_save_events(f, s, "ev", "{\"n\":2}", 1, 300, &ev).st, STORE_OK);
    assert_events(f, s, "ev", "input main.menu 2 1|result x.y 3 ok|input a.b 4 9|timeout a.b 5");
    const char *llen[] = {"LLEN", "cl:e:ev"};
    assert_redis(f, "4", 2, llen);
    assert_same_expiry(f, "ev");

    /* A save without events keeps the list and gives it the session's TTL. */
    assert_int_equal(do_save(f, s, "ev", "{\"n\":3}", 2, 600).st, STORE_OK);
    assert_events(f, s, "ev", "input main.menu 2 1|result x.y 3 ok|input a.b 4 9|timeout a.b 5");
    assert_same_expiry(f, "ev");
    const char *ttl[] = {"TTL", "cl:e:ev"};
    char *left = redis_text(f, 2, ttl);
    assert_in_range(atoi(left), 301, 600);
    free(left);

    /* No events but a keep: trimmed; keep 0 empties the list. */
    ev = (store_events){NULL, 0, 1};
    assert_int_equal(do_save_events(f, s, "ev", "{\"n\":4}", 3, 600, &ev).st, STORE_OK);
    assert_events(f, s, "ev", "timeout a.b 5");
    ev = (store_events){second, 2, 0};
    assert_int_equal(do_save_events(f, s, "ev", "{\"n\":5}", 4, 600, &ev).st, STORE_OK);
    assert_events(f, s, "ev", "");
    const char *exists[] = {"EXISTS", "cl:e:ev"};
    assert_redis(f, "0", 2, exists);
    assert_loaded(f, s, "ev", "{\"n\":5}", 5);

    /* Events of up to STORE_MAX_SAVE_EVENTS and STORE_MAX_EVENT_BYTES, UTF-8. */
    char longest[STORE_MAX_EVENT_BYTES + 1];
    memset(longest, 'e', STORE_MAX_EVENT_BYTES);
    longest[STORE_MAX_EVENT_BYTES] = '\0';
    const char *many[STORE_MAX_SAVE_EVENTS];
    for (int i = 0; i < STORE_MAX_SAVE_EVENTS; i++)
        many[i] = i == 0 ? longest : "input \xe4\xbc\x9a.\xe8\xaf\x9d 6 \xe4\xbd\xa0";
    ev = (store_events){many, STORE_MAX_SAVE_EVENTS, STORE_MAX_EVENTS_KEPT};
    assert_int_equal(do_save_events(f, s, "ev", "{}", 5, 600, &ev).st, STORE_OK);
    result r = do_load_events(f, s, "ev");
    assert_int_equal(r.st, STORE_OK);
    assert_int_equal(json_array_size(r.doc), STORE_MAX_SAVE_EVENTS);
    assert_string_equal(json_string_value(json_array_get(r.doc, 0)), longest);
    assert_string_equal(json_string_value(json_array_get(r.doc, 1)), many[1]);
    json_decref(r.doc);

    assert_int_equal(ops_count("load_events", "ok"), 6);
    store_free(s);
}

static void test_conflict_appends_nothing(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    const char *one[] = {"start main.welcome 1"};
    store_events ev = {one, 1, 20};
    assert_int_equal(do_save_events(f, s, "cas", "{\"w\":1}", 0, 60, &ev).st, STORE_OK);

    const char *lost[] = {"input main.menu 2 LOSER"};
    ev = (store_events){lost, 1, 20};
    result r = do_save_events(f, s, "cas", "{\"w\":2}", 0, 60, &ev);
    assert_int_equal(r.st, STORE_CONFLICT);
    assert_int_equal(r.rev, 1);
    ev.keep = 0; /* would empty the list if it ran */
    assert_int_equal(do_save_events(f, s, "cas", "{\"w\":3}", 7, 60, &ev).st, STORE_CONFLICT);
    assert_events(f, s, "cas", "start main.welcome 1");
    assert_loaded(f, s, "cas", "{\"w\":1}", 1);

    /* Nor does a save refused for a session that never existed. */
    assert_int_equal(do_save_events(f, s, "ghost", "{}", 3, 60, &ev).st, STORE_CONFLICT);
    const char *exists[] = {"EXISTS", "cl:e:ghost", "cl:s:ghost"};
    assert_redis(f, "0", 3, exists);
    store_free(s);
}

/* Saves go out as EVALSHA. A server that lost the script (SCRIPT FLUSH,
 * or a failover) answers NOSCRIPT and runs nothing: the store loads the
 * script again and resends, so the save still applies, exactly once. */
static void test_save_survives_script_flush(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    const char *one[] = {"start main.welcome 1"};
    store_events ev = {one, 1, 20};
    assert_int_equal(do_save_events(f, s, "flush", "{\"w\":1}", 0, 60, &ev).st, STORE_OK);
    const char *flush[] = {"SCRIPT", "FLUSH"};
    assert_redis(f, "OK", 2, flush);

    const char *two[] = {"input main.menu 2 1"};
    ev = (store_events){two, 1, 20};
    result r = do_save_events(f, s, "flush", "{\"w\":2}", 1, 60, &ev);
    assert_int_equal(r.st, STORE_OK);
    assert_int_equal(r.rev, 2);
    assert_loaded(f, s, "flush", "{\"w\":2}", 2);
    assert_events(f, s, "flush", "start main.welcome 1|input main.menu 2 1");

    /* The reloaded script serves later saves directly, conflicts included. */
    assert_redis(f, "OK", 2, flush);
    r = do_save_events(f, s, "flush", "{\"w\":3}", 1, 60, &ev);
    assert_int_equal(r.st, STORE_CONFLICT);
    assert_int_equal(r.rev, 2);
    assert_events(f, s, "flush", "start main.welcome 1|input main.menu 2 1");
    store_free(s);
}

static void test_delete_removes_events(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    const char *one[] = {"start main.welcome 1"};
    store_events ev = {one, 1, 20};
    assert_int_equal(do_save_events(f, s, "del", "{}", 0, 60, &ev).st, STORE_OK);
    const char *both[] = {"EXISTS", "cl:s:del", "cl:e:del"};
    assert_redis(f, "2", 3, both);
    assert_int_equal(do_delete(f, s, "del").st, STORE_OK);
    assert_redis(f, "0", 3, both);
    assert_events(f, s, "del", "not_found");
    assert_int_equal(do_delete(f, s, "del").st, STORE_NOT_FOUND);
    store_free(s);
}

static void test_load_events_not_found_and_empty(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    assert_events(f, s, "nobody", "not_found");
    assert_int_equal(do_save(f, s, "quiet", "{}", 0, 60).st, STORE_OK);
    result r = do_load_events(f, s, "quiet");
    assert_int_equal(r.st, STORE_OK);
    assert_true(json_is_array(r.doc));
    assert_int_equal(json_array_size(r.doc), 0);
    json_decref(r.doc);
    assert_events(f, s, "bad id", "bad_data");

    /* An event list of another type is bad data, and a save with events
     * on it fails before the document is written. */
    assert_int_equal(do_save(f, s, "typed", "{\"k\":1}", 0, 60).st, STORE_OK);
    const char *set[] = {"SET", "cl:e:typed", "not a list"};
    free(redis_text(f, 3, set));
    assert_events(f, s, "typed", "bad_data");
    const char *one[] = {"start main.welcome 1"};
    store_events ev = {one, 1, 20};
    assert_int_equal(do_save_events(f, s, "typed", "{\"k\":2}", 1, 60, &ev).st, STORE_BAD_DATA);
    assert_loaded(f, s, "typed", "{\"k\":1}", 1);
    const char *get[] = {"GET", "cl:e:typed"};
    assert_redis(f, "not a list", 2, get);
    const char *items[] = {"RPUSH", "cl:e:typed-bad", "ok", "\xff\xfe"};
    assert_int_equal(do_save(f, s, "typed-bad", "{}", 0, 60).st, STORE_OK);
    free(redis_text(f, 4, items));
    assert_events(f, s, "typed-bad", "bad_data");

    assert_int_equal(ops_count("load_events", "not_found"), 1);
    assert_int_equal(ops_count("load_events", "ok"), 1);
    assert_int_equal(ops_count("load_events", "bad_data"), 3);
    store_free(s);
}

/* Garbage in Redis ------------------------------------------------------------*/

static void put_hash(fixture *f, const char *key, const char *rev, const char *doc)
{
    const char *both[] = {"HSET", key, "rev", rev, "doc", doc};
    const char *only_doc[] = {"HSET", key, "doc", doc};
    free(rev ? redis_text(f, 6, both) : redis_text(f, 4, only_doc));
}

static void test_stored_garbage_is_bad_data(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    put_hash(f, "cl:s:text", "1", "not json");
    put_hash(f, "cl:s:array", "1", "[1,2]");
    put_hash(f, "cl:s:badrev", "x1", "{}");
    put_hash(f, "cl:s:norev", NULL, "{}");
    put_hash(f, "cl:s:zerorev", "01", "{}");
    const char *set[] = {"SET", "cl:s:string", "hello"};
    free(redis_text(f, 3, set));

    const char *ids[] = {"text", "array", "badrev", "norev", "zerorev", "string"};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        result r = do_load(f, s, ids[i]);
        assert_int_equal(r.st, STORE_BAD_DATA);
        assert_null(r.doc);
    }
    assert_int_equal(do_save(f, s, "string", "{}", 0, 60).st, STORE_BAD_DATA);
    assert_int_equal(do_save(f, s, "badrev", "{}", 0, 60).st, STORE_BAD_DATA);
    assert_int_equal(do_save(f, s, "zerorev", "{}", 1, 60).st, STORE_BAD_DATA);
    const char *get[] = {"GET", "cl:s:string"};
    assert_redis(f, "hello", 2, get);
    const char *badrev[] = {"HGET", "cl:s:badrev", "rev"};
    assert_redis(f, "x1", 3, badrev);
    store_free(s);
}

/* Requests refused before Redis sees them -------------------------------------*/

static void assert_refused_save(fixture *f, store *s, const char *id, json_t *doc,
                                uint64_t expected, int ttl)
{
    result r = {0};
    store_save(s, id, doc, expected, ttl, NULL, on_save, &r);
    assert_int_equal(r.calls, 0);
    wait_all(f, &r, 1);
    assert_int_equal(r.st, STORE_BAD_DATA);
    assert_int_equal(r.rev, 0);
}

static void test_invalid_requests_change_nothing(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    char too_long[STORE_MAX_ID_LEN + 2];
    memset(too_long, 'a', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    const char *bad_ids[] = {"", "a b", "tab\there", "nl\n", "del\x7f", too_long, NULL};
    json_t *doc = json_pack("{s:s}", "k", "v");

    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
        assert_int_equal(do_load(f, s, bad_ids[i]).st, STORE_BAD_DATA);
        assert_int_equal(do_delete(f, s, bad_ids[i]).st, STORE_BAD_DATA);
        assert_refused_save(f, s, bad_ids[i], doc, 0, 60);
    }
    json_t *array = json_array();
    json_t *big = json_object();
    char *filler = malloc(STORE_MAX_DOC_BYTES + 1);
    memset(filler, 'x', STORE_MAX_DOC_BYTES);
    filler[STORE_MAX_DOC_BYTES] = '\0';
    json_object_set_new(big, "blob", json_string(filler));
    free(filler);
    assert_refused_save(f, s, "ok-id", array, 0, 60);
    assert_refused_save(f, s, "ok-id", NULL, 0, 60);
    assert_refused_save(f, s, "ok-id", big, 0, 60);
    assert_refused_save(f, s, "ok-id", doc, 0, 0);
    assert_refused_save(f, s, "ok-id", doc, 0, -5);
    assert_refused_save(f, s, "ok-id", doc, 0, STORE_MAX_TTL_S + 1);
    assert_refused_save(f, s, "ok-id", doc, UINT64_MAX, 60);
    json_decref(array);
    json_decref(big);

    char too_big[STORE_MAX_EVENT_BYTES + 2];
    memset(too_big, 'e', sizeof too_big - 1);
    too_big[sizeof too_big - 1] = '\0';
    const char *many[STORE_MAX_SAVE_EVENTS + 1];
    for (int i = 0; i <= STORE_MAX_SAVE_EVENTS; i++)
        many[i] = "input main.menu 1 1";
    const char *oversize[] = {"ok", too_big};
    const char *null_item[] = {"ok", NULL};
    const char *not_utf8[] = {"input main.menu 1 \xff"};
    const store_events bad_events[] = {
        {many, STORE_MAX_SAVE_EVENTS + 1, 20},
        {many, 1, -1},
        {many, 1, STORE_MAX_EVENTS_KEPT + 1},
        {oversize, 2, 20},
        {null_item, 2, 20},
        {NULL, 1, 20},
        {not_utf8, 1, 20},
    };
    for (size_t i = 0; i < sizeof bad_events / sizeof *bad_events; i++) {
        result r = {0};
        store_save(s, "ok-id", doc, 0, 60, &bad_events[i], on_save, &r);
        wait_all(f, &r, 1);
        assert_int_equal(r.st, STORE_BAD_DATA);
    }
    json_decref(doc);

    const char *dbsize[] = {"DBSIZE"};
    assert_redis(f, "0", 1, dbsize);

    too_long[STORE_MAX_ID_LEN] = '\0';
    assert_int_equal(do_save(f, s, too_long, "{}", 0, 60).st, STORE_OK);
    assert_int_equal(do_save(f, s, "\xe4\xbc\x9a\xe8\xaf\x9d", "{}", 0, 60).st, STORE_OK);
    assert_redis(f, "2", 1, dbsize);
    assert_string_equal(store_status_name(STORE_BAD_DATA), "bad_data");
    assert_string_equal(store_status_name(STORE_CONFLICT), "conflict");
    store_free(s);
}

/* The pending bound ----------------------------------------------------------*/

static void test_max_pending_bound(void **state)
{
    fixture *f = *state;
    store_options o = test_options(f->redis.port);
    o.max_pending = 5;
    store *s = connected_store(f, o);
    enum { N = 8 };
    result r[N] = {{0}};
    for (int i = 0; i < N; i++)
        store_load(s, "absent", on_load, &r[i]);
    wait_all(f, r, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].st, i < 5 ? STORE_NOT_FOUND : STORE_UNAVAILABLE);
    }
    assert_int_equal(do_load(f, s, "absent").st, STORE_NOT_FOUND);
    store_free(s);
}

/* Compare-and-set races -------------------------------------------------------*/

/* Starts RACERS saves of {"writer": i} expecting `expected`, alternating
 * over the given stores, and checks exactly one wins. Returns the winner. */
static int race(fixture *f, store **stores, int n_stores, uint64_t expected)
{
    result r[RACERS] = {{0}};
    for (int i = 0; i < RACERS; i++) {
        json_t *doc = json_pack("{s:i}", "writer", i);
        store_save(stores[i % n_stores], "raced", doc, expected, 60, NULL, on_save, &r[i]);
        json_decref(doc);
    }
    wait_all(f, r, RACERS);
    int winner = -1, conflicts = 0;
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(r[i].calls, 1);
        if (r[i].st == STORE_OK) {
            assert_int_equal(winner, -1);
            assert_int_equal(r[i].rev, expected + 1);
            winner = i;
        } else {
            assert_int_equal(r[i].st, STORE_CONFLICT);
            assert_int_equal(r[i].rev, expected + 1);
            conflicts++;
        }
    }
    assert_int_not_equal(winner, -1);
    assert_int_equal(conflicts, RACERS - 1);

    char want[32];
    snprintf(want, sizeof want, "{\"writer\":%d}", winner);
    assert_loaded(f, stores[0], "raced", want, expected + 1);
    return winner;
}

static void test_cas_race_one_connection(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    race(f, &s, 1, 0);
    race(f, &s, 1, 1);
    store_free(s);
}

static void test_cas_race_two_connections(void **state)
{
    fixture *f = *state;
    store *both[2] = {connected_store(f, test_options(f->redis.port)),
                      connected_store(f, test_options(f->redis.port))};
    race(f, both, 2, 0);
    race(f, both, 2, 1);
    const char *clients[] = {"CLIENT", "LIST"};
    char *list = redis_text(f, 2, clients);
    int connections = 0;
    for (const char *p = list; (p = strstr(p, "cmd=")) != NULL; p++)
        connections++;
    assert_true(connections >= 3); /* the two stores and this query */
    free(list);
    store_free(both[0]);
    store_free(both[1]);
}

/* Redis killed, restarted -----------------------------------------------------*/

static void test_redis_killed_and_restarted(void **state)
{
    fixture *f = *state;
    FILE *log = tmpfile();
    log_set_stream(log);
    store *s = connected_store(f, test_options(f->redis.port));
    assert_int_equal(do_save(f, s, "keep", "{\"k\":\"v\"}", 0, 600).st, STORE_OK);

    enum { N = 30 };
    result r[N] = {{0}};
    json_t *doc = json_pack("{s:s}", "k", "w");
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "live-%d", i);
        if (i % 3 == 0)
            store_load(s, "keep", on_load, &r[i]);
        else if (i % 3 == 1)
            store_save(s, id, doc, 0, 60, NULL, on_save, &r[i]);
        else
            store_delete(s, id, on_delete, &r[i]);
    }
    json_decref(doc);
    th_kill(&f->redis);

    wait_all(f, r, N);
    assert_true(tl_wait_store_lost(f->base, s, WAIT_MS));
    result fast = do_load(f, s, "keep");
    assert_int_equal(fast.st, STORE_UNAVAILABLE);
    assert_int_equal(fast.calls, 1);
    /* It keeps trying, backing off from 20 ms by doubling. */
    wait_log(f, log, "event=store.reconnect attempt=3 delay_ms=80");
    char *text = read_all(log);
    assert_non_null(strstr(text, "event=store.disconnected"));
    assert_non_null(strstr(text, "event=store.connect_failed"));
    assert_non_null(strstr(text, "attempt=2 delay_ms=40"));
    free(text);

    assert_true(th_redis_start(&f->redis, f->redis.dir, true));
    assert_true(tl_wait_store(f->base, s, WAIT_MS));
    assert_loaded(f, s, "keep", "{\"k\":\"v\"}", 1);
    assert_int_equal(do_save(f, s, "keep", "{\"k\":\"x\"}", 1, 600).st, STORE_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_true(r[i].st == STORE_UNAVAILABLE || r[i].st == STORE_TIMEOUT);
        assert_null(r[i].doc);
    }
    store_free(s);
    fclose(log);
}

/* Hung Redis ------------------------------------------------------------------*/

static void test_hung_redis_times_out(void **state)
{
    fixture *f = *state;
    store_options o = test_options(f->redis.port);
    o.op_timeout_ms = 500;
    o.ping_interval_ms = 3600000; /* keep the ping out of this test */
    store *s = connected_store(f, o);

    kill(f->redis.pid, SIGSTOP);
    enum { N = 10 };
    result r[N] = {{0}};
    json_t *doc = json_pack("{s:s}", "late", "yes");
    for (int i = 0; i < N; i++) {
        if (i == 0)
            store_save(s, "hung", doc, 0, 60, NULL, on_save, &r[i]);
        else
            store_load(s, "hung", on_load, &r[i]);
    }
    json_decref(doc);
    wait_all(f, r, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(r[i].st, STORE_TIMEOUT);
    assert_true(store_connected(s));

    kill(f->redis.pid, SIGCONT);
    /* The timed-out save was sent, so Redis applies it once it runs again:
     * a timeout means "outcome unknown", and the late replies are dropped. */
    assert_loaded(f, s, "hung", "{\"late\":\"yes\"}", 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(r[i].calls, 1);
    store_free(s);
}

static void test_hung_redis_dropped_by_ping(void **state)
{
    fixture *f = *state;
    FILE *log = tmpfile();
    log_set_stream(log);
    store_options o = test_options(f->redis.port);
    o.op_timeout_ms = 500;
    o.ping_interval_ms = 100;
    store *s = connected_store(f, o);
    assert_int_equal(do_save(f, s, "before", "{}", 0, 600).st, STORE_OK);

    kill(f->redis.pid, SIGSTOP);
    assert_true(tl_wait_store_lost(f->base, s, WAIT_MS));
    assert_int_equal(do_load(f, s, "before").st, STORE_UNAVAILABLE);
    assert_int_equal(connected_gauge(), 0);
    /* Reconnects reach the stopped server's accept queue, then time out. */
    wait_log(f, log, "event=store.unresponsive state=handshake");
    assert_false(store_connected(s));

    kill(f->redis.pid, SIGCONT);
    assert_true(tl_wait_store(f->base, s, WAIT_MS));
    assert_loaded(f, s, "before", "{}", 1);
    store_free(s);
    char *text = read_all(log);
    assert_non_null(strstr(text, "event=store.unresponsive state=ready"));
    free(text);
    fclose(log);
}

/* No server at start ----------------------------------------------------------*/

static void test_refused_at_start_then_connects(void **state)
{
    fixture *f = *state;
    int port = th_free_port();
    store_options o = test_options(port);
    store *s = store_new(f->base, &o);
    assert_non_null(s);
    assert_false(store_connected(s));
    assert_int_equal(do_save(f, s, "early", "{}", 0, 60).st, STORE_UNAVAILABLE);
    assert_int_equal(do_load(f, s, "early").st, STORE_UNAVAILABLE);
    assert_int_equal(do_delete(f, s, "early").st, STORE_UNAVAILABLE);
    assert_false(store_connected(s));

    f->redis.port = port;
    assert_true(th_redis_start(&f->redis, f->redis.dir, true));
    assert_true(tl_wait_store(f->base, s, WAIT_MS));
    assert_int_equal(do_save(f, s, "early", "{}", 0, 60).st, STORE_OK);
    assert_int_equal(do_load(f, s, "early").st, STORE_OK);
    store_free(s);
}

/* AUTH and SELECT -------------------------------------------------------------*/

static void test_select_database(void **state)
{
    fixture *f = *state;
    store_options o = test_options(f->redis.port);
    o.db = 3;
    store *in3 = connected_store(f, o);
    store *in0 = connected_store(f, test_options(f->redis.port));
    assert_int_equal(do_save(f, in3, "db", "{\"db\":3}", 0, 60).st, STORE_OK);
    assert_int_equal(do_load(f, in0, "db").st, STORE_NOT_FOUND);
    assert_loaded(f, in3, "db", "{\"db\":3}", 1);
    const char *exists[] = {"EXISTS", "cl:s:db"};
    assert_redis(f, "0", 2, exists);
    store_free(in3);
    store_free(in0);
}

static void test_auth_password(void **state)
{
    fixture *f = *state;
    FILE *log = tmpfile();
    log_set_stream(log);
    const char *require[] = {"CONFIG", "SET", "requirepass", "right-pw-5821"};
    assert_redis(f, "OK", 4, require);

    store_options o = test_options(f->redis.port);
    o.password = "wrong-pw-9047";
    store *wrong = store_new(f->base, &o);
    store_options anonymous = test_options(f->redis.port);
    store *none = store_new(f->base, &anonymous);
    store_options good = test_options(f->redis.port);
    good.password = "right-pw-5821";
    store *right = connected_store(f, good);
    assert_int_equal(do_save(f, right, "authed", "{}", 0, 60).st, STORE_OK);

    /* Both keep failing their handshake; neither can ever be ready. */
    assert_false(store_connected(wrong));
    assert_false(store_connected(none));
    assert_int_equal(do_load(f, wrong, "authed").st, STORE_UNAVAILABLE);
    store_free(wrong);
    store_free(none);
    store_free(right);

    char *text = read_all(log);
    assert_non_null(strstr(text, "event=store.handshake_failed"));
    assert_null(strstr(text, "wrong-pw-9047"));
    assert_null(strstr(text, "right-pw-5821"));
    free(text);
    fclose(log);
}

/* store_free at awkward moments -----------------------------------------------*/

typedef struct {
    store *s;      /* the store being freed */
    result first;  /* the save started before store_free */
    result second; /* the load its callback starts */
} chain;

static void save_then_load(store_status st, uint64_t rev, void *arg)
{
    chain *c = arg;
    on_save(st, rev, &c->first);
    store_load(c->s, "chained", on_load, &c->second);
}

static int events_on_loop(fixture *f)
{
    return event_base_get_num_events(f->base, EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE);
}

static void test_free_with_pending_ops(void **state)
{
    fixture *f = *state;
    int idle = events_on_loop(f);
    store *s = connected_store(f, test_options(f->redis.port));

    enum { N = 20 };
    result r[N] = {{0}}, refused = {0};
    json_t *doc = json_pack("{}");
    for (int i = 0; i < N; i++)
        store_save(s, "pending", doc, 0, 60, NULL, on_save, &r[i]);
    store_load(s, "bad id", on_load, &refused);
    chain c = {.s = s};
    store_save(s, "chained", doc, 0, 60, NULL, save_then_load, &c);
    json_decref(doc);

    store_free(s);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].st, STORE_UNAVAILABLE);
    }
    assert_int_equal(refused.calls, 1);
    assert_int_equal(refused.st, STORE_BAD_DATA);
    assert_int_equal(c.first.calls, 1);
    assert_int_equal(c.first.st, STORE_UNAVAILABLE);
    assert_int_equal(c.second.calls, 1);
    assert_int_equal(c.second.st, STORE_UNAVAILABLE);
    assert_int_equal(events_on_loop(f), idle);
}

static void test_free_while_connecting_and_in_backoff(void **state)
{
    fixture *f = *state;
    int idle = events_on_loop(f);
    store_options live = test_options(f->redis.port);
    store *connecting = store_new(f->base, &live);
    result a = {0};
    store_load(connecting, "x", on_load, &a);
    store_free(connecting);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.st, STORE_UNAVAILABLE);
    assert_int_equal(events_on_loop(f), idle);

    store_options dead = test_options(th_free_port());
    dead.reconnect_min_ms = dead.reconnect_max_ms = 60000;
    store *backoff = store_new(f->base, &dead);
    result b = {0};
    assert_int_equal(do_load(f, backoff, "x").st, STORE_UNAVAILABLE);
    store_delete(backoff, "x", on_delete, &b);
    store_free(backoff);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.st, STORE_UNAVAILABLE);
    assert_int_equal(events_on_loop(f), idle);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(b.calls, 1);
}

/* store_command ---------------------------------------------------------------*/

typedef struct {
    int calls;          /* how many times the callback ran */
    store_status st;    /* the last status reported */
    int type;           /* the reply's type, -1 when there was none */
    char text[256];     /* a string/status/error reply's text, an integer's digits */
} cmd_result;

static void on_command(store_status st, const redisReply *reply, void *arg)
{
    cmd_result *r = arg;
    r->calls++;
    r->st = st;
    r->type = reply ? reply->type : -1;
    r->text[0] = '\0';
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        snprintf(r->text, sizeof r->text, "%lld", reply->integer);
    else if (reply && reply->str)
        snprintf(r->text, sizeof r->text, "%.*s", (int)reply->len, reply->str);
}

static bool cmd_called(const void *arg)
{
    return ((const cmd_result *)arg)->calls > 0;
}

static cmd_result do_command(fixture *f, store *s, int argc, const char **argv,
                             const size_t *lens)
{
    cmd_result r = {0};
    store_command(s, argc, argv, lens, on_command, &r);
    assert_int_equal(r.calls, 0);
    assert_true(tl_run_until(f->base, cmd_called, &r, WAIT_MS));
    return r;
}

static void test_command_round_trip(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    /* A value with a NUL and a '%' travels as it is: argv, not a format. */
    const char *set[] = {"SET", "cl:t:cmd", "a%sb\0c"};
    const size_t set_len[] = {3, 8, 6};
    cmd_result r = do_command(f, s, 3, set, set_len);
    assert_int_equal(r.st, STORE_OK);
    assert_int_equal(r.type, REDIS_REPLY_STATUS);
    assert_string_equal(r.text, "OK");

    const char *strlen_cmd[] = {"STRLEN", "cl:t:cmd"};
    r = do_command(f, s, 2, strlen_cmd, NULL);
    assert_int_equal(r.type, REDIS_REPLY_INTEGER);
    assert_string_equal(r.text, "6");

    /* An error reply is an answer: STORE_OK, the caller judges it. */
    const char *wrong[] = {"LPUSH", "cl:t:cmd", "x"};
    r = do_command(f, s, 3, wrong, NULL);
    assert_int_equal(r.st, STORE_OK);
    assert_int_equal(r.type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r.text, "WRONGTYPE"));

    metrics_series *ok = metrics_counter("cardline_store_ops_total", "",
                                         "op=\"command\",result=\"ok\"");
    assert_true(metrics_value(ok) >= 3);
    store_free(s);
}

static void test_command_refused_and_unavailable(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    cmd_result r = do_command(f, s, 0, NULL, NULL);
    assert_int_equal(r.st, STORE_BAD_DATA);
    assert_int_equal(r.type, -1);
    const char *with_null[] = {"SET", NULL, "x"};
    r = do_command(f, s, 3, with_null, NULL);
    assert_int_equal(r.st, STORE_BAD_DATA);

    th_kill(&f->redis);
    assert_true(tl_wait_store_lost(f->base, s, WAIT_MS));
    const char *ping[] = {"PING"};
    r = do_command(f, s, 1, ping, NULL);
    assert_int_equal(r.st, STORE_UNAVAILABLE);
    assert_int_equal(r.type, -1);
    store_free(s);
}

static void test_command_times_out(void **state)
{
    fixture *f = *state;
    store_options o = test_options(f->redis.port);
    o.op_timeout_ms = 300;
    o.ping_interval_ms = 3600000;
    store *s = connected_store(f, o);
    kill(f->redis.pid, SIGSTOP);
    const char *ping[] = {"PING"};
    cmd_result r = do_command(f, s, 1, ping, NULL);
    kill(f->redis.pid, SIGCONT);
    assert_int_equal(r.st, STORE_TIMEOUT);
    assert_int_equal(r.type, -1);
    store_free(s);
}

/* Windowed counters -----------------------------------------------------------*/

typedef struct {
    int calls;          /* how many times the callback ran */
    store_status st;    /* the status reported */
    long long count;    /* the count reported */
} count_result;

static void on_count(store_status st, long long count, void *arg)
{
    count_result *r = arg;
    r->calls++;
    r->st = st;
    r->count = count;
}

static bool counts_called(const void *arg)
{
    const count_result *r = arg;
    for (int i = 0; i < RACERS; i++)
        if (r[i].calls == 0)
            return false;
    return true;
}

/* Racing takes all sent before any answer: each sees its own count, so a
 * check of count <= max lets exactly max of them through. */
/* Notes --------------------------------------------------------------------------*/

typedef struct {
    result r;                 /* status, revision, document */
    char note[STORE_MAX_NOTE_BYTES + 1]; /* the note read ("" for none) */
    bool had_note;            /* a note came */
} noted_result;

static void on_load_noted(store_status st, json_t *doc, uint64_t rev, const char *note, void *arg)
{
    noted_result *n = arg;
    on_load(st, doc, rev, &n->r);
    n->had_note = note != NULL;
    snprintf(n->note, sizeof n->note, "%s", note ? note : "");
}

static noted_result do_load_noted(fixture *f, store *s, const char *id)
{
    noted_result n = {0};
    store_load_noted(s, id, on_load_noted, &n);
    assert_int_equal(n.r.calls, 0);
    wait_all(f, &n.r, 1);
    json_decref(n.r.doc);
    n.r.doc = NULL;
    return n;
}

static store_status do_note(fixture *f, store *s, const char *id, const char *note)
{
    result r = {0};
    store_note(s, id, note, on_delete, &r);
    assert_int_equal(r.calls, 0);
    wait_all(f, &r, 1);
    return r.st;
}

/* A note lives beside an existing session only, comes with the document
 * in one HMGET, survives saves and goes with the session; a bad one is
 * refused and changes nothing. */
static void test_note_beside_the_session(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    assert_int_equal(do_note(f, s, "n1", "run 1 0 - u:1"), STORE_NOT_FOUND);
    const char *exists[] = {"EXISTS", "cl:s:n1"};
    assert_redis(f, "0", 2, exists);

    assert_int_equal(do_save(f, s, "n1", "{\"a\": 1}", 0, 60).st, STORE_OK);
    noted_result n = do_load_noted(f, s, "n1");
    assert_int_equal(n.r.st, STORE_OK);
    assert_false(n.had_note);
    assert_int_equal(do_note(f, s, "n1", "run 1 0 - u:1"), STORE_OK);
    assert_int_equal(do_save(f, s, "n1", "{\"a\": 2}", 1, 60).st, STORE_OK);
    n = do_load_noted(f, s, "n1");
    assert_int_equal(n.r.st, STORE_OK);
    assert_int_equal(n.r.rev, 2);
    assert_string_equal(n.note, "run 1 0 - u:1");
    assert_loaded(f, s, "n1", "{\"a\": 2}", 2);   /* a plain load is unchanged */

    char long_note[STORE_MAX_NOTE_BYTES + 2];
    memset(long_note, 'x', sizeof long_note - 1);
    long_note[sizeof long_note - 1] = '\0';
    assert_int_equal(do_note(f, s, "n1", long_note), STORE_BAD_DATA);
    assert_int_equal(do_note(f, s, "n1", "a\nb"), STORE_BAD_DATA);
    assert_int_equal(do_note(f, s, "n1", ""), STORE_BAD_DATA);
    assert_int_equal(do_note(f, s, "bad id", "run"), STORE_BAD_DATA);
    assert_string_equal(do_load_noted(f, s, "n1").note, "run 1 0 - u:1");

    assert_int_equal(do_delete(f, s, "n1").st, STORE_OK);
    n = do_load_noted(f, s, "n1");
    assert_int_equal(n.r.st, STORE_NOT_FOUND);
    assert_false(n.had_note);
    store_free(s);
}

static void test_count_takes_race_to_distinct_counts(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    count_result r[RACERS] = {{0}};
    for (int i = 0; i < RACERS; i++)
        store_count_take(s, "cl:t:count", 60, on_count, &r[i]);
    assert_true(tl_run_until(f->base, counts_called, r, WAIT_MS));
    bool seen[RACERS + 1] = {false};
    int allowed = 0;
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(r[i].st, STORE_OK);
        assert_true(r[i].count >= 1 && r[i].count <= RACERS);
        assert_false(seen[r[i].count]);
        seen[r[i].count] = true;
        allowed += r[i].count <= 5;
    }
    assert_int_equal(allowed, 5);
    const char *ttl[] = {"TTL", "cl:t:count"};
    char *left = redis_text(f, 2, ttl);
    assert_true(atoi(left) > 0 && atoi(left) <= 60);
    free(left);
    store_free(s);
}

static void test_count_restores_a_lost_ttl_and_refuses_bad_requests(void **state)
{
    fixture *f = *state;
    store *s = connected_store(f, test_options(f->redis.port));
    const char *set[] = {"SET", "cl:t:count", "7"};
    free(redis_text(f, 3, set));
    count_result r[RACERS] = {{0}};
    store_count_take(s, "cl:t:count", 30, on_count, &r[0]);
    store_count_take(s, "", 30, on_count, &r[1]);
    store_count_take(s, "cl:t:other", 0, on_count, &r[2]);
    for (int i = 3; i < RACERS; i++)
        r[i].calls = 1;
    assert_true(tl_run_until(f->base, counts_called, r, WAIT_MS));
    assert_int_equal(r[0].st, STORE_OK);
    assert_int_equal(r[0].count, 8);
    assert_int_equal(r[1].st, STORE_BAD_DATA);
    assert_int_equal(r[2].st, STORE_BAD_DATA);
    const char *ttl[] = {"TTL", "cl:t:count"};
    char *left = redis_text(f, 2, ttl);
    assert_true(atoi(left) > 0 && atoi(left) <= 30);
    free(left);
    const char *exists[] = {"EXISTS", "cl:t:other"};
    assert_redis(f, "0", 2, exists);
    store_free(s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_command_round_trip, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_command_refused_and_unavailable, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_command_times_out, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_count_takes_race_to_distinct_counts, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_note_beside_the_session, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_count_restores_a_lost_ttl_and_refuses_bad_requests,
                                        setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_events_saved_and_trimmed, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_appends_nothing, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_save_survives_script_flush, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_delete_removes_events, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_load_events_not_found_and_empty, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_stored_garbage_is_bad_data, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_requests_change_nothing, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_max_pending_bound, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_cas_race_one_connection, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_cas_race_two_connections, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_redis_killed_and_restarted, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_hung_redis_times_out, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_hung_redis_dropped_by_ping, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_refused_at_start_then_connects, setup_bare, teardown),
        cmocka_unit_test_setup_teardown(test_select_database, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_auth_password, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_pending_ops, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_free_while_connecting_and_in_backoff, setup_redis,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
