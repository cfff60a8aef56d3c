/* test_voice_e2e — the voice channel end to end: sipp as the caller (and as
 * the agent desk a transfer goes to) against the real cardline daemon, with
 * a real redis-server and the registry simulator on its demo seed. Each
 * case is one sipp run whose scenario (tests/voice/sipp/e2e-*.xml) fails on
 * any message it does not expect; sipp's exit code 0 is the first assertion,
 * the state it left behind the second:
 *   - a status check typed by SIP INFO: the keys reach the engine as the
 *     caller typed them (the session's event list), the session ends, the
 *     registry applied nothing, no PIN in the log or in Redis;
 *   - a loss report with RFC 4733 keys (sipp's pcaps) and INFO: the
 *     registry applied exactly one loss report and the card is in
 *     temporary loss;
 *   - key 0: REFER carrying X-Cardline-Session = "voice:" + Call-ID, NOTIFY
 *     200, BYE; the session is left in "transfer" for the agent;
 *   - a REFER declined 603: the flow's fallback, then BYE;
 *   - an unknown number (404), a call beyond [voice] max_calls (503), and
 *     garbage datagrams to the SIP port and every RTP port during a call,
 *     after which the call still ends normally and a new one is served.
 * Prompts have no audio here (an empty prompts_dir plays as nothing), so a
 * flow runs as fast as its keys arrive. Every wait is bounded; each case
 * stops the daemon with SIGTERM and expects exit 0 (LeakSanitizer clean). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define WAIT_MS 20000            /* bound of every wait on the gateway */
#define SIPP_WAIT_MS 45000       /* bound of a sipp run (its own -timeout is 30 s) */
#define RTP_PORTS 40             /* [voice] rtp_port_max - rtp_port_min + 1 */
#define HOTLINE "12333"

/* 王伟 of the demo seed: card A10000001 (normal), service PIN 246810. */
#define ID "110101199003074514"
#define PIN "246810"
#define CARD "A10000001"
#define LAST4 "0001"

typedef struct {
    char dir[256];               /* everything of the test */
    char conf[300];              /* the gateway's config */
    int http_port;               /* /healthz and /metrics */
    int sip_port;                /* [voice] listen */
    int sipp_port;               /* sipp's SIP port, also the agent URI's */
    int media_port;              /* sipp's media port (RTP from the gateway lands there) */
    int rtp_min;                 /* [voice] rtp_port_min */
    int runs;                    /* sipp runs so far (each gets a directory) */
    th_proc redis;               /* real redis-server */
    th_proc sim;                 /* registry-sim, demo seed */
    th_proc gw;                  /* the cardline daemon */
    th_proc sipp;                /* the sipp run under way, if any (one at a time) */
} world;

static void pause_briefly(void)
{
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
}

/* The whole file ("" when unreadable), malloc'd. */
static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    char buf[65536];
    size_t n;
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, out);
    fclose(out);
    if (f)
        fclose(f);
    return text;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void subdir(const char *parent, const char *name, char out[256])
{
    assert_true(snprintf(out, 256, "%s/%s", parent, name) < 256);
    assert_int_equal(mkdir(out, 0700), 0);
}

/* The gateway ----------------------------------------------------------------------*/

/* An even base in 30000..59958 that differs between runs, so tests run in
 * parallel rarely meet on an RTP port. */
static int pick_rtp_base(void)
{
    return 30000 + 2 * (int)(((unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL)) % 14980);
}

static void write_conf(world *w, int max_calls)
{
    char prompts[256], text[2048];
    subdir(w->dir, "prompts", prompts); /* empty: every prompt plays as nothing */
    snprintf(text, sizeof text,
             "[log]\nlevel = info\nflush_ms = 0\n" /* lines are counted right after each act */
             "[http]\nlisten = 127.0.0.1:%d\n"
             "[redis]\nport = %d\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n"
             "[registry]\nurl = http://127.0.0.1:%d\nhealth_interval_ms = 200\n"
             "[dialplans]\ndir = %s/dialplans\n"
             "[ussd]\nhop_key_secret = voice end-to-end test secret\n"
             "[gateway]\nshutdown_grace_ms = 3000\n"
             "[voice]\nenabled = 1\nlisten = 127.0.0.1:%d\ntrunks = 127.0.0.1\nmax_calls = %d\n"
             "rtp_address = 127.0.0.1\nrtp_port_min = %d\nrtp_port_max = %d\n"
             "agent_uri = sip:{queue}@127.0.0.1:%d\nrefer_timeout_ms = 3000\n"
             "inter_digit_timeout_ms = 1000\nprompts_dir = %s\n",
             w->http_port, w->redis.port, w->sim.port, CL_SOURCE_DIR, w->sip_port, max_calls, w->rtp_min,
             w->rtp_min + RTP_PORTS - 1, w->sipp_port, prompts);
    snprintf(w->conf, sizeof w->conf, "%s/cardline.conf", w->dir);
    write_file(w->conf, text);
}

/* Polls /healthz until Redis and the registry are both up. */
static bool gateway_ready(const world *w)
{
    long deadline = th_now_ms() + WAIT_MS;
    for (;;) {
        char *body = NULL;
        th_http_get(w->http_port, "/healthz", &body);
        bool ok = body && strstr(body, "\"status\":\"ok\"");
        free(body);
        if (ok)
            return true;
        if (th_now_ms() > deadline)
            return false;
        pause_briefly();
    }
}

static bool gateway_alive(world *w)
{
    int status;
    if (w->gw.pid > 0 && waitpid(w->gw.pid, &status, WNOHANG) == w->gw.pid) {
        w->gw.pid = 0;
        return false;
    }
    return w->gw.pid > 0;
}

/* SIGTERM; a clean exit also means LeakSanitizer found nothing. */
static void stop_gateway(world *w)
{
    int status = th_stop(&w->gw, WAIT_MS);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!clean) {
        char *log = read_all(w->gw.log);
        size_t len = strlen(log);
        print_error("gateway exit status %d; its log ends:\n%s\n", status, log + (len > 4000 ? len - 4000 : 0));
        free(log);
    }
    assert_true(clean);
}

static int start_world(void **state, int max_calls)
{
    world *w = calloc(1, sizeof *w);
    char dir[256];
    th_mkdtemp(w->dir, "cl-voice-e2e");
    subdir(w->dir, "redis", dir);
    if (!th_redis_start(&w->redis, dir, false))
        return -1;
    subdir(w->dir, "sim", dir);
    if (!th_sim_start(&w->sim, dir, NULL, NULL))
        return -1;
    w->http_port = th_free_port();
    w->sip_port = th_free_port();
    w->sipp_port = th_free_port();
    w->media_port = th_free_port();
    w->rtp_min = pick_rtp_base();
    write_conf(w, max_calls);
    subdir(w->dir, "gw", w->gw.dir);
    const char *argv[] = {CL_GATEWAY_BIN, "--config", w->conf, NULL};
    *state = w;
    if (!th_spawn(&w->gw, "cardline", argv) || !th_wait_port(w->http_port, WAIT_MS) || !gateway_ready(w))
        return -1;
    return 0;
}

static int setup(void **state)
{
    return start_world(state, 8);
}

static int setup_two_calls(void **state)
{
    return start_world(state, 2);
}

static int teardown(void **state)
{
    world *w = *state;
    th_kill(&w->sipp);
    th_kill(&w->gw);
    th_kill(&w->sim);
    th_kill(&w->redis);
    if (getenv("CL_KEEP_TMP"))
        fprintf(stderr, "kept %s\n", w->dir);
    else
        th_rmdir(w->dir);
    free(w);
    return 0;
}

/* sipp ---------------------------------------------------------------------------------*/

typedef struct {
    char dir[256];               /* its working directory: its files */
    char call_id[64];            /* Call-ID of its (first) call */
    char errors[300];            /* -error_file */
    char log[300];               /* -log_file: what the scenario's <log> actions wrote */
} sipp_run;

/* Starts sipp as a UAC calling `service` with scenario `scenario` (a file of
 * CL_SIPP_DIR); `extra` (NULL-terminated, may be NULL) follows the common
 * options, so "-m 3" there overrides the default one call. The Call-ID of
 * call N is "<tag>-N@cardline-e2e". */
static void sipp_start(world *w, sipp_run *r, const char *tag, const char *scenario, const char *service,
                       const char *const *extra)
{
    char name[32], remote[32], sf[300], port[16], mport[16], cid[64];
    memset(r, 0, sizeof *r);
    assert_int_equal(w->sipp.pid, 0);
    snprintf(name, sizeof name, "sipp-%d-%s", ++w->runs, tag);
    subdir(w->dir, name, r->dir);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", w->sip_port);
    snprintf(sf, sizeof sf, "%s/%s", CL_SIPP_DIR, scenario);
    snprintf(port, sizeof port, "%d", w->sipp_port);
    snprintf(mport, sizeof mport, "%d", w->media_port);
    snprintf(cid, sizeof cid, "%s-%%u@cardline-e2e", tag);
    snprintf(r->call_id, sizeof r->call_id, "%s-1@cardline-e2e", tag);
    snprintf(r->errors, sizeof r->errors, "%s/errors.log", r->dir);
    snprintf(r->log, sizeof r->log, "%s/scenario.log", r->dir);
    const char *argv[64] = {"sipp", remote, "-sf", sf, "-s", service, "-m", "1", "-i", "127.0.0.1",
                            "-p", port, "-mp", mport, "-cid_str", cid, "-timeout", "30s", "-timeout_error",
                            "-trace_err", "-error_file", r->errors, "-trace_logs", "-log_file", r->log,
                            "-trace_msg", "-nostdin"};
    size_t n = 0;
    while (argv[n])
        n++;
    for (size_t i = 0; extra && extra[i] && n < 63; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    snprintf(w->sipp.dir, sizeof w->sipp.dir, "%s", r->dir);
    assert_true(th_spawn(&w->sipp, "sipp", argv));
}

/* Waits for sipp to exit (killing it past SIPP_WAIT_MS) and returns its
 * exit code: 0 when every call went as the scenario says. */
static int sipp_wait(world *w, const sipp_run *r)
{
    int status = -1;
    long deadline = th_now_ms() + SIPP_WAIT_MS;
    while (waitpid(w->sipp.pid, &status, WNOHANG) == 0) {
        if (th_now_ms() > deadline) {
            th_kill(&w->sipp);
            fail_msg("sipp (%s) still running after %d ms", r->dir, SIPP_WAIT_MS);
        }
        pause_briefly();
    }
    w->sipp.pid = 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0) {
        char *errors = read_all(r->errors), *gw = read_all(w->gw.log);
        size_t len = strlen(gw);
        print_error("sipp exit %d; its errors:\n%s\ngateway log ends:\n%s\n", code, errors,
                    gw + (len > 6000 ? len - 6000 : 0));
        free(errors);
        free(gw);
    }
    return code;
}

static int sipp(world *w, sipp_run *r, const char *tag, const char *scenario, const char *service,
                const char *const *extra)
{
    sipp_start(w, r, tag, scenario, service, extra);
    return sipp_wait(w, r);
}

/* Lines of the scenario's log holding `needle`. */
static int sipp_log_count(const sipp_run *r, const char *needle)
{
    char *text = read_all(r->log);
    int n = 0;
    for (const char *at = text; (at = strstr(at, needle)) != NULL; at += strlen(needle))
        n++;
    free(text);
    return n;
}

/* Redis: the session ---------------------------------------------------------------------*/

static redisContext *redis_connect(const world *w)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", w->redis.port, tv);
    assert_true(c != NULL && c->err == 0);
    return c;
}

/* The session document of call `call_id`, or NULL when there is none. */
static json_t *session_doc(const world *w, const char *call_id)
{
    redisContext *c = redis_connect(w);
    redisReply *r = redisCommand(c, "HGET cl:s:voice:%s doc", call_id);
    assert_non_null(r);
    json_t *doc = r->type == REDIS_REPLY_STRING ? json_loadb(r->str, r->len, 0, NULL) : NULL;
    freeReplyObject(r);
    redisFree(c);
    return doc;
}

/* Polls until the session's state is `state`. */
static void wait_state(const world *w, const char *call_id, const char *state)
{
    long deadline = th_now_ms() + WAIT_MS;
    char seen[32] = "(no session)";
    for (;;) {
        json_t *doc = session_doc(w, call_id);
        const char *s = json_string_value(json_object_get(doc, "state"));
        if (s)
            snprintf(seen, sizeof seen, "%s", s);
        json_decref(doc);
        if (s && strcmp(seen, state) == 0)
            return;
        if (th_now_ms() > deadline)
            fail_msg("session voice:%s in state %s, wanted %s", call_id, seen, state);
        pause_briefly();
    }
}

/* What the caller did, from the session's event list: each "input",
 * "no_input", "timeout" and "transfer_back" entry as "KIND NODE [INPUT]"
 * (its timestamp dropped), joined by " | ". */
static char *caller_events(const world *w, const char *call_id)
{
    redisContext *c = redis_connect(w);
    redisReply *r = redisCommand(c, "LRANGE cl:e:voice:%s 0 -1", call_id);
    assert_true(r != NULL && r->type == REDIS_REPLY_ARRAY);
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    for (size_t i = 0; i < r->elements; i++) {
        char kind[32] = "", node[96] = "", input[128] = "";
        long long ts;
        int got = sscanf(r->element[i]->str, "%31s %95s %lld %127[^\n]", kind, node, &ts, input);
        if (got < 3 || (strcmp(kind, "input") && strcmp(kind, "no_input") && strcmp(kind, "timeout") &&
                        strcmp(kind, "transfer_back")))
            continue;
        fprintf(f, "%s%s %s%s%s", ftell(f) ? " | " : "", kind, node, input[0] ? " " : "", input);
    }
    fclose(f);
    freeReplyObject(r);
    redisFree(c);
    return out;
}

static void assert_caller_events(const world *w, const char *call_id, const char *want)
{
    char *got = caller_events(w, call_id);
    bool same = strcmp(got, want) == 0;
    if (!same)
        print_error("events of voice:%s\n  got:  %s\n  want: %s\n", call_id, got, want);
    free(got);
    assert_true(same);
}

/* `token` in s as a whole run of digits. */
static bool has_digit_run(const char *s, const char *token)
{
    size_t n = strlen(token);
    for (const char *at = s; (at = strstr(at, token)) != NULL; at++)
        if ((at == s || !isdigit((unsigned char)at[-1])) && !isdigit((unsigned char)at[n]))
            return true;
    return false;
}

/* No PIN in the session's document and events, nor anywhere in the log. */
static void assert_pin_kept_secret(const world *w, const char *call_id)
{
    json_t *doc = session_doc(w, call_id);
    char *text = json_dumps(doc, 0), *events = caller_events(w, call_id), *log = read_all(w->gw.log);
    bool in_doc = text == NULL || has_digit_run(text, PIN), in_events = has_digit_run(events, PIN);
    bool in_log = has_digit_run(log, PIN) || has_digit_run(log, ID);
    free(text);
    free(events);
    free(log);
    json_decref(doc);
    assert_false(in_doc);
    assert_false(in_events);
    assert_false(in_log);
}

/* The registry --------------------------------------------------------------------------*/

static json_t *sim_json(const world *w, const char *path)
{
    char *body = NULL;
    long status = th_http_get(w->sim.port, path, &body);
    json_t *j = status == 200 ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return j;
}

/* Writes of `what` the registry applied. */
static long long applied_count(const world *w, const char *what)
{
    json_t *j = sim_json(w, "/_sim/stats");
    assert_non_null(j);
    json_t *n = json_object_get(json_object_get(j, "applied"), what);
    assert_non_null(n);
    long long v = json_integer_value(n);
    json_decref(j);
    return v;
}

static int card_status(const world *w, const char *card)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/cards/%s", card);
    json_t *j = sim_json(w, path);
    int status = j ? (int)json_integer_value(json_object_get(j, "status")) : -1;
    json_decref(j);
    return status;
}

static void assert_registry_untouched(const world *w)
{
    static const char *const writes[] = {"loss_reports", "cancellations", "activations", "contact_updates"};
    for (size_t i = 0; i < sizeof writes / sizeof *writes; i++)
        if (applied_count(w, writes[i]) != 0)
            fail_msg("the registry applied %s", writes[i]);
    assert_int_equal(card_status(w, CARD), 1);
}

/* The gateway's figures -------------------------------------------------------------------*/

/* The value of metric `name` on /metrics (-1 when absent). */
static double metric(const world *w, const char *name)
{
    char *body = NULL, line[128];
    double v = -1;
    th_http_get(w->http_port, "/metrics", &body);
    snprintf(line, sizeof line, "\n%s ", name);
    const char *at = body ? strstr(body, line) : NULL;
    if (at)
        v = strtod(at + strlen(line), NULL);
    free(body);
    return v;
}

static void wait_calls(const world *w, int calls)
{
    long deadline = th_now_ms() + WAIT_MS;
    while (metric(w, "cardline_voice_calls") != calls) {
        if (th_now_ms() > deadline)
            fail_msg("cardline_voice_calls stayed at %g, wanted %d", metric(w, "cardline_voice_calls"), calls);
        pause_briefly();
    }
}

static int gateway_log_count(const world *w, const char *needle)
{
    char *text = read_all(w->gw.log);
    int n = 0;
    for (const char *at = text; (at = strstr(at, needle)) != NULL; at += strlen(needle))
        n++;
    free(text);
    return n;
}

/* The cases ---------------------------------------------------------------------------------*/

/* Keys by INFO for a status check, exactly as the prompts ask: 1 中文,
 * 1 status, the ID and #, the PIN and #, then 2 (finish) at the menu
 * after the task. */
static const char STATUS_KEYS[] = "11" ID "#" PIN "#2";
static const char STATUS_EVENTS[] = "input main.choose_lang 1 | input main.main_menu 1 | "
                                    "input identify.ask_id " ID " | input identify.ask_pin <secret> | "
                                    "input main.after_task 2";

static void status_call(world *w, const char *tag)
{
    sipp_run r;
    const char *extra[] = {"-key", "keys", STATUS_KEYS, NULL};
    assert_int_equal(sipp(w, &r, tag, "e2e-keys.xml", HOTLINE, extra), 0);
    wait_state(w, r.call_id, "end");
    assert_caller_events(w, r.call_id, STATUS_EVENTS);
    assert_pin_kept_secret(w, r.call_id);
}

static void test_status_by_info(void **state)
{
    world *w = *state;
    status_call(w, "status");
    assert_registry_untouched(w);
    stop_gateway(w);
}

/* RFC 4733 needs sipp's raw socket: root or CAP_NET_RAW. */
static bool can_play_pcap(void)
{
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static void test_loss_by_rtp(void **state)
{
    world *w = *state;
    if (!can_play_pcap()) {
        print_message("skipped: sipp's play_pcap_audio needs root or CAP_NET_RAW\n");
        skip();
    }
    sipp_run r;
    const char *extra[] = {"-key", "id", ID, "-key", "last4", LAST4, NULL};
    assert_int_equal(sipp(w, &r, "loss", "e2e-loss-rtp.xml", HOTLINE, extra), 0);
    wait_state(w, r.call_id, "end");
    assert_caller_events(w, r.call_id,
                         "input main.choose_lang 1 | input main.main_menu 2 | input identify.ask_id " ID
                         " | input identify.ask_pin <secret> | input loss.ask_last4 " LAST4
                         " | input loss.confirm 1 | input main.after_task 2");
    long deadline = th_now_ms() + WAIT_MS;
    while (applied_count(w, "loss_reports") < 1 && th_now_ms() < deadline)
        pause_briefly();
    assert_int_equal(applied_count(w, "loss_reports"), 1);
    assert_int_equal(card_status(w, CARD), 4);
    assert_pin_kept_secret(w, r.call_id);
    stop_gateway(w);
}

/* The REFER's session header names this call's session and its target is
 * the agent URI with the queue filled in. */
static void assert_refer_logged(const world *w, const sipp_run *r)
{
    char want[256];
    snprintf(want, sizeof want, "REFER session=voice:%s call_id=%s refer_to=sip:general@127.0.0.1:%d ",
             r->call_id, r->call_id, w->sipp_port);
    int seen = sipp_log_count(r, want);
    if (seen != 1) {
        char *log = read_all(r->log);
        print_error("wanted \"%s\" once in sipp's log:\n%s\n", want, log);
        free(log);
    }
    assert_int_equal(seen, 1);
}

static void test_agent_transfer(void **state)
{
    world *w = *state;
    sipp_run r;
    const char *extra[] = {"-key", "keys", "10", NULL};
    assert_int_equal(sipp(w, &r, "transfer", "e2e-transfer.xml", HOTLINE, extra), 0);
    assert_refer_logged(w, &r);
    wait_state(w, r.call_id, "transfer"); /* kept for the agent: no hangup hop */
    json_t *doc = session_doc(w, r.call_id);
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "transfer"), "queue")), "general");
    json_decref(doc);
    assert_caller_events(w, r.call_id, "input main.choose_lang 1 | input main.main_menu 0");
    wait_calls(w, 0);
    stop_gateway(w);
}

static void test_refused_transfer(void **state)
{
    world *w = *state;
    sipp_run r;
    const char *extra[] = {"-key", "keys", "10", NULL};
    assert_int_equal(sipp(w, &r, "refused", "e2e-transfer-refused.xml", HOTLINE, extra), 0);
    assert_refer_logged(w, &r);
    wait_state(w, r.call_id, "end");
    json_t *doc = session_doc(w, r.call_id);
    assert_string_equal(json_string_value(json_object_get(doc, "node")), "agents_busy");
    json_decref(doc);
    assert_caller_events(w, r.call_id,
                         "input main.choose_lang 1 | input main.main_menu 0 | transfer_back agent.to_agent");
    assert_int_equal(gateway_log_count(w, "event=voice.transfer_failed"), 1);
    stop_gateway(w);
}

static void test_unknown_number(void **state)
{
    world *w = *state;
    sipp_run r;
    assert_int_equal(sipp(w, &r, "unknown", "e2e-not-found.xml", "99999", NULL), 0);
    json_t *doc = session_doc(w, r.call_id);
    assert_null(doc);
    assert_int_equal(metric(w, "cardline_voice_calls"), 0);
    stop_gateway(w);
}

/* [voice] max_calls = 2: three callers 100 ms apart who each hold for 2 s;
 * two are answered, the third is refused 503. */
static void test_call_cap(void **state)
{
    world *w = *state;
    sipp_run r;
    const char *extra[] = {"-m", "3", "-l", "3", "-r", "10", "-d", "2000", NULL};
    assert_int_equal(sipp(w, &r, "cap", "e2e-hold.xml", HOTLINE, extra), 0);
    assert_int_equal(sipp_log_count(&r, "answered "), 2);
    assert_int_equal(sipp_log_count(&r, "busy "), 1);
    wait_calls(w, 0);
    stop_gateway(w);
}

static void send_datagram(int fd, int port, const void *data, size_t len)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Refused or dropped is fine: only the gateway's survival is tested. */
    (void)sendto(fd, data, len, 0, (const struct sockaddr *)&to, sizeof to);
}

/* Datagrams a SIP stack must shrug off: binary noise, a request without
 * headers, a stray response, an INVITE whose SDP is nonsense, a huge one. */
static void spray_sip(int fd, int port)
{
    static const char *const texts[] = {
        "\r\n\r\n",
        "INVITE sip:12333@127.0.0.1 SIP/2.0\r\n\r\n",
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnope\r\nCall-ID: nope\r\n"
        "CSeq: 7 BYE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nContent-Length: 0\r\n\r\n",
        "INVITE sip:12333@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKjunk\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:12333@127.0.0.1>\r\nCall-ID: junk-sdp\r\n"
        "CSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:9>\r\nContent-Type: application/sdp\r\n"
        "Content-Length: 24\r\n\r\nv=0\r\nm=audio x RTP/AVP\r\n",
        "OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        send_datagram(fd, port, texts[i], strlen(texts[i]));
    unsigned char noise[60000];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (unsigned char)rand();
    send_datagram(fd, port, noise, 512);
    send_datagram(fd, port, noise, sizeof noise);
}

/* Datagrams an RTP receiver must shrug off: too short, wrong version, a
 * CSRC list, extension or padding running past the end, a telephone-event
 * payload too short or not a key, oversized and random packets. */
static void spray_rtp(int fd, int port)
{
    static const unsigned char packets[][20] = {
        {0x80},
        {0x00, 0x08, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4},
        {0x8f, 0x08, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 0, 0},
        {0x90, 0x08, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 0xbe, 0xde, 0xff, 0xff},
        {0xa0, 0x08, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 0xff},
        {0x80, 0xe5, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 5},
        {0x80, 0xe5, 0, 2, 0, 0, 1, 160, 1, 2, 3, 4, 200, 0x8a, 0, 160},
    };
    static const size_t lens[] = {1, 12, 14, 16, 13, 13, 16};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++)
        send_datagram(fd, port, packets[i], lens[i]);
    unsigned char noise[2000];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (unsigned char)rand();
    noise[0] = 0x80;
    send_datagram(fd, port, noise, sizeof noise);
    send_datagram(fd, port, noise + 1, 172);
}

/* Garbage to the SIP port and to every RTP port while a call is held: the
 * call still ends normally, and a new caller is served. */
static void test_garbage_datagrams(void **state)
{
    world *w = *state;
    sipp_run held;
    const char *extra[] = {"-d", "3000", NULL};
    sipp_start(w, &held, "held", "e2e-hold.xml", HOTLINE, extra);
    wait_calls(w, 1);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    srand(12333);
    spray_sip(fd, w->sip_port);
    for (int port = w->rtp_min; port < w->rtp_min + RTP_PORTS; port++)
        spray_rtp(fd, port);
    close(fd);
    assert_int_equal(sipp_wait(w, &held), 0);
    assert_int_equal(sipp_log_count(&held, "answered "), 1);
    assert_true(gateway_alive(w));
    status_call(w, "after-garbage");
    assert_true(gateway_alive(w));
    assert_int_equal(th_http_get(w->http_port, "/healthz", NULL), 200);
    stop_gateway(w);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_status_by_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loss_by_rtp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_number, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_cap, setup_two_calls, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_datagrams, setup, teardown),
    };
    return cmocka_run_group_tests_name("voice_e2e", tests, NULL, NULL);
}
