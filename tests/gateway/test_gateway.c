/* The cardline daemon end to end, against a real redis-server and the real
 * registry simulator on free loopback ports: --version/--check/usage exit
 * codes, /healthz following Redis and the registry down and back up,
 * /metrics, the HTTP limits (413, refused heads, connection cap, idle
 * close, request deadline), SIGHUP reload (configuration and dialplans), --check of broken
 * dialplans and SIGTERM shutdown. The gateway runs on a copy of the shipped
 * dialplans/ that the reload tests edit. The log carries the registry
 * probe's transitions but not its healthy answers, and warns of a random
 * digest key. Every wait is a bounded poll. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "world.h"
#include "rawhttp.h"

#define WAIT_MS 15000
#define MAX_CONNECTIONS 4

typedef struct {
    tw_world tw;          /* the daemon under test, its servers and directory */
    char dialplans[300];  /* the gateway's copy of the shipped dialplans */
} world;

static int is_yaml(const struct dirent *e)
{
    size_t len = strlen(e->d_name);
    return len > 5 && strcmp(e->d_name + len - 5, ".yaml") == 0;
}

/* Copies every *.yaml of the shipped dialplans/ into `dir` (created). */
static void copy_dialplans(const char *dir)
{
    struct dirent **names;
    int n = scandir(CL_SOURCE_DIR "/dialplans", &names, is_yaml, alphasort);
    assert_true(n > 0);
    assert_int_equal(mkdir(dir, 0700), 0);
    for (int i = 0; i < n; i++) {
        char from[600], to[600];
        snprintf(from, sizeof from, "%s/dialplans/%s", CL_SOURCE_DIR, names[i]->d_name);
        snprintf(to, sizeof to, "%s/%s", dir, names[i]->d_name);
        char *text = th_read_file(from, NULL);
        assert_non_null(text);
        th_write_file(to, text);
        free(text);
        free(names[i]);
    }
    free(names);
}

/* The path of the first *.yaml in `dir` and its bare name. */
static void first_dialplan(const char *dir, char path[600], char name[256])
{
    struct dirent **names;
    int n = scandir(dir, &names, is_yaml, alphasort);
    assert_true(n > 0);
    snprintf(path, 600, "%s/%s", dir, names[0]->d_name);
    snprintf(name, 256, "%s", names[0]->d_name);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Appends a top-level key the dialplan language does not have; returns
 * the line it is on. */
static int break_dialplan(const char *path)
{
    char *text = th_read_file(path, NULL);
    assert_non_null(text);
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    bool open_line = *text && text[strlen(text) - 1] != '\n';
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fprintf(f, "%sno_such_section: 1\n", open_line ? "\n" : "");
    fclose(f);
    free(text);
    return lines + 1 + open_line;
}

static void write_gateway_conf_with(const world *w, const char *path, int max_connections,
                                    const char *dialplans)
{
    th_write_filef(path,
                   "[log]\nlevel = info\n"
                   "[http]\nlisten = 127.0.0.1:%d\nmax_body_bytes = 1024\nmax_header_bytes = 1024\n"
                   "max_connections = %d\nidle_timeout_ms = 400\nrequest_timeout_ms = 1000\n"
                   "[redis]\nport = %d\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n"
                   "ping_interval_ms = 100\n"
                   "[registry]\nurl = http://127.0.0.1:%d\ntimeout_ms = 1000\n"
                   "connect_timeout_ms = 200\nread_retries = 0\nhealth_interval_ms = 100\n"
                   "[dialplans]\ndir = %s\n"
                   "[gateway]\nshutdown_grace_ms = 3000\n",
                   w->tw.http_port, max_connections, w->tw.redis.port, w->tw.sim.port, dialplans);
}

static void write_gateway_conf(const world *w, const char *path, int max_connections)
{
    write_gateway_conf_with(w, path, max_connections, w->dialplans);
}

/* The value after the last `key` in the log (up to a blank), "" if none. */
static void last_value(const th_proc *p, const char *key, char *out, size_t size)
{
    char *text = th_read_file(p->log, NULL);
    const char *at = NULL;
    for (const char *s = text ? text : ""; (s = strstr(s, key)) != NULL; s += strlen(key))
        at = s + strlen(key);
    size_t len = at ? strcspn(at, " \n") : 0;
    snprintf(out, size, "%.*s", (int)len, at ? at : "");
    free(text);
}

/* Runs cardline with `args` through the shell, output captured in out. */
static int run_cli(const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", CL_GATEWAY_BIN, args);
    return th_run(cmd, out, cap);
}

static int start_world(void **state)
{
    world *w = calloc(1, sizeof *w);
    *state = w;
    tw_init(&w->tw, "cl-gateway");
    if (!tw_start_servers(&w->tw, false, NULL, NULL))
        return -1;
    snprintf(w->dialplans, sizeof w->dialplans, "%s/dialplans", w->tw.dir);
    copy_dialplans(w->dialplans);
    write_gateway_conf(w, w->tw.conf, MAX_CONNECTIONS);
    return tw_start_gateway(&w->tw, false, WAIT_MS) ? 0 : -1;
}

static int stop_world(void **state)
{
    world *w = *state;
    tw_stop(&w->tw, 0);
    free(w);
    return 0;
}

/* Command line ----------------------------------------------------------------*/

static void test_version(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(run_cli("--version", out, sizeof out), 0);
    assert_int_equal(strncmp(out, "cardline ", 9), 0);
    assert_true(strlen(out) > 10);
}

static void test_check_good_config(void **state)
{
    world *w = *state;
    char args[400], out[1024];
    snprintf(args, sizeof args, "--check --config %s", w->tw.conf);
    assert_int_equal(run_cli(args, out, sizeof out), 0);
    assert_non_null(strstr(out, ": ok"));
    assert_non_null(strstr(out, "dialplans: ok (version "));
}

static void test_check_broken_dialplans_names_file_line(void **state)
{
    world *w = *state;
    char dir[300], conf[300], path[600], name[256], args[700], out[8192], want[300];
    snprintf(dir, sizeof dir, "%s/broken-dialplans", w->tw.dir);
    snprintf(conf, sizeof conf, "%s/broken-dialplans.conf", w->tw.dir);
    copy_dialplans(dir);
    first_dialplan(dir, path, name);
    int line = break_dialplan(path);
    write_gateway_conf_with(w, conf, MAX_CONNECTIONS, dir);
    snprintf(args, sizeof args, "--check --config %s", conf);
    assert_int_equal(run_cli(args, out, sizeof out), 1);
    snprintf(want, sizeof want, "%s:%d: ", name, line);
    if (strstr(out, want) == NULL)
        fail_msg("no '%s' in:\n%s", want, out);
    assert_null(strstr(out, ": ok"));
}

static void test_check_bad_config_names_file_line_key(void **state)
{
    world *w = *state;
    char path[300], args[400], out[2048], want[400];
    snprintf(path, sizeof path, "%s/bad.conf", w->tw.dir);
    th_write_file(path, "[http]\nlisten = 127.0.0.1:8080\nbogus = 1\n[redis]\nport = sixty\n");
    snprintf(args, sizeof args, "--check --config %s", path);
    assert_int_equal(run_cli(args, out, sizeof out), 1);
    snprintf(want, sizeof want, "%s:3: [http] bogus: unknown key", path);
    assert_non_null(strstr(out, want));
    snprintf(want, sizeof want, "%s:5: [redis] port: not an integer", path);
    assert_non_null(strstr(out, want));
}

static void test_usage_errors_exit_2(void **state)
{
    (void)state;
    char out[1024];
    assert_int_equal(run_cli("--frobnicate", out, sizeof out), 2);
    assert_non_null(strstr(out, "usage: cardline"));
    assert_int_equal(run_cli("stray-argument", out, sizeof out), 2);
    assert_int_equal(run_cli("--help", out, sizeof out), 0);
}

/* Health -----------------------------------------------------------------------*/

static void test_healthz_ok(void **state)
{
    world *w = *state;
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 200,
                        "{\"status\":\"ok\",\"redis\":\"up\",\"registry\":\"up\"}", WAIT_MS));
}

static void test_healthz_follows_redis(void **state)
{
    world *w = *state;
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 200, NULL, WAIT_MS));
    th_kill(&w->tw.redis);
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 503, "\"redis\":\"down\"", WAIT_MS));
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 503, "\"down\":[\"redis\"]", WAIT_MS));
    assert_true(th_redis_start(&w->tw.redis, w->tw.redis.dir, false)); /* same port */
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 200, "\"status\":\"ok\"", WAIT_MS));
}

static void test_healthz_follows_registry_fault(void **state)
{
    world *w = *state;
    long st = th_http(w->tw.sim.port, "PUT", "/_sim/fault",
                      "{\"status\":503,\"path_prefix\":\"/v1/health\"}", NULL, NULL);
    assert_int_equal(st, 200);
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 503, "\"registry\":\"down\"", WAIT_MS));
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 503, "\"redis\":\"up\"", WAIT_MS));
    assert_int_equal(th_http(w->tw.sim.port, "DELETE", "/_sim/fault", NULL, NULL, NULL), 200);
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 200, "\"registry\":\"up\"", WAIT_MS));
}

/* The probe runs every 100 ms here, the log at info: the registry going
 * down and coming back are events, its healthy answers are not. */
static void test_log_has_probe_transitions_not_probes(void **state)
{
    world *w = *state;
    const char *down = "event=ops.dependency name=registry state=down";
    const char *up = "event=ops.dependency name=registry state=up";
    int downs = th_log_count(&w->tw.gw, down), ups = th_log_count(&w->tw.gw, up);
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 200, "\"registry\":\"up\"", WAIT_MS));
    assert_int_equal(th_http(w->tw.sim.port, "PUT", "/_sim/fault",
                             "{\"status\":503,\"path_prefix\":\"/v1/health\"}", NULL, NULL),
                     200);
    assert_true(th_log_wait(&w->tw.gw, down, downs, WAIT_MS));
    assert_int_equal(th_http(w->tw.sim.port, "DELETE", "/_sim/fault", NULL, NULL, NULL), 200);
    assert_true(th_log_wait(&w->tw.gw, up, ups, WAIT_MS));
    assert_int_equal(th_log_count(&w->tw.gw, "path=/v1/health result=ok"), 0);
}

/* No [workflows] digest_secret here: the daemon says codes will not
 * survive a restart, once. */
static void test_random_digest_key_warned(void **state)
{
    world *w = *state;
    assert_int_equal(th_log_count(&w->tw.gw, "level=warn event=runtime.digest_secret_random"), 1);
}

static void test_healthz_follows_registry_stopped(void **state)
{
    world *w = *state;
    th_kill(&w->tw.sim);
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 503, "\"down\":[\"registry\"]", WAIT_MS));
    char dir[300];
    snprintf(dir, sizeof dir, "%s/sim2", w->tw.dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_true(th_sim_start(&w->tw.sim, dir, NULL, NULL)); /* same port, fresh database */
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 200, "\"status\":\"ok\"", WAIT_MS));
}

/* Routes and metrics -------------------------------------------------------------*/

static void test_unknown_path_and_method(void **state)
{
    world *w = *state;
    char *body = NULL;
    assert_int_equal(th_http_get(w->tw.http_port, "/nope", &body), 404);
    assert_non_null(strstr(body, "\"code\":\"not_found\""));
    free(body);
    assert_int_equal(th_http(w->tw.http_port, "POST", "/healthz", "{}", NULL, &body), 405);
    assert_non_null(strstr(body, "\"code\":\"method_not_allowed\""));
    free(body);
}

/* This world's config sets no [ussd] or [sms] secret: both channels are
 * closed (401, saying why) while the rest of the gateway runs. */
static void test_channels_without_a_secret_refuse_everything(void **state)
{
    world *w = *state;
    const char *const form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    th_response r = th_request(w->tw.http_port, "POST", "/ussd", NULL, form);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "no [ussd] secret is configured"));
    th_response_free(&r);
    r = th_request(w->tw.http_port, "GET", "/sms/kannel?key=anything-at-all&from=%2B8613800000001&text=CX", NULL,
                   NULL);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "no [sms] secret is configured"));
    th_response_free(&r);
}

/* Every sample line is `name{labels} value` or `name value`. */
static void assert_prometheus_text(char *text)
{
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') {
            assert_true(strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0);
            continue;
        }
        char *space = strrchr(line, ' ');
        assert_non_null(space);
        char *end;
        strtod(space + 1, &end);
        assert_int_equal(*end, '\0');
        assert_true(line[0] == '_' || (line[0] >= 'a' && line[0] <= 'z'));
    }
}

static void test_metrics(void **state)
{
    world *w = *state;
    static char buf[1 << 20]; /* /metrics holds the funnel: a series per node and outcome */
    assert_int_equal(rh_exchange(w->tw.http_port,
                                 "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                                 buf, sizeof buf),
                     200);
    assert_non_null(strcasestr(buf, "\r\nContent-Type: text/plain; version=0.0.4"));
    char *body = strstr(buf, "\r\n\r\n") + 4;
    assert_non_null(strstr(body, "# TYPE cardline_http_requests_total counter\n"));
    assert_non_null(strstr(body, "route=\"/healthz\",class=\"2xx\"}"));
    assert_non_null(strstr(body, "# TYPE cardline_uptime_seconds gauge\n"));
    assert_non_null(strstr(body, "cardline_build_info{version=\""));
    assert_non_null(strstr(body, "cardline_dependency_up{dependency=\"redis\"} 1\n"));
    assert_non_null(strstr(body, "\ncardline_store_"));
    assert_non_null(strstr(body, "\ncardline_registry_"));
    assert_prometheus_text(body);
}

/* Limits ---------------------------------------------------------------------------*/

static void test_body_over_limit_is_413(void **state)
{
    world *w = *state;
    char buf[4096];
    assert_int_equal(rh_exchange(w->tw.http_port,
                                 "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n",
                                 buf, sizeof buf),
                     413);
    /* at the limit the body is read and the route decides */
    char req[1400];
    int n = snprintf(req, sizeof req, "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n");
    memset(req + n, 'x', 1024);
    req[n + 1024] = '\0';
    assert_int_equal(rh_exchange(w->tw.http_port, req, buf, sizeof buf), 405);
}

static void test_oversize_head_is_refused(void **state)
{
    world *w = *state;
    char req[3000], buf[4096];
    int n = snprintf(req, sizeof req, "GET /nope HTTP/1.1\r\nHost: t\r\nX-Filler: ");
    memset(req + n, 'h', 2000);
    strcpy(req + n + 2000, "\r\n\r\n");
    /* libevent 2.1 answers an over-long head 400 and closes */
    assert_int_equal(rh_exchange(w->tw.http_port, req, buf, sizeof buf), 400);
    /* a head within the limit reaches the routes */
    req[n + 500] = '\0';
    strcat(req, "\r\n\r\n");
    assert_int_equal(rh_exchange(w->tw.http_port, req, buf, sizeof buf), 404);
}

/* Polls until the gateway counts only the connection asking. */
static bool connections_settle(int port)
{
    char want[128];
    snprintf(want, sizeof want, "cardline_http_connections{listener=\"http\"} 1\n");
    return th_wait_http(port, "/metrics", 200, want, WAIT_MS);
}

static void test_connection_cap(void **state)
{
    world *w = *state;
    static const char get[] = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
    static char buf[1 << 20]; /* /metrics holds the funnel: a series per node and outcome */
    int fds[MAX_CONNECTIONS + 1];
    assert_true(connections_settle(w->tw.http_port));
    for (int i = 0; i < MAX_CONNECTIONS; i++) {
        fds[i] = rh_connect(w->tw.http_port);
        assert_true(fds[i] >= 0);
        assert_true(rh_send(fds[i], get, strlen(get)));
        assert_int_equal(rh_response(fds[i], buf, sizeof buf, WAIT_MS), 200);
    }
    /* one more is closed as soon as it is accepted, without an answer */
    fds[MAX_CONNECTIONS] = rh_connect(w->tw.http_port);
    assert_true(fds[MAX_CONNECTIONS] >= 0);
    assert_int_equal(rh_response(fds[MAX_CONNECTIONS], buf, sizeof buf, WAIT_MS), 0);
    assert_true(rh_wait_closed(fds[MAX_CONNECTIONS], WAIT_MS));
    /* the admitted ones are still served on their kept-alive connections */
    assert_true(rh_send(fds[0], get, strlen(get)));
    assert_int_equal(rh_response(fds[0], buf, sizeof buf, WAIT_MS), 200);
    for (int i = 0; i <= MAX_CONNECTIONS; i++)
        close(fds[i]);
    /* closing them frees the places again */
    assert_true(connections_settle(w->tw.http_port));
    assert_true(th_wait_http(w->tw.http_port, "/metrics", 200,
                        "cardline_http_connections_rejected_total{listener=\"http\"} 1\n", WAIT_MS));
}

static void test_idle_connection_closed(void **state)
{
    world *w = *state;
    static const char get[] = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
    static char buf[1 << 20]; /* /metrics holds the funnel: a series per node and outcome */
    int silent = rh_connect(w->tw.http_port);
    int kept = rh_connect(w->tw.http_port);
    assert_true(silent >= 0 && kept >= 0);
    assert_true(rh_send(kept, get, strlen(get)));
    assert_int_equal(rh_response(kept, buf, sizeof buf, WAIT_MS), 200);
    assert_true(rh_wait_closed(silent, WAIT_MS));
    assert_true(rh_wait_closed(kept, WAIT_MS));
    close(silent);
    close(kept);
}

/* A header line every 100 ms keeps resetting idle_timeout_ms (400 ms);
 * request_timeout_ms (1 s) still closes the connection, without an answer,
 * long before the head would reach max_header_bytes. */
static void test_trickled_request_dropped(void **state)
{
    world *w = *state;
    static const char head[] = "GET /healthz HTTP/1.1\r\n", line[] = "X-S: 1\r\n";
    int fd = rh_connect(w->tw.http_port);
    assert_true(fd >= 0);
    assert_true(rh_send(fd, head, strlen(head)));
    char buf[256];
    ssize_t got = -1;
    int lines = 0;
    while (got < 0 && lines < 100 && rh_send(fd, line, strlen(line))) {
        lines++;
        got = rh_recv(fd, buf, sizeof buf, rh_now_ms() + 100);
    }
    if (got < 0) /* the last send may have met the close */
        got = rh_recv(fd, buf, sizeof buf, rh_now_ms() + WAIT_MS);
    assert_int_equal(got, 0);
    assert_true(lines < 100);
    close(fd);
}

/* Signals --------------------------------------------------------------------------*/

static void test_sighup_reloads(void **state)
{
    world *w = *state;
    write_gateway_conf(w, w->tw.conf, MAX_CONNECTIONS + 1);
    assert_int_equal(kill(w->tw.gw.pid, SIGHUP), 0);
    assert_true(th_log_wait(&w->tw.gw, "event=gateway.reload", 0, WAIT_MS));
    assert_true(th_log_wait(&w->tw.gw, "event=reload.restart_needed section=http key=max_connections", 0, WAIT_MS));
    assert_true(th_log_wait(&w->tw.gw, "event=reload.applied hook=log", 0, WAIT_MS));
    /* a broken file is refused and the gateway keeps running */
    th_write_file(w->tw.conf, "[http]\nmax_connections = none\n");
    assert_int_equal(kill(w->tw.gw.pid, SIGHUP), 0);
    assert_true(th_log_wait(&w->tw.gw, "event=reload.config_invalid", 0, WAIT_MS));
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 200, NULL, WAIT_MS));
    write_gateway_conf(w, w->tw.conf, MAX_CONNECTIONS);
}

/* A broken dialplan is refused on SIGHUP and the running set keeps
 * serving; once fixed, the next SIGHUP swaps in the new version. */
static void test_sighup_reloads_dialplans(void **state)
{
    world *w = *state;
    char path[600], name[256], want[300], started[128], reloaded[128];
    first_dialplan(w->dialplans, path, name);
    char *original = th_read_file(path, NULL);
    assert_non_null(original);
    int failures = th_log_count(&w->tw.gw, "event=dialplan.reload_failed ");
    int line = break_dialplan(path);
    assert_int_equal(kill(w->tw.gw.pid, SIGHUP), 0);
    assert_true(th_log_wait(&w->tw.gw, "event=dialplan.reload_failed ", failures, WAIT_MS));
    snprintf(want, sizeof want, "%s:%d: ", name, line);
    assert_true(th_log_wait(&w->tw.gw, want, 0, WAIT_MS));
    assert_true(th_log_wait(&w->tw.gw, "event=reload.refused hook=dialplans", 0, WAIT_MS));
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 200, NULL, WAIT_MS));

    char *edited = malloc(strlen(original) + 64);
    sprintf(edited, "%s\n# edited by test_gateway\n", original);
    th_write_file(path, edited);
    int reloads = th_log_count(&w->tw.gw, "event=dialplan.reloaded ");
    assert_int_equal(kill(w->tw.gw.pid, SIGHUP), 0);
    assert_true(th_log_wait(&w->tw.gw, "event=dialplan.reloaded ", reloads, WAIT_MS));
    last_value(&w->tw.gw, " dialplan=", started, sizeof started);
    last_value(&w->tw.gw, "event=dialplan.reloaded version=", reloaded, sizeof reloaded);
    assert_true(started[0] != '\0' && reloaded[0] != '\0');
    assert_string_not_equal(started, reloaded);
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 200, NULL, WAIT_MS));
    th_write_file(path, original);
    free(edited);
    free(original);
}

static void test_sigterm_exits_cleanly(void **state)
{
    world *w = *state;
    assert_true(th_wait_http(w->tw.http_port, "/healthz", 200, NULL, WAIT_MS));
    int status = th_stop(&w->tw.gw, WAIT_MS);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0); /* also: LeakSanitizer found nothing */
    assert_true(th_log_wait(&w->tw.gw, "event=gateway.stopping signal=TERM", 0, WAIT_MS));
    assert_true(th_log_wait(&w->tw.gw, "event=gateway.stopped", 0, WAIT_MS));
    assert_false(th_wait_port(w->tw.http_port, 100));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_check_good_config),
        cmocka_unit_test(test_check_bad_config_names_file_line_key),
        cmocka_unit_test(test_check_broken_dialplans_names_file_line),
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_healthz_ok),
        cmocka_unit_test(test_healthz_follows_redis),
        cmocka_unit_test(test_healthz_follows_registry_fault),
        cmocka_unit_test(test_healthz_follows_registry_stopped),
        cmocka_unit_test(test_log_has_probe_transitions_not_probes),
        cmocka_unit_test(test_random_digest_key_warned),
        cmocka_unit_test(test_unknown_path_and_method),
        cmocka_unit_test(test_channels_without_a_secret_refuse_everything),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_body_over_limit_is_413),
        cmocka_unit_test(test_oversize_head_is_refused),
        cmocka_unit_test(test_connection_cap),
        cmocka_unit_test(test_idle_connection_closed),
        cmocka_unit_test(test_trickled_request_dropped),
        cmocka_unit_test(test_sighup_reloads),
        cmocka_unit_test(test_sighup_reloads_dialplans),
        cmocka_unit_test(test_sigterm_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, start_world, stop_world);
}
