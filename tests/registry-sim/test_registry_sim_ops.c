/* Integration tests of the registry simulator as a process: injected faults
 * (/_sim/fault), the bearer token, persistence across restarts, re-seeding,
 * and refusal of bad arguments and broken seed files with exit code 2. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "simtest.h"

#define WANG_WEI "110101199003074514"
#define WAIT_MS 10000

static void set_fault(const th_proc *p, const char *json)
{
    st_resp r = st_call(p, "PUT", "/_sim/fault", json, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(st_get(&r, "active")));
    st_free(&r);
}

static long get_status(const th_proc *p, const char *path)
{
    return th_http_get(p->port, path, NULL);
}

/* Faults --------------------------------------------------------------------*/

static void test_fault_status_for_count_requests(void **state)
{
    th_proc *p = *state;
    set_fault(p, "{\"status\": 503, \"count\": 2}");
    for (int i = 0; i < 2; i++) {
        st_resp r = st_call(p, "GET", "/v1/persons/" WANG_WEI, NULL, NULL);
        assert_int_equal(r.status, 503);
        assert_string_equal(st_code(&r), "unavailable");
        assert_true(json_is_string(st_get(&r, "error.request_id")));
        st_free(&r);
    }
    assert_int_equal(get_status(p, "/v1/persons/" WANG_WEI), 200);
    st_resp r = st_call(p, "GET", "/_sim/fault", NULL, NULL);
    assert_true(json_is_false(st_get(&r, "active")));
    st_free(&r);
}

static void test_fault_path_prefix_and_health(void **state)
{
    th_proc *p = *state;
    set_fault(p, "{\"status\": 500, \"path_prefix\": \"/v1/cards/\"}");
    assert_int_equal(get_status(p, "/v1/persons/" WANG_WEI), 200);
    assert_int_equal(get_status(p, "/v1/cards/A52870316"), 500);
    assert_int_equal(get_status(p, "/v1/health"), 200);
    set_fault(p, "{\"status\": 503}");
    assert_int_equal(get_status(p, "/v1/health"), 503);
    assert_int_equal(get_status(p, "/v1/health"), 503);
    assert_int_equal(get_status(p, "/_sim/stats"), 200);
    st_resp r = st_call(p, "DELETE", "/_sim/fault", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_is_false(st_get(&r, "active")));
    st_free(&r);
    assert_int_equal(get_status(p, "/v1/health"), 200);
}

static void test_fault_malformed_body(void **state)
{
    th_proc *p = *state;
    set_fault(p, "{\"malformed\": true, \"count\": 1}");
    st_resp r = st_call(p, "GET", "/v1/cards/A52870316", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_null(r.body);
    assert_true(strlen(r.raw) > 0);
    st_free(&r);
    assert_int_equal(get_status(p, "/v1/cards/A52870316"), 200);
}

static void test_fault_drop_connection(void **state)
{
    th_proc *p = *state;
    set_fault(p, "{\"drop\": true, \"count\": 1}");
    assert_int_equal(get_status(p, "/v1/cards/A52870316"), 0);
    assert_int_equal(get_status(p, "/v1/cards/A52870316"), 200);
}

static void test_fault_write_not_applied(void **state)
{
    th_proc *p = *state;
    set_fault(p, "{\"status\": 503, \"count\": 1}");
    const char *body = "{\"kind\": \"temporary\", \"channel\": \"voice\"}";
    st_resp r = st_call(p, "POST", "/v1/cards/A52870316/loss-reports", body, "retry-key-1");
    assert_int_equal(r.status, 503);
    st_free(&r);
    assert_int_equal(st_applied(p, "loss_reports"), 0);
    r = st_call(p, "POST", "/v1/cards/A52870316/loss-reports", body, "retry-key-1");
    assert_int_equal(r.status, 201);
    st_free(&r);
    assert_int_equal(st_applied(p, "loss_reports"), 1);
}

static void test_fault_short_delay_then_status(void **state)
{
    th_proc *p = *state;
    set_fault(p, "{\"status\": 429, \"delay_ms\": 50, \"count\": 1}");
    st_resp r = st_call(p, "GET", "/v1/persons/" WANG_WEI, NULL, NULL);
    assert_int_equal(r.status, 429);
    assert_string_equal(st_code(&r), "rate_limited");
    st_free(&r);
}

typedef struct {
    int port;               /* the simulator */
    long status;            /* what the held request finally got */
    volatile int done;      /* set when the request returned */
} held_request;

static void *send_held(void *arg)
{
    held_request *h = arg;
    h->status = th_http_get(h->port, "/v1/persons/" WANG_WEI, NULL);
    h->done = 1;
    return NULL;
}

/* A delayed request is held on a timer: the loop keeps answering others, and
 * a shutdown answers the held one with 503 rather than leaving it hanging. */
static void test_fault_delay_holds_without_blocking(void **state)
{
    th_proc *p = *state;
    set_fault(p, "{\"delay_ms\": 60000, \"count\": 1}");
    long long before = st_stat(p, "requests");
    held_request h = {p->port, -1, 0};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, send_held, &h), 0);
    long deadline = th_now_ms() + WAIT_MS;
    while (st_stat(p, "requests") == before && th_now_ms() < deadline)
        th_poll_pause();
    assert_true(st_stat(p, "requests") > before);
    assert_int_equal(get_status(p, "/v1/persons/" WANG_WEI), 200);
    assert_false(h.done);
    simtest_stop(p);
    pthread_join(thread, NULL);
    assert_int_equal(h.status, 503);
    simtest_start(p, NULL);
}

static void test_fault_bad_description_400(void **state)
{
    th_proc *p = *state;
    const char *bad[] = {"{\"status\": 200}", "{\"status\": 503, \"drop\": true}", "{}",
                         "{\"count\": 0, \"status\": 503}", "{\"path_prefix\": \"v1\", \"status\": 503}",
                         "{\"bogus\": 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st_resp r = st_call(p, "PUT", "/_sim/fault", bad[i], NULL);
        assert_int_equal(r.status, 400);
        st_free(&r);
    }
    assert_int_equal(get_status(p, "/v1/health"), 200);
}

/* Process -------------------------------------------------------------------*/

static void test_token_required(void **state)
{
    (void)state;
    th_proc p;
    const char *args[] = {"--token", "s3cret-token", NULL};
    simtest_start(&p, args);
    st_resp r = st_call(&p, "GET", "/v1/persons/" WANG_WEI, NULL, NULL);
    assert_int_equal(r.status, 401);
    assert_string_equal(st_code(&r), "unauthorized");
    st_free(&r);
    const char *wrong[] = {"Authorization: Bearer s3cret-tokex", NULL};
    r = st_call_h(&p, "GET", "/v1/persons/" WANG_WEI, NULL, wrong);
    assert_int_equal(r.status, 401);
    st_free(&r);
    const char *right[] = {"Authorization: Bearer s3cret-token", NULL};
    r = st_call_h(&p, "GET", "/v1/persons/" WANG_WEI, NULL, right);
    assert_int_equal(r.status, 200);
    st_free(&r);
    assert_int_equal(get_status(&p, "/v1/health"), 200);
    simtest_stop(&p);
}

static void test_control_endpoints_need_flag(void **state)
{
    (void)state;
    th_proc p;
    memset(&p, 0, sizeof p);
    th_mkdtemp(p.dir, "regsim");
    p.port = th_free_port();
    char listen[32], db[300];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", p.port);
    snprintf(db, sizeof db, "%s/registry.db", p.dir);
    const char *argv[] = {CL_SIM_BIN, "--listen", listen, "--db", db, NULL};
    assert_true(th_spawn(&p, "registry-sim", argv));
    long deadline = th_now_ms() + WAIT_MS;
    while (get_status(&p, "/v1/health") != 200 && th_now_ms() < deadline)
        th_poll_pause();
    assert_int_equal(get_status(&p, "/v1/health"), 200);
    assert_int_equal(get_status(&p, "/_sim/stats"), 404);
    assert_int_equal(get_status(&p, "/v1/persons/" WANG_WEI), 404);
    simtest_stop(&p);
}

static void test_data_survives_restart(void **state)
{
    th_proc *p = *state;
    st_resp r = st_call(p, "PATCH", "/v1/persons/" WANG_WEI, "{\"mobile\": \"+8613911112222\"}", "restart-key");
    assert_int_equal(r.status, 200);
    st_free(&r);
    int port = p->port;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", p->dir);
    int status = th_stop(p, WAIT_MS);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    p->port = port;
    assert_true(th_sim_start(p, dir, NULL, NULL));
    r = st_call(p, "GET", "/v1/persons/" WANG_WEI, NULL, NULL);
    assert_string_equal(json_string_value(st_get(&r, "mobile")), "+8613911112222");
    st_free(&r);
    const char *headers[] = {"Idempotency-Key: restart-key", NULL};
    r = st_call_h(p, "PATCH", "/v1/persons/" WANG_WEI, "{\"mobile\": \"+8613911112222\"}", headers);
    assert_int_equal(r.status, 200);
    assert_string_equal(st_header(&r, "Idempotent-Replayed"), "true");
    st_free(&r);
    assert_int_equal(st_applied(p, "contact_updates"), 1);
}

/* A database an older simulator wrote (an older schema version) is rebuilt
 * at start and the seed loads into it, rather than being half-read. */
static void test_older_schema_rebuilt(void **state)
{
    th_proc *p = *state;
    st_resp r = st_call(p, "PATCH", "/v1/persons/" WANG_WEI, "{\"mobile\": \"+8613911112222\"}", st_key());
    assert_int_equal(r.status, 200);
    st_free(&r);
    int port = p->port;
    char dir[256], db[300];
    snprintf(dir, sizeof dir, "%s", p->dir);
    snprintf(db, sizeof db, "%s/registry.db", dir);
    th_stop(p, WAIT_MS);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "PRAGMA user_version=1;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    p->port = port;
    assert_true(th_sim_start(p, dir, NULL, NULL));
    r = st_call(p, "GET", "/v1/persons/" WANG_WEI, NULL, NULL);
    assert_string_equal(json_string_value(st_get(&r, "mobile")), "+8613800000001");
    st_free(&r);
}

static void test_reseed_restores_seed(void **state)
{
    th_proc *p = *state;
    st_resp r = st_call(p, "PATCH", "/v1/persons/" WANG_WEI, "{\"mobile\": \"+8613911112222\"}", st_key());
    st_free(&r);
    int port = p->port;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", p->dir);
    th_stop(p, WAIT_MS);
    p->port = port;
    const char *args[] = {"--reseed", NULL};
    assert_true(th_sim_start(p, dir, NULL, args));
    r = st_call(p, "GET", "/v1/persons/" WANG_WEI, NULL, NULL);
    assert_string_equal(json_string_value(st_get(&r, "mobile")), "+8613800000001");
    st_free(&r);
    assert_int_equal(st_applied(p, "contact_updates"), 0);
}

/* Runs the simulator with `args` after --db and expects exit 2 with `needle`
 * in its output. */
static void expect_exit_2(const char *const *args, const char *needle)
{
    th_proc p;
    memset(&p, 0, sizeof p);
    th_mkdtemp(p.dir, "regsim");
    char db[300];
    snprintf(db, sizeof db, "%s/registry.db", p.dir);
    const char *argv[16] = {CL_SIM_BIN, "--db", db};
    size_t n = 3;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    assert_true(th_spawn(&p, "registry-sim", argv));
    int status = 0;
    long deadline = th_now_ms() + WAIT_MS;
    while (waitpid(p.pid, &status, WNOHANG) == 0 && th_now_ms() < deadline)
        th_poll_pause();
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    p.pid = 0;
    FILE *f = fopen(p.log, "r");
    char out[4096] = "";
    size_t got = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    if (strstr(out, needle) == NULL)
        fail_msg("expected \"%s\" in: %s", needle, out);
    th_rmdir(p.dir);
}

static void test_broken_seed_exits_2(void **state)
{
    (void)state;
    char dir[256], syntax[300], semantic[300];
    th_mkdtemp(dir, "regseed");
    snprintf(syntax, sizeof syntax, "%s/syntax.json", dir);
    snprintf(semantic, sizeof semantic, "%s/semantic.json", dir);
    th_write_file(syntax, "{\n  \"banks\": [],\n  \"persons\": [,]\n}\n");
    th_write_file(semantic, "{\"banks\": [], \"outlets\": [],\n \"persons\": [{\"ssn\": \"110101199003074515\", \"name\": \"x\"}]}\n");
    const char *a1[] = {"--listen", "127.0.0.1:1", "--seed", syntax, NULL};
    expect_exit_2(a1, "line 3, column");
    const char *a2[] = {"--listen", "127.0.0.1:1", "--seed", semantic, NULL};
    expect_exit_2(a2, "persons[0]: ssn");
    th_write_file(semantic, "{\"banks\": [], \"persons\": [], \"outlets\": [{\"code\": \"X\", \"name\": \"x\","
                         " \"address\": \"x\", \"phone\": \"1\","
                         " \"opening_hours\": [{\"days\": [5, 4], \"open\": \"09:00\", \"close\": \"17:00\"}]}]}\n");
    const char *a3[] = {"--listen", "127.0.0.1:1", "--seed", semantic, NULL};
    expect_exit_2(a3, "outlets[0]: opening_hours: days");
    th_write_file(semantic, "{\"banks\": [], \"persons\": [], \"outlets\": [{\"code\": \"X\", \"name\": \"x\","
                         " \"address\": \"x\", \"phone\": \"1\","
                         " \"opening_hours\": [{\"days\": [1], \"open\": \"17:00\", \"close\": \"09:00\"}]}]}\n");
    expect_exit_2(a3, "outlets[0]: opening_hours: open");
    th_rmdir(dir);
}

static void test_bad_arguments_exit_2(void **state)
{
    (void)state;
    const char *a1[] = {"--listen", "127.0.0.1", NULL};
    expect_exit_2(a1, "--listen");
    const char *a2[] = {"--listen", "127.0.0.1:9", "--loss-days", "0", NULL};
    expect_exit_2(a2, "--loss-days");
    const char *a3[] = {"--listen", "127.0.0.1:9", "--today", "2026-02-30", NULL};
    expect_exit_2(a3, "--today");
    const char *a4[] = {"--listen", "127.0.0.1:9", "--reseed", NULL};
    expect_exit_2(a4, "--reseed");
    const char *a5[] = {"--listen", "127.0.0.1:9", "--collect-days", "3651", NULL};
    expect_exit_2(a5, "--collect-days");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fault_status_for_count_requests, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_fault_path_prefix_and_health, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_fault_malformed_body, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_fault_drop_connection, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_fault_write_not_applied, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_fault_short_delay_then_status, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_fault_delay_holds_without_blocking, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_fault_bad_description_400, simtest_setup, simtest_teardown),
        cmocka_unit_test(test_token_required),
        cmocka_unit_test(test_control_endpoints_need_flag),
        cmocka_unit_test_setup_teardown(test_data_survives_restart, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_older_schema_rebuilt, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_reseed_restores_seed, simtest_setup, simtest_teardown),
        cmocka_unit_test(test_broken_seed_exits_2),
        cmocka_unit_test(test_bad_arguments_exit_2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
