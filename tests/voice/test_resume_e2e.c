/* test_resume_e2e — agent → IVR → agent on voice, end to end: sipp as the
 * citizen, the real cardline daemon, a real redis-server and the registry
 * simulator on its demo seed. A citizen identifies (ID and PIN by SIP
 * INFO), asks for an agent and is REFERred to the agent URI; the agent asks
 * the Agent API for a resume URI (and afterwards reads the outcome there);
 * the refusal cases write tokens straight into Redis as the API does
 * (`cl:x:<token>`, docs/agents.md) to make them expired or malformed;
 * then sipp plays the caller the agent's phone transferred to
 * sip:resume-<token>@gateway: it types the PIN as RFC 4733 events and must
 * be REFERred back to the token's return URI. The cases:
 *   - the right PIN: the session shows assist_node verify_pin and
 *     assist_result verified, is with the agent again (queue "return"), and
 *     the PIN is in neither the session, its events nor the gateway's log;
 *     the same token again is refused 404 and changes nothing;
 *   - a wrong PIN: assist_result failed, still REFERred back;
 *   - the agent's phone declines the REFER back: the flow's fallback ends
 *     the call, the outcome stays in the session;
 *   - the caller hangs up before typing: the session ends "abandoned";
 *   - tokens that resume nothing — unknown, expired, malformed, naming a
 *     session that does not exist, carrying a return URI that would break
 *     the Refer-To header — are each refused 404, and a taken token is
 *     gone for good.
 * Prompts have no audio (an empty prompts_dir), so a flow runs as fast as
 * its keys arrive. RFC 4733 needs sipp's raw socket (root or CAP_NET_RAW):
 * without it the two PIN cases are skipped. Every wait is bounded; each
 * case stops the daemon with SIGTERM and expects exit 0 (LeakSanitizer
 * clean). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <curl/curl.h>
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
#define AGENT "li"
#define AGENT_TOKEN "resume-e2e-agent-token" /* its bearer token; the tokens file keeps the digest */
#define AGENT_TOKEN_SHA256 "e8c2ea9519d7e786f69192d3b226f7003648963891d4e59f6dcb4b8b0b1e1e1a"

/* 王伟 of the demo seed: card A10000001 (normal), service PIN 246810. */
#define ID "110101199003074514"
#define PIN "246810"
#define WRONG_PIN "135790"

/* The citizen's keys by INFO: 1 中文, 1 status, the ID and #, the PIN and
 * #, then 0 (an agent) at the menu after the status. */
static const char TO_AGENT_KEYS[] = "11" ID "#" PIN "#0";
static const char TO_AGENT_EVENTS[] = "input main.choose_lang 1 | input main.main_menu 1 | "
                                      "input identify.ask_id " ID " | input identify.ask_pin <secret> | "
                                      "result identify.verify ok | result status.lookup normal | "
                                      "result status.progress activated | input main.after_task 0";

typedef struct {
    char dir[256];               /* everything of the test */
    char conf[300];              /* the gateway's config */
    int http_port;               /* /healthz and /metrics */
    int agents_port;             /* the Agent API */
    int sip_port;                /* [voice] listen */
    int sipp_port;               /* sipp's SIP port: the agent URI's, and the agent's return URI */
    int media_port;              /* sipp's media port */
    int rtp_min;                 /* [voice] rtp_port_min */
    int runs;                    /* sipp runs so far (each gets a directory) */
    th_proc redis;               /* real redis-server */
    th_proc sim;                 /* registry-sim, demo seed */
    th_proc gw;                  /* the cardline daemon */
    th_proc sipp;                /* the sipp run under way, if any */
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

static int count_in(const char *text, const char *needle)
{
    int n = 0;
    for (const char *at = text; (at = strstr(at, needle)) != NULL; at += strlen(needle))
        n++;
    return n;
}

/* The gateway ----------------------------------------------------------------------*/

/* An even base in 30000..59958 that differs between runs, so tests run in
 * parallel rarely meet on an RTP port. */
static int pick_rtp_base(void)
{
    return 30000 + 2 * (int)(((unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL)) % 14980);
}

/* One agent, li, whose resumed callers return to sipp's address. */
static void write_agents(const world *w, char path[300])
{
    char text[512];
    snprintf(path, 300, "%s/agents.yaml", w->dir);
    snprintf(text, sizeof text,
             "agents:\n  - name: " AGENT "\n    role: agent\n    token_sha256: " AGENT_TOKEN_SHA256
             "\n    sip_uri: sip:" AGENT "@127.0.0.1:%d\n",
             w->sipp_port);
    write_file(path, text);
}

static void write_conf(world *w)
{
    char prompts[256], agents[300], text[2048];
    subdir(w->dir, "prompts", prompts); /* empty: every prompt plays as nothing */
    write_agents(w, agents);
    snprintf(text, sizeof text,
             "[log]\nlevel = info\nflush_ms = 0\n" /* lines are counted right after each act */
             "[http]\nlisten = 127.0.0.1:%d\n"
             "[redis]\nport = %d\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n"
             "[registry]\nurl = http://127.0.0.1:%d\nhealth_interval_ms = 200\n"
             "[dialplans]\ndir = %s/dialplans\n"
             "[ussd]\nhop_key_secret = resume end-to-end test secret\n"
             "[gateway]\nshutdown_grace_ms = 3000\n"
             "[voice]\nenabled = 1\nlisten = 127.0.0.1:%d\ntrunks = 127.0.0.1\nmax_calls = 8\n"
             "rtp_address = 127.0.0.1\nrtp_port_min = %d\nrtp_port_max = %d\n"
             "agent_uri = sip:{queue}@127.0.0.1:%d\nrefer_timeout_ms = 3000\n"
             "inter_digit_timeout_ms = 1000\nprompts_dir = %s\n"
             "[agents]\nenabled = 1\nlisten = 127.0.0.1:%d\ntokens_file = %s\n",
             w->http_port, w->redis.port, w->sim.port, CL_SOURCE_DIR, w->sip_port, w->rtp_min,
             w->rtp_min + RTP_PORTS - 1, w->sipp_port, prompts, w->agents_port, agents);
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

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    char dir[256];
    th_mkdtemp(w->dir, "cl-resume-e2e");
    *state = w;
    subdir(w->dir, "redis", dir);
    if (!th_redis_start(&w->redis, dir, false))
        return -1;
    subdir(w->dir, "sim", dir);
    if (!th_sim_start(&w->sim, dir, NULL, NULL))
        return -1;
    w->http_port = th_free_port();
    w->agents_port = th_free_port();
    w->sip_port = th_free_port();
    w->sipp_port = th_free_port();
    w->media_port = th_free_port();
    w->rtp_min = pick_rtp_base();
    write_conf(w);
    subdir(w->dir, "gw", w->gw.dir);
    const char *argv[] = {CL_GATEWAY_BIN, "--config", w->conf, NULL};
    if (!th_spawn(&w->gw, "cardline", argv) || !th_wait_port(w->http_port, WAIT_MS) || !gateway_ready(w))
        return -1;
    return 0;
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
    char call_id[64];            /* Call-ID of its call */
    char errors[300];            /* -error_file */
    char log[300];               /* -log_file: what the scenario's <log> actions wrote */
} sipp_run;

/* Runs sipp as a UAC calling `service` with scenario `scenario` (a file of
 * CL_SIPP_DIR), `extra` (NULL-terminated, may be NULL) after the common
 * options; one call whose Call-ID is "<tag>-1@cardline-e2e". Returns its
 * exit code once it is done (killed past SIPP_WAIT_MS): 0 when the call
 * went as the scenario says. */
static int sipp(world *w, sipp_run *r, const char *tag, const char *scenario, const char *service,
                const char *const *extra)
{
    char name[32], remote[32], sf[300], port[16], mport[16], cid[64];
    memset(r, 0, sizeof *r);
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

static int sipp_log_count(const sipp_run *r, const char *needle)
{
    char *text = read_all(r->log);
    int n = count_in(text, needle);
    free(text);
    return n;
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

/* Redis ----------------------------------------------------------------------------------*/

static redisContext *redis_connect(const world *w)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", w->redis.port, tv);
    assert_true(c != NULL && c->err == 0);
    return c;
}

/* The document of session `id`, or NULL when there is none. */
static json_t *session_doc(const world *w, const char *id)
{
    redisContext *c = redis_connect(w);
    redisReply *r = redisCommand(c, "HGET cl:s:%s doc", id);
    assert_non_null(r);
    json_t *doc = r->type == REDIS_REPLY_STRING ? json_loadb(r->str, r->len, 0, NULL) : NULL;
    freeReplyObject(r);
    redisFree(c);
    return doc;
}

static const char *doc_str(json_t *doc, const char *a, const char *b)
{
    json_t *v = json_object_get(doc, a);
    return json_string_value(b ? json_object_get(v, b) : v);
}

/* Polls until session `id` is in `state` and, when `result` is not NULL,
 * its assist_result var is `result`. */
static void wait_session(const world *w, const char *id, const char *state, const char *result)
{
    long deadline = th_now_ms() + WAIT_MS;
    for (;;) {
        json_t *doc = session_doc(w, id);
        const char *s = doc_str(doc, "state", NULL), *got = doc_str(doc, "vars", "assist_result");
        bool done = s && strcmp(s, state) == 0 && (!result || (got && strcmp(got, result) == 0));
        char seen[96];
        snprintf(seen, sizeof seen, "state %s, assist_result %s", s ? s : "(none)", got ? got : "(none)");
        json_decref(doc);
        if (done)
            return;
        if (th_now_ms() > deadline)
            fail_msg("session %s: %s; wanted %s, %s", id, seen, state, result ? result : "any");
        pause_briefly();
    }
}

/* The session's event list as "KIND NODE [INPUT]" for the caller's inputs,
 * transfer backs and handler results, joined by " | ". */
static char *caller_events(const world *w, const char *id)
{
    redisContext *c = redis_connect(w);
    redisReply *r = redisCommand(c, "LRANGE cl:e:%s 0 -1", id);
    assert_true(r != NULL && r->type == REDIS_REPLY_ARRAY);
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    for (size_t i = 0; i < r->elements; i++) {
        char kind[32] = "", node[96] = "", input[128] = "";
        long long ts;
        int got = sscanf(r->element[i]->str, "%31s %95s %lld %127[^\n]", kind, node, &ts, input);
        if (got < 3 || (strcmp(kind, "input") && strcmp(kind, "transfer_back") && strcmp(kind, "result")))
            continue;
        fprintf(f, "%s%s %s%s%s", ftell(f) ? " | " : "", kind, node, input[0] ? " " : "", input);
    }
    fclose(f);
    freeReplyObject(r);
    redisFree(c);
    return out;
}

/* The session's events from the agent's transfer on must end with `want`. */
static void assert_events_end(const world *w, const char *id, const char *want)
{
    char *got = caller_events(w, id);
    size_t g = strlen(got), n = strlen(want);
    bool ok = g >= n && strcmp(got + g - n, want) == 0;
    if (!ok)
        print_error("events of %s\n  got:  %s\n  want: ...%s\n", id, got, want);
    free(got);
    assert_true(ok);
}

static long long redis_int(const world *w, const char *cmd, const char *key)
{
    redisContext *c = redis_connect(w);
    redisReply *r = redisCommand(c, "%s %s", cmd, key);
    assert_true(r != NULL && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

/* A token as the agent API makes one: 32 lowercase hex characters. */
static void new_token(char out[33])
{
    static unsigned seq;
    unsigned long long x = (unsigned long long)th_now_ms() * 6364136223846793005ull + (unsigned)getpid() + ++seq;
    for (int i = 0; i < 32; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        out[i] = "0123456789abcdef"[(x >> 59) & 15];
    }
    out[32] = '\0';
}

/* The agent's request to the Agent API: `method` on /v1/sessions/{session}
 * + `tail` with `body`; the status, and the answer's JSON in *out. */
static long api(const world *w, const char *method, const char *session, const char *tail, const char *body,
                json_t **out)
{
    char path[512], *escaped = curl_easy_escape(NULL, session, 0);
    snprintf(path, sizeof path, "/v1/sessions/%s%s", escaped, tail);
    curl_free(escaped);
    const char *headers[] = {"Authorization: Bearer " AGENT_TOKEN, "Content-Type: application/json", NULL};
    th_response r = th_request(w->agents_port, method, path, body, headers);
    *out = json_loads(r.body, 0, NULL);
    long status = r.status;
    th_response_free(&r);
    return status;
}

/* POST …/resume: the one-time URI the agent's phone transfers the caller
 * to; its token (32 hex) goes to `token`. */
static void api_resume(const world *w, const char *session, const char *node, char token[33])
{
    char body[128];
    json_t *answer;
    snprintf(body, sizeof body, "{\"node\": \"%s\"}", node);
    assert_int_equal(api(w, "POST", session, "/resume", body, &answer), 201);
    const char *uri = json_string_value(json_object_get(answer, "uri"));
    assert_non_null(uri);
    assert_int_equal(strncmp(uri, "sip:resume-", 11), 0);
    assert_true(strlen(uri) > 11 + 32 && uri[11 + 32] == '@');
    memcpy(token, uri + 11, 32);
    token[32] = '\0';
    json_decref(answer);
}

/* What the agent's tools show after the caller came back. */
static void assert_api_assist(const world *w, const char *session, const char *result)
{
    json_t *ctx;
    assert_int_equal(api(w, "GET", session, "", NULL, &ctx), 200);
    json_t *assist = json_object_get(ctx, "assist");
    assert_string_equal(json_string_value(json_object_get(assist, "node")), "verify_pin");
    assert_string_equal(json_string_value(json_object_get(assist, "result")), result);
    assert_string_equal(json_string_value(json_object_get(ctx, "state")), "transfer");
    char *text = json_dumps(ctx, JSON_COMPACT);
    assert_null(strstr(text, PIN)); /* the agent never sees the digits either */
    free(text);
    json_decref(ctx);
}

/* Writes `cl:x:<token>` in the agent API's format (docs/agents.md), living
 * `ttl_ms`. */
static void write_token(const world *w, const char *token, const char *session, const char *node,
                        const char *return_uri, long ttl_ms)
{
    char key[64], ttl[24];
    snprintf(key, sizeof key, "cl:x:%s", token);
    snprintf(ttl, sizeof ttl, "%ld", ttl_ms);
    json_t *value = json_pack("{s:s, s:s, s:s, s:s, s:I}", "session", session, "node", node, "agent", AGENT,
                              "return_uri", return_uri, "created_ms", (json_int_t)th_now_ms());
    char *text = json_dumps(value, JSON_COMPACT);
    const char *argv[] = {"SET", key, text, "PX", ttl};
    char *reply = th_redis_cmd(&w->redis, 5, argv);
    assert_non_null(reply);
    assert_string_equal(reply, "OK");
    free(reply);
    free(text);
    json_decref(value);
}

static bool token_exists(const world *w, const char *token)
{
    char key[64];
    snprintf(key, sizeof key, "cl:x:%s", token);
    return redis_int(w, "EXISTS", key) == 1;
}

/* The gateway's figures and log ------------------------------------------------------------*/

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
    int n = count_in(text, needle);
    free(text);
    return n;
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

/* `pin` in neither the session's document nor its events nor the log. */
static void assert_pin_kept_secret(const world *w, const char *id, const char *pin)
{
    json_t *doc = session_doc(w, id);
    char *text = json_dumps(doc, 0), *events = caller_events(w, id), *log = read_all(w->gw.log);
    bool in_doc = text == NULL || has_digit_run(text, pin), in_events = has_digit_run(events, pin);
    bool in_log = has_digit_run(log, pin);
    free(text);
    free(events);
    free(log);
    json_decref(doc);
    assert_false(in_doc);
    assert_false(in_events);
    assert_false(in_log);
}

/* The token is a credential: no line of the gateway's log names it. */
static void assert_token_unlogged(const world *w, const char *token)
{
    char *log = read_all(w->gw.log);
    bool leaked = strstr(log, token) != NULL;
    free(log);
    assert_false(leaked);
}

/* The journey ------------------------------------------------------------------------------*/

/* The citizen identifies and asks for an agent: REFERred to the agent URI
 * of queue "general", the session waits in "transfer". Its id goes to
 * `session`. */
static void citizen_to_agent(world *w, char session[96])
{
    sipp_run r;
    const char *extra[] = {"-key", "keys", TO_AGENT_KEYS, NULL};
    assert_int_equal(sipp(w, &r, "citizen", "e2e-transfer.xml", HOTLINE, extra), 0);
    snprintf(session, 96, "voice:%s", r.call_id);
    wait_session(w, session, "transfer", NULL);
    json_t *doc = session_doc(w, session);
    assert_string_equal(doc_str(doc, "transfer", "queue"), "general");
    assert_string_equal(doc_str(doc, "vars", "id"), ID);
    json_decref(doc);
    char *events = caller_events(w, session);
    bool same = strcmp(events, TO_AGENT_EVENTS) == 0;
    if (!same)
        print_error("events of %s\n  got:  %s\n  want: %s\n", session, events, TO_AGENT_EVENTS);
    free(events);
    assert_true(same);
    wait_calls(w, 0);
}

static void return_uri(const world *w, char out[64])
{
    snprintf(out, 64, "sip:" AGENT "@127.0.0.1:%d", w->sipp_port);
}

/* The caller the agent sent to the resume URI types `digits` and is
 * REFERred back to the agent, the session header naming `session`; the
 * agent's phone answers the REFER `refer_answer` ("202" or "603"). */
static void resumed_call(world *w, const char *token, const char *session, const char *digits,
                         const char *refer_answer)
{
    char service[64], uri[64], want[200];
    sipp_run r;
    snprintf(service, sizeof service, "resume-%s", token);
    const char *extra[] = {"-key", "digits", digits, "-key", "refer_answer", refer_answer, NULL};
    assert_int_equal(sipp(w, &r, "resumed", "resume-assist.xml", service, extra), 0);
    return_uri(w, uri);
    snprintf(want, sizeof want, "REFER session=%s refer_to=%s ", session, uri);
    int seen = sipp_log_count(&r, want);
    if (seen != 1) {
        char *log = read_all(r.log);
        print_error("wanted \"%s\" once in sipp's log:\n%s\n", want, log);
        free(log);
    }
    assert_int_equal(seen, 1);
}

static void expect_not_found(world *w, const char *tag, const char *service)
{
    sipp_run r;
    assert_int_equal(sipp(w, &r, tag, "e2e-not-found.xml", service, NULL), 0);
}

/* The session is with the agent again, the outcome in its variables and
 * its transfer reason. */
static void assert_assist(const world *w, const char *session, const char *result)
{
    char reason[64];
    wait_session(w, session, "transfer", result);
    json_t *doc = session_doc(w, session);
    snprintf(reason, sizeof reason, "assist verify_pin: %s", result);
    assert_string_equal(doc_str(doc, "vars", "assist_node"), "verify_pin");
    assert_string_equal(doc_str(doc, "transfer", "queue"), "return");
    assert_string_equal(doc_str(doc, "transfer", "reason"), reason);
    assert_string_equal(doc_str(doc, "flow", NULL), "assist");
    assert_string_equal(doc_str(doc, "node", NULL), "return_to_agent");
    json_decref(doc);
}

/* The cases ---------------------------------------------------------------------------------*/

static void test_resume_verified(void **state)
{
    world *w = *state;
    if (!can_play_pcap()) {
        print_message("skipped: sipp's play_pcap_audio needs root or CAP_NET_RAW\n");
        skip();
    }
    char session[96], token[33], service[64];
    citizen_to_agent(w, session);
    api_resume(w, session, "assist.verify_pin", token);

    resumed_call(w, token, session, PIN "#", "202");
    assert_assist(w, session, "verified");
    assert_api_assist(w, session, "verified");
    assert_false(token_exists(w, token));
    assert_events_end(w, session,
                      "input main.after_task 0 | transfer_back agent.to_agent | input assist.ask_pin <secret> | "
                      "result assist.verify ok");
    assert_pin_kept_secret(w, session, PIN);
    assert_token_unlogged(w, token);
    assert_int_equal(gateway_log_count(w, "event=voice.resume "), 1);
    assert_int_equal(metric(w, "cardline_voice_resumed_total"), 1);
    wait_calls(w, 0);

    /* The same token again: spent. The session is left as it was. */
    snprintf(service, sizeof service, "resume-%s", token);
    expect_not_found(w, "replay", service);
    assert_assist(w, session, "verified");
    assert_int_equal(gateway_log_count(w, "why=no_token"), 1);
    assert_int_equal(metric(w, "cardline_voice_resumed_total"), 1);
    stop_gateway(w);
}

static void test_resume_wrong_pin(void **state)
{
    world *w = *state;
    if (!can_play_pcap()) {
        print_message("skipped: sipp's play_pcap_audio needs root or CAP_NET_RAW\n");
        skip();
    }
    char session[96], token[33];
    citizen_to_agent(w, session);
    api_resume(w, session, "assist.verify_pin", token);

    resumed_call(w, token, session, WRONG_PIN "#", "202");
    assert_assist(w, session, "failed");
    assert_api_assist(w, session, "failed");
    assert_events_end(w, session, "transfer_back agent.to_agent | input assist.ask_pin <secret> | "
                                  "result assist.verify wrong_pin");
    assert_pin_kept_secret(w, session, WRONG_PIN);
    assert_pin_kept_secret(w, session, PIN);
    assert_token_unlogged(w, token);
    stop_gateway(w);
}

/* The agent's phone refuses the caller back: the transfer node's
 * fallback says so and ends the call; the agent still sees the outcome. */
static void test_resume_agent_gone(void **state)
{
    world *w = *state;
    if (!can_play_pcap()) {
        print_message("skipped: sipp's play_pcap_audio needs root or CAP_NET_RAW\n");
        skip();
    }
    char session[96], token[33], uri[64];
    citizen_to_agent(w, session);
    new_token(token);
    return_uri(w, uri);
    write_token(w, token, session, "assist.verify_pin", uri, 60000);

    resumed_call(w, token, session, PIN "#", "603");
    wait_session(w, session, "end", "verified");
    json_t *doc = session_doc(w, session);
    assert_string_equal(doc_str(doc, "node", NULL), "agent_gone");
    assert_string_equal(doc_str(doc, "vars", "assist_node"), "verify_pin");
    json_decref(doc);
    assert_events_end(w, session, "result assist.verify ok | transfer_back assist.return_to_agent");
    assert_int_equal(gateway_log_count(w, "event=voice.transfer_failed"), 1);
    assert_pin_kept_secret(w, session, PIN);
    stop_gateway(w);
}

/* The caller leaves before typing: the session ends like any call's, its
 * outcome "abandoned". */
static void test_resume_hangup(void **state)
{
    world *w = *state;
    char session[96], token[33], uri[64], service[64];
    sipp_run r;
    citizen_to_agent(w, session);
    new_token(token);
    return_uri(w, uri);
    write_token(w, token, session, "assist.verify_pin", uri, 60000);

    snprintf(service, sizeof service, "resume-%s", token);
    assert_int_equal(sipp(w, &r, "hangup", "resume-hangup.xml", service, NULL), 0);
    wait_session(w, session, "end", "abandoned");
    json_t *doc = session_doc(w, session);
    assert_string_equal(doc_str(doc, "vars", "assist_node"), "verify_pin");
    assert_string_equal(doc_str(doc, "node", NULL), "ask_pin");
    json_decref(doc);
    assert_int_equal(metric(w, "cardline_voice_resumed_total"), 1);
    wait_calls(w, 0);
    stop_gateway(w);
}

/* Tokens that resume nothing, each refused 404 before or without an answer. */
static void test_resume_refused(void **state)
{
    world *w = *state;
    char token[33], service[64], uri[64];
    return_uri(w, uri);

    new_token(token); /* never written */
    snprintf(service, sizeof service, "resume-%s", token);
    expect_not_found(w, "unknown", service);

    new_token(token); /* expired: its TTL ran out before the call */
    write_token(w, token, "voice:gone@cardline-e2e", "assist.verify_pin", uri, 1000);
    long deadline = th_now_ms() + WAIT_MS;
    while (token_exists(w, token)) {
        if (th_now_ms() > deadline)
            fail_msg("token still in Redis %d ms after its 1 s TTL", WAIT_MS);
        pause_briefly();
    }
    snprintf(service, sizeof service, "resume-%s", token);
    expect_not_found(w, "expired", service);
    assert_int_equal(gateway_log_count(w, "why=no_token"), 2);

    expect_not_found(w, "malformed", "resume-NOT-A-TOKEN");
    expect_not_found(w, "short", "resume-0123abcd");
    assert_int_equal(gateway_log_count(w, "why=bad_token"), 2);

    new_token(token); /* names a session that does not exist */
    write_token(w, token, "voice:nobody@cardline-e2e", "assist.verify_pin", uri, 60000);
    snprintf(service, sizeof service, "resume-%s", token);
    expect_not_found(w, "no-session", service);
    assert_false(token_exists(w, token)); /* spent all the same */
    assert_int_equal(gateway_log_count(w, "why=no_session"), 1);
    assert_null(session_doc(w, "voice:nobody@cardline-e2e"));

    new_token(token); /* a return URI that would break out of Refer-To */
    write_token(w, token, "voice:nobody@cardline-e2e", "assist.verify_pin", "sip:li@127.0.0.1>;x=<sip:evil", 60000);
    snprintf(service, sizeof service, "resume-%s", token);
    expect_not_found(w, "bad-uri", service);
    assert_int_equal(gateway_log_count(w, "why=bad_token"), 3);

    assert_token_unlogged(w, token);
    assert_int_equal(metric(w, "cardline_voice_resumed_total"), 0);
    assert_int_equal(metric(w, "cardline_voice_refused_total"), 6);
    wait_calls(w, 0);
    stop_gateway(w);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resume_verified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_wrong_pin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_agent_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_hangup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_refused, setup, teardown),
    };
    return cmocka_run_group_tests_name("resume_e2e", tests, NULL, NULL);
}
