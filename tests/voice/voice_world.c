/* voice_world — the world of the sipp end-to-end suites; see voice_world.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "voice_world.h"

/* Text ---------------------------------------------------------------------------------------*/

void vw_refer_to(char *out, size_t size, const char *target, const char *session)
{
    int n = snprintf(out, size, "%s?X-Cardline-Session=", target);
    for (const char *c = session; *c && n + 4 < (int)size; c++)
        n += *c == '@' ? snprintf(out + n, size - n, "%%40") : snprintf(out + n, size - n, "%c", *c);
}

/* The world ------------------------------------------------------------------------------*/

/* An even base in 30000..59958 that differs between runs, so tests run in
 * parallel rarely meet on an RTP port. */
static int pick_rtp_base(void)
{
    return 30000 + 2 * (int)(((unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL)) % 14980);
}

static void write_conf(vw_world *w)
{
    char prompts[256];
    th_subdir(w->tw.dir, "prompts", prompts); /* empty: every prompt plays as nothing */
    FILE *f = fopen(w->tw.conf, "w");
    assert_non_null(f);
    fprintf(f,
            "[log]\nlevel = info\nflush_ms = 0\n" /* lines are counted right after each act */
            "[http]\nlisten = 127.0.0.1:%d\n"
            "[redis]\nport = %d\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n"
            "[registry]\nurl = http://127.0.0.1:%d\nhealth_interval_ms = 200\n"
            "[dialplans]\ndir = %s/dialplans\n"
            "[ussd]\nhop_key_secret = %s end-to-end test secret\n"
            "[gateway]\nshutdown_grace_ms = 3000\n"
            "[voice]\nenabled = 1\nlisten = 127.0.0.1:%d\ntrunks = 127.0.0.1\nmax_calls = %d\n"
            "rtp_address = 127.0.0.1\nrtp_port_min = %d\nrtp_port_max = %d\n"
            "agent_uri = sip:{queue}@127.0.0.1:%d\nrefer_timeout_ms = 3000\n"
            "inter_digit_timeout_ms = 1000\nprompts_dir = %s\n",
            w->tw.http_port, w->tw.redis.port, w->tw.sim.port, CL_SOURCE_DIR, w->suite->name, w->sip_port,
            w->suite->max_calls, w->rtp_min, w->rtp_min + VW_RTP_PORTS - 1, w->sipp_port, prompts);
    if (w->suite->more_conf)
        w->suite->more_conf(w, f);
    assert_int_equal(fclose(f), 0);
}

int vw_setup(void **state, const vw_suite *suite)
{
    vw_world *w = calloc(1, sizeof *w);
    char prefix[64];
    w->suite = suite;
    snprintf(prefix, sizeof prefix, "cl-%s-e2e", suite->name);
    *state = w;
    tw_init(&w->tw, prefix);
    if (!tw_start_servers(&w->tw, false, NULL, NULL))
        return -1;
    w->sip_port = th_free_port();
    w->sipp_port = th_free_port();
    w->media_port = th_free_port();
    w->rtp_min = pick_rtp_base();
    write_conf(w);
    return tw_start_gateway(&w->tw, true, VW_WAIT_MS) ? 0 : -1;
}

int vw_teardown(void **state)
{
    vw_world *w = *state;
    th_kill(&w->sipp);
    tw_stop(&w->tw, 0);
    free(w);
    return 0;
}

/* The last `most` bytes of `text`. */
static const char *tail(const char *text, size_t most)
{
    size_t len = strlen(text);
    return text + (len > most ? len - most : 0);
}

void vw_stop_gateway(vw_world *w)
{
    int status = th_stop(&w->tw.gw, VW_WAIT_MS);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!clean) {
        char *log = th_read_text(w->tw.gw.log);
        print_error("gateway exit status %d; its log ends:\n%s\n", status, tail(log, 4000));
        free(log);
    }
    assert_true(clean);
}

/* sipp -------------------------------------------------------------------------------------*/

void vw_sipp_start(vw_world *w, vw_sipp_run *r, const char *tag, const char *scenario, const char *service,
                   const char *const *extra)
{
    char name[32], remote[32], sf[300], port[16], mport[16], cid[64];
    memset(r, 0, sizeof *r);
    assert_int_equal(w->sipp.pid, 0);
    snprintf(name, sizeof name, "sipp-%d-%s", ++w->runs, tag);
    th_subdir(w->tw.dir, name, r->dir);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", w->sip_port);
    snprintf(sf, sizeof sf, "%s/%s", CL_SIPP_DIR, scenario);
    snprintf(port, sizeof port, "%d", w->sipp_port);
    snprintf(mport, sizeof mport, "%d", w->media_port);
    snprintf(cid, sizeof cid, "%s-%%u@cardline-e2e", tag);
    snprintf(r->call_id, sizeof r->call_id, "%s-1@cardline-e2e", tag);
    snprintf(r->session, sizeof r->session, "voice:%s", r->call_id);
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

int vw_sipp_wait(vw_world *w, const vw_sipp_run *r)
{
    int status = -1;
    long deadline = th_now_ms() + VW_SIPP_WAIT_MS;
    while (waitpid(w->sipp.pid, &status, WNOHANG) == 0) {
        if (th_now_ms() > deadline) {
            th_kill(&w->sipp);
            fail_msg("sipp (%s) still running after %d ms", r->dir, VW_SIPP_WAIT_MS);
        }
        th_poll_pause();
    }
    w->sipp.pid = 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0) {
        char *errors = th_read_text(r->errors), *gw = th_read_text(w->tw.gw.log);
        print_error("sipp exit %d; its errors:\n%s\ngateway log ends:\n%s\n", code, errors, tail(gw, 6000));
        free(errors);
        free(gw);
    }
    return code;
}

int vw_sipp(vw_world *w, vw_sipp_run *r, const char *tag, const char *scenario, const char *service,
            const char *const *extra)
{
    vw_sipp_start(w, r, tag, scenario, service, extra);
    return vw_sipp_wait(w, r);
}

int vw_sipp_log_count(const vw_sipp_run *r, const char *needle)
{
    char *text = th_read_text(r->log);
    int n = th_count(text, needle);
    free(text);
    return n;
}

void vw_assert_sipp_logged_once(const vw_sipp_run *r, const char *want)
{
    int seen = vw_sipp_log_count(r, want);
    if (seen != 1) {
        char *log = th_read_text(r->log);
        print_error("wanted \"%s\" once in sipp's log:\n%s\n", want, log);
        free(log);
    }
    assert_int_equal(seen, 1);
}

void vw_skip_without_pcap(void)
{
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    if (fd >= 0) {
        close(fd);
        return;
    }
    print_message("skipped: sipp's play_pcap_audio needs root or CAP_NET_RAW\n");
    skip();
}

/* The session in Redis ----------------------------------------------------------------------*/

redisContext *vw_redis_connect(const vw_world *w)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", w->tw.redis.port, tv);
    assert_true(c != NULL && c->err == 0);
    return c;
}

json_t *vw_session_doc(const vw_world *w, const char *id)
{
    redisContext *c = vw_redis_connect(w);
    redisReply *r = redisCommand(c, "HGET cl:s:%s doc", id);
    assert_non_null(r);
    json_t *doc = r->type == REDIS_REPLY_STRING ? json_loadb(r->str, r->len, 0, NULL) : NULL;
    freeReplyObject(r);
    redisFree(c);
    return doc;
}

const char *vw_doc_str(json_t *doc, const char *a, const char *b)
{
    json_t *v = json_object_get(doc, a);
    return json_string_value(b ? json_object_get(v, b) : v);
}

void vw_wait_session(const vw_world *w, const char *id, const char *state, const char *result)
{
    long deadline = th_now_ms() + VW_WAIT_MS;
    for (;;) {
        json_t *doc = vw_session_doc(w, id);
        const char *s = vw_doc_str(doc, "state", NULL), *got = vw_doc_str(doc, "vars", "assist_result");
        bool done = s && strcmp(s, state) == 0 && (!result || (got && strcmp(got, result) == 0));
        char seen[96];
        snprintf(seen, sizeof seen, "state %s, assist_result %s", s ? s : "(none)", got ? got : "(none)");
        json_decref(doc);
        if (done)
            return;
        if (th_now_ms() > deadline)
            fail_msg("session %s: %s; wanted %s, %s", id, seen, state, result ? result : "any");
        th_poll_pause();
    }
}

static bool kept_kind(const vw_world *w, const char *kind)
{
    for (const char *const *k = w->suite->event_kinds; *k; k++)
        if (strcmp(*k, kind) == 0)
            return true;
    return false;
}

char *vw_session_events(const vw_world *w, const char *id)
{
    redisContext *c = vw_redis_connect(w);
    redisReply *r = redisCommand(c, "LRANGE cl:e:%s 0 -1", id);
    assert_true(r != NULL && r->type == REDIS_REPLY_ARRAY);
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    for (size_t i = 0; i < r->elements; i++) {
        char kind[32] = "", node[96] = "", input[128] = "";
        long long ts;
        int got = sscanf(r->element[i]->str, "%31s %95s %lld %127[^\n]", kind, node, &ts, input);
        if (got < 3 || !kept_kind(w, kind))
            continue;
        fprintf(f, "%s%s %s%s%s", ftell(f) ? " | " : "", kind, node, input[0] ? " " : "", input);
    }
    fclose(f);
    freeReplyObject(r);
    redisFree(c);
    return out;
}

void vw_assert_events(const vw_world *w, const char *id, const char *want)
{
    char *got = vw_session_events(w, id);
    bool same = strcmp(got, want) == 0;
    if (!same)
        print_error("events of %s\n  got:  %s\n  want: %s\n", id, got, want);
    free(got);
    assert_true(same);
}

void vw_assert_pin_kept_secret(const vw_world *w, const char *id, const char *pin)
{
    json_t *doc = vw_session_doc(w, id);
    char *text = json_dumps(doc, 0), *events = vw_session_events(w, id), *log = th_read_text(w->tw.gw.log);
    bool in_doc = text == NULL || th_has_number(text, strlen(text), pin), in_events = th_has_number(events, strlen(events), pin);
    bool in_log = th_has_number(log, strlen(log), pin);
    free(text);
    free(events);
    free(log);
    json_decref(doc);
    assert_false(in_doc);
    assert_false(in_events);
    assert_false(in_log);
}

/* The gateway's figures and log ------------------------------------------------------------*/

double vw_metric(const vw_world *w, const char *name)
{
    char *body = NULL, line[128];
    double v = -1;
    th_http_get(w->tw.http_port, "/metrics", &body);
    snprintf(line, sizeof line, "\n%s ", name);
    const char *at = body ? strstr(body, line) : NULL;
    if (at)
        v = strtod(at + strlen(line), NULL);
    free(body);
    return v;
}

void vw_wait_calls(const vw_world *w, int calls)
{
    long deadline = th_now_ms() + VW_WAIT_MS;
    while (vw_metric(w, "cardline_voice_calls") != calls) {
        if (th_now_ms() > deadline)
            fail_msg("cardline_voice_calls stayed at %g, wanted %d", vw_metric(w, "cardline_voice_calls"), calls);
        th_poll_pause();
    }
}

