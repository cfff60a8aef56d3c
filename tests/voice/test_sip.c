/* test_sip — the SIP thread against sipp as a real caller on 127.0.0.1:
 * answers with DTMF by INFO over UDP and TCP, transfers (accepted, refused,
 * unanswered), refusals decided by the thread (source, cap, codec, bad or
 * missing SDP) and by the test (404), hold by re-INVITE, CANCEL, the
 * caller's BYE, garbage on the SIP port, the issue 13 datagram (from a
 * stranger and from a trunk, with the memory it cost), the caller taken
 * from P-Asserted-Identity on a trusted trunk only, the liveness ping of a
 * frozen thread, and stop with calls in progress. Each case runs one or two sipp processes with
 * `-m 1 -timeout 10s -timeout_error` and asserts on sipp's exit code and on
 * the events the test's callback received, in order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "harness.h"
#include "rtp.h"
#include "sip.h"

#define FAKE_RTP_PORT 40000        /* what the answer SDP must carry (the scenarios check it) */
#define MAX_EVENTS 64
#define WAIT_MS 15000              /* longer than sipp's own -timeout 10s */

typedef enum { ON_ANSWER, ON_REJECT, ON_IGNORE } incoming_plan;

/* What the callback does, and what it saw. */
typedef struct {
    struct event_base *base;
    voice_sip *sip;
    int port;                      /* the SIP port under test */
    char dir[256];                 /* sipp's working directory (logs) */
    incoming_plan on_incoming;     /* reaction to INCOMING */
    int reject_status;             /* for ON_REJECT */
    const char *hangup_after;      /* hang up once these digits came, or NULL */
    bool refer_when_up;            /* REFER on ESTABLISHED */
    bool hangup_on_transfer_failed; /* hang up on TRANSFER_FAILED */
    voice_sip_event ev[MAX_EVENTS]; /* received, in order */
    int nev;                       /* entries in ev */
    char digits[16];               /* DIGIT events, concatenated */
    int mport;                     /* the first sipp's media port (its offer's m= port) */
} ctx;

/* A sipp run. */
typedef struct {
    th_proc p;                     /* the process */
    int exit_code;                 /* sipp's exit code once it ended, -1 before */
    char scenario[64];             /* file name, for the failure dump */
} sipp_run;

static void on_event(const voice_sip_event *ev, void *arg)
{
    ctx *t = arg;
    if (t->nev < MAX_EVENTS)
        t->ev[t->nev++] = *ev;
    switch (ev->kind) {
    case VOICE_SIP_INCOMING:
        if (t->on_incoming == ON_ANSWER)
            voice_sip_answer(t->sip, ev->call, FAKE_RTP_PORT, ev->pt, ev->dtmf_pt);
        else if (t->on_incoming == ON_REJECT)
            voice_sip_reject(t->sip, ev->call, t->reject_status);
        break;
    case VOICE_SIP_ESTABLISHED:
        if (t->refer_when_up)
            voice_sip_refer(t->sip, ev->call, "sip:agent@127.0.0.1:5099", "sess-42");
        break;
    case VOICE_SIP_DIGIT: {
        size_t n = strlen(t->digits);
        if (n + 1 < sizeof t->digits)
            t->digits[n] = ev->digit;
        if (t->hangup_after && strcmp(t->digits, t->hangup_after) == 0)
            voice_sip_hangup(t->sip, ev->call);
        break;
    }
    case VOICE_SIP_TRANSFER_FAILED:
        if (t->hangup_on_transfer_failed)
            voice_sip_hangup(t->sip, ev->call);
        break;
    default:
        break;
    }
}

static int count(const ctx *t, voice_sip_event_kind kind)
{
    int n = 0;
    for (int i = 0; i < t->nev; i++)
        n += t->ev[i].kind == kind;
    return n;
}

static const voice_sip_event *nth(const ctx *t, voice_sip_event_kind kind, int which)
{
    for (int i = 0; i < t->nev; i++)
        if (t->ev[i].kind == kind && which-- == 0)
            return &t->ev[i];
    return NULL;
}

/* The kinds received, as letters, for comparing whole sequences. */
static const char *sequence(const ctx *t)
{
    static char out[MAX_EVENTS + 1];
    static const char letters[] = "IEMDTFX"; /* in voice_sip_event_kind order */
    int i = 0;
    for (; i < t->nev; i++)
        out[i] = letters[t->ev[i].kind];
    out[i] = '\0';
    return out;
}

/* sipp ---------------------------------------------------------------------------*/

static void sipp_start(ctx *t, sipp_run *r, const char *scenario, const char *transport)
{
    char sf[512], remote[32], lport[16], mport[16];
    memset(r, 0, sizeof *r);
    r->exit_code = -1;
    snprintf(r->scenario, sizeof r->scenario, "%s", scenario);
    snprintf(r->p.dir, sizeof r->p.dir, "%s", t->dir);
    snprintf(sf, sizeof sf, "%s/%s", CL_SIPP_DIR, scenario);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", t->port);
    snprintf(lport, sizeof lport, "%d", th_free_port());
    int media_port = th_free_port();
    if (t->mport == 0)
        t->mport = media_port;
    snprintf(mport, sizeof mport, "%d", media_port);
    const char *argv[] = {"sipp", "-sf", sf, "-i", "127.0.0.1", "-p", lport, "-mp", mport,
                          "-s", "5555", "-t", transport, "-m", "1", "-timeout", "10s",
                          "-timeout_error", "-trace_err", "-nostdin", remote, NULL};
    char name[80];
    snprintf(name, sizeof name, "sipp-%s", scenario);
    assert_true(th_spawn(&r->p, name, argv));
}

static bool sipp_done(sipp_run *r)
{
    if (r->p.pid <= 0)
        return true;
    int status;
    if (waitpid(r->p.pid, &status, WNOHANG) != r->p.pid)
        return false;
    r->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r->p.pid = 0;
    return true;
}

static void dump_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[512];
    fprintf(stderr, "---- %s\n", path);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

/* Asserts sipp passed; on failure shows its output and error trace. */
static void assert_sipp_passed(ctx *t, sipp_run *r)
{
    if (r->exit_code != 0) {
        char cmd[600];
        dump_file(r->p.log);
        snprintf(cmd, sizeof cmd, "cat %s/*errors.log 1>&2", t->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no sipp error log)\n");
        fprintf(stderr, "events: %s\n", sequence(t));
    }
    assert_int_equal(r->exit_code, 0);
}

/* The loop, bounded --------------------------------------------------------------*/

typedef bool done_fn(ctx *t, void *arg);

typedef struct {
    ctx *t;
    done_fn *done;
    void *arg;
    long deadline;
    bool met;
} waiter;

static void check_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    waiter *w = arg;
    if (w->done(w->t, w->arg))
        w->met = true;
    if (w->met || th_now_ms() > w->deadline)
        event_base_loopbreak(w->t->base);
}

/* Runs the loop until done() holds or timeout_ms passes; returns done(). */
static bool run_until(ctx *t, done_fn *done, void *arg, int timeout_ms)
{
    waiter w = {t, done, arg, th_now_ms() + timeout_ms, false};
    struct event *tick = event_new(t->base, -1, EV_PERSIST, check_done, &w);
    struct timeval tv = {0, 5000};
    event_add(tick, &tv);
    if (!done(t, arg))
        event_base_dispatch(t->base);
    else
        w.met = true;
    event_free(tick);
    return w.met;
}

static bool sipp_exited(ctx *t, void *arg)
{
    (void)t;
    return sipp_done(arg);
}

typedef struct {
    voice_sip_event_kind kind;
    int n;
} kind_count;

static bool has_events(ctx *t, void *arg)
{
    const kind_count *k = arg;
    return count(t, k->kind) >= k->n;
}

static void wait_events(ctx *t, voice_sip_event_kind kind, int n)
{
    kind_count k = {kind, n};
    if (!run_until(t, has_events, &k, WAIT_MS))
        fprintf(stderr, "events: %s\n", sequence(t));
    assert_int_equal(count(t, kind), n);
}

static void wait_sipp(ctx *t, sipp_run *r)
{
    if (!run_until(t, sipp_exited, r, WAIT_MS))
        th_stop(&r->p, 1000);
    assert_sipp_passed(t, r);
}

/* Runs one sipp scenario to its end, then waits for `ended` ENDED events. */
static void run_call(ctx *t, const char *scenario, const char *transport, int ended)
{
    sipp_run r;
    long t0 = th_now_ms();
    sipp_start(t, &r, scenario, transport);
    wait_sipp(t, &r);
    wait_events(t, VOICE_SIP_ENDED, ended);
    fprintf(stderr, "[ %s/%s: %ld ms ]\n", scenario, transport, th_now_ms() - t0);
}

/* Fixtures -----------------------------------------------------------------------*/

#define PING_MS 50                 /* the fixture's liveness ping */

/* One trunk, trusted for P-Asserted-Identity when `pai`. */
static voice_sip *start_sip_pai(ctx *t, const char *trunk, int max_calls, bool pai)
{
    voice_sip_options opt = {.bind_addr = "127.0.0.1", .port = t->port, .trunks = trunk,
                             .pai_trunks = pai ? trunk : NULL,
                             .max_calls = max_calls, .session_expires_s = 1800,
                             .refer_timeout_ms = 500, .ping_interval_ms = PING_MS};
    return voice_sip_start(t->base, &opt, on_event, t);
}

static voice_sip *start_sip(ctx *t, const char *trunk, int max_calls)
{
    return start_sip_pai(t, trunk, max_calls, false);
}

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    t->base = event_base_new();
    t->port = th_free_port();
    th_mkdtemp(t->dir, "cl-sip");
    t->on_incoming = ON_ANSWER;
    t->sip = start_sip(t, "127.0.0.1", 10);
    assert_non_null(t->sip);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    voice_sip_stop(t->sip);
    event_base_free(t->base);
    th_rmdir(t->dir);
    free(t);
    return 0;
}

static void restart_sip(ctx *t, const char *trunk, int max_calls)
{
    voice_sip_stop(t->sip);
    t->sip = start_sip(t, trunk, max_calls);
    assert_non_null(t->sip);
}

/* The common shape of an answered DTMF call: INCOMING, ESTABLISHED, the
 * two keys, the gateway's BYE, ENDED. */
static void assert_dtmf_call(ctx *t)
{
    assert_string_equal(sequence(t), "IEDDX");
    const voice_sip_event *in = nth(t, VOICE_SIP_INCOMING, 0);
    assert_int_equal(in->pt, RTP_PT_PCMA);
    assert_int_equal(in->dtmf_pt, 101);
    assert_false(in->hold);
    assert_string_equal(in->from_user, "13800000001");
    assert_string_equal(in->to_user, "5555");
    assert_string_equal(in->source, "127.0.0.1");
    assert_true(strlen(in->call_id) > 0);
    assert_int_equal(in->rtp.ss_family, AF_INET);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&in->rtp;
    assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    assert_int_equal(ntohs(sin->sin_port), t->mport);
    assert_string_equal(t->digits, "5#");
    for (int i = 0; i < t->nev; i++)
        assert_int_equal(t->ev[i].call, in->call);
    assert_int_equal(voice_sip_calls(t->sip), 0);
}

/* Cases --------------------------------------------------------------------------*/

static void test_dtmf_udp(void **state)
{
    ctx *t = *state;
    t->hangup_after = "5#";
    run_call(t, "uac_dtmf.xml", "u1", 1);
    assert_dtmf_call(t);
}

static void test_dtmf_tcp(void **state)
{
    ctx *t = *state;
    t->hangup_after = "5#";
    run_call(t, "uac_dtmf.xml", "t1", 1);
    assert_dtmf_call(t);
}

static void test_pcmu_first_and_caller_bye(void **state)
{
    ctx *t = *state;
    run_call(t, "uac_pcmu_bye.xml", "u1", 1);
    assert_string_equal(sequence(t), "IEX");
    const voice_sip_event *in = nth(t, VOICE_SIP_INCOMING, 0);
    assert_int_equal(in->pt, RTP_PT_PCMU);
    assert_int_equal(in->dtmf_pt, 96);
    assert_int_equal(nth(t, VOICE_SIP_ENDED, 0)->status, 200);
}

static void test_refer_accepted(void **state)
{
    ctx *t = *state;
    t->refer_when_up = true;
    run_call(t, "uac_refer.xml", "u1", 1);
    assert_string_equal(sequence(t), "IETX");
}

static void test_refer_refused(void **state)
{
    ctx *t = *state;
    t->refer_when_up = true;
    t->hangup_on_transfer_failed = true;
    run_call(t, "uac_refer_603.xml", "u1", 1);
    assert_string_equal(sequence(t), "IEFX");
    assert_int_equal(nth(t, VOICE_SIP_TRANSFER_FAILED, 0)->status, 603);
}

static void test_refer_timeout(void **state)
{
    ctx *t = *state;
    t->refer_when_up = true;
    t->hangup_on_transfer_failed = true;
    long t0 = th_now_ms();
    run_call(t, "uac_refer_silent.xml", "u1", 1);
    assert_string_equal(sequence(t), "IEFX");
    assert_int_equal(nth(t, VOICE_SIP_TRANSFER_FAILED, 0)->status, 0);
    assert_true(th_now_ms() - t0 >= 500);
}

static void test_reject_404(void **state)
{
    ctx *t = *state;
    t->on_incoming = ON_REJECT;
    t->reject_status = 404;
    run_call(t, "uac_expect_404.xml", "u1", 1);
    assert_string_equal(sequence(t), "IX");
    assert_int_equal(nth(t, VOICE_SIP_ENDED, 0)->status, 404);
    assert_int_equal(voice_sip_calls(t->sip), 0);
}

static void test_source_not_a_trunk(void **state)
{
    ctx *t = *state;
    restart_sip(t, "127.0.0.2", 10);
    run_call(t, "uac_expect_403.xml", "u1", 0);
    assert_int_equal(t->nev, 0);
}

/* Connects over TCP from `source` to the SIP port: true when the handshake
 * completes within `ms`. On loopback an accepted SYN completes at once, so
 * a connection still pending after `ms` had its SYN dropped. */
static bool tcp_connects(ctx *t, const char *source, int ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in local = {.sin_family = AF_INET};
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port)};
    inet_pton(AF_INET, source, &local.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&local, sizeof local), 0);
    bool up = connect(fd, (struct sockaddr *)&to, sizeof to) == 0;
    if (!up) {
        assert_int_equal(errno, EINPROGRESS);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = -1;
        socklen_t len = sizeof err;
        up = poll(&p, 1, ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
    close(fd);
    return up;
}

/* Strangers never reach sofia-sip over TCP, where its parser can be made
 * to allocate what a Content-Length claims: the kernel drops their SYNs. */
static void test_tcp_from_a_stranger_never_connects(void **state)
{
    ctx *t = *state;
    assert_true(tcp_connects(t, "127.0.0.1", 5000));
    assert_false(tcp_connects(t, "127.0.0.2", 1000));
    assert_true(tcp_connects(t, "127.0.0.1", 5000));
    assert_int_equal(t->nev, 0);
}

/* Sends `msg` over a TCP connection from the trunk and returns the final
 * status of its answer, or -1. */
static int tcp_request(ctx *t, const char *msg)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    assert_int_equal(send(fd, msg, strlen(msg), 0), (ssize_t)strlen(msg));
    int status = -1;
    char buf[4096];
    size_t got = 0;
    long deadline = th_now_ms() + WAIT_MS;
    while (status < 200 && got < sizeof buf - 1 && th_now_ms() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) != 1)
            continue;
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        for (const char *p = buf; (p = strstr(p, "SIP/2.0 ")) != NULL; p++)
            if (sscanf(p, "SIP/2.0 %d", &status) == 1 && status >= 200)
                break;
    }
    close(fd);
    return status;
}

/* A REFER or SUBSCRIBE outside a call, from a referrer nua cannot NOTIFY
 * (the From host is no host, no Contact): nua 1.12.11 retried the NOTIFY
 * from inside its own failure until the SIP thread's stack overflowed
 * (found by scripts/fuzz-daemon). Such methods are now refused 405 before
 * nua makes anything of them, and the stack still takes calls. */
static void test_refer_and_subscribe_refused(void **state)
{
    ctx *t = *state;
    static const char *const methods[][2] = {{"REFER", "Refer-To: <sip:1000@127.0.0.1>\r\n"},
                                             {"SUBSCRIBE", "Event: refer\r\nExpires: 60\r\n"}};
    for (size_t i = 0; i < 2; i++) {
        char msg[1024];
        snprintf(msg, sizeof msg,
                 "%s sip:12333@127.0.0.1 SIP/2.0\r\n"
                 "Via: SIP/2.0/TCP 127.0.0.1:42508;branch=z9hG4bK-refer-%zu;rport\r\n"
                 "From: <sip:+8613800000001@1?27.0.0.1>;tag=b1\r\n"
                 "To: <sip:12333@127.0.0.1>\r\n"
                 "Call-ID: refer-%zu@127.0.0.1\r\n"
                 "CSeq: 5 %s\r\n%s"
                 "Content-Length: 0\r\n\r\n",
                 methods[i][0], i, i, methods[i][0], methods[i][1]);
        assert_int_equal(tcp_request(t, msg), 405);
    }
    run_call(t, "uac_pcmu_bye.xml", "u1", 1);
}

static bool established(ctx *t, void *arg)
{
    (void)arg;
    return count(t, VOICE_SIP_DIGIT) == 2;
}

static void test_call_cap(void **state)
{
    ctx *t = *state;
    restart_sip(t, "127.0.0.1", 1);
    sipp_run first, second;
    sipp_start(t, &first, "uac_dtmf.xml", "u1");
    assert_true(run_until(t, established, NULL, WAIT_MS));
    assert_int_equal(voice_sip_calls(t->sip), 1);
    sipp_start(t, &second, "uac_expect_503.xml", "u1");
    wait_sipp(t, &second);
    voice_sip_hangup(t->sip, nth(t, VOICE_SIP_INCOMING, 0)->call);
    wait_sipp(t, &first);
    wait_events(t, VOICE_SIP_ENDED, 1);
    assert_dtmf_call(t);
}

static void test_g729_only(void **state)
{
    ctx *t = *state;
    run_call(t, "uac_g729.xml", "u1", 0);
    assert_int_equal(t->nev, 0);
}

static void test_bad_sdp(void **state)
{
    ctx *t = *state;
    run_call(t, "uac_bad_sdp.xml", "u1", 0);
    assert_int_equal(t->nev, 0);
}

static void test_no_sdp(void **state)
{
    ctx *t = *state;
    run_call(t, "uac_no_sdp.xml", "u1", 0);
    assert_int_equal(t->nev, 0);
}

static void test_cancel(void **state)
{
    ctx *t = *state;
    t->on_incoming = ON_IGNORE;
    run_call(t, "uac_cancel.xml", "u1", 1);
    assert_string_equal(sequence(t), "IX");
    assert_int_equal(nth(t, VOICE_SIP_ENDED, 0)->status, 487);
    assert_int_equal(voice_sip_calls(t->sip), 0);
}

static void test_hold(void **state)
{
    ctx *t = *state;
    run_call(t, "uac_hold.xml", "u1", 1);
    assert_string_equal(sequence(t), "IEMMX");
    const voice_sip_event *held = nth(t, VOICE_SIP_MEDIA, 0);
    const voice_sip_event *resumed = nth(t, VOICE_SIP_MEDIA, 1);
    assert_true(held->hold);
    assert_int_equal(held->pt, RTP_PT_PCMA);
    assert_false(resumed->hold);
    assert_int_equal(resumed->dtmf_pt, 101);
}

static void send_udp(int port, const void *buf, size_t len)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_true(fd >= 0);
    assert_int_equal(sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof sa), (ssize_t)len);
    close(fd);
}

static void send_tcp(int port, const char *text)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_garbage(void **state)
{
    ctx *t = *state;
    unsigned char junk[1400];
    srand(7);
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)rand();
    static const char *const texts[] = {
        "INVITE\r\n\r\n",
        "INVITE sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 99999\r\n\r\nv=0",
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\n\r\n",
        "INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9\r\nFrom: <sip:a@b>\r\n"
        "To: <sip:c@d>\r\nCall-ID: g1\r\nCSeq: x INVITE\r\n\r\n",
        "\r\n\r\n",
    };
    send_udp(t->port, junk, sizeof junk);
    send_udp(t->port, junk, 1);
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        send_udp(t->port, texts[i], strlen(texts[i]));
        send_tcp(t->port, texts[i]);
    }
    t->hangup_after = "5#";
    run_call(t, "uac_dtmf.xml", "u1", 1);
    assert_dtmf_call(t);
}

/* The datagram of issue 13 ------------------------------------------------------*/

#define RSS_GROWTH_KIB (20 * 1024) /* what one refused INVITE may cost, with room */

/* The SIP status of the first final answer to what `fd` sent, or -1 after
 * WAIT_MS. The sofia-sip parser loop this guards against grows the process
 * by hundreds of MB a second and never answers: once the process is
 * RSS_GROWTH_KIB past `base_kib` the run ends here, before the machine
 * runs out of memory (stopping the SIP thread would wait on the loop). */
static int final_status(int fd, long base_kib)
{
    long deadline = th_now_ms() + WAIT_MS;
    while (th_now_ms() < deadline) {
        long grown = th_rss_kib(0) - base_kib;
        if (grown > RSS_GROWTH_KIB) {
            fprintf(stderr, "the SIP stack grew by %ld KiB on one datagram\n", grown);
            _exit(1);
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) != 1)
            continue;
        char buf[2048];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        int status;
        if (n > 0 && (buf[n] = '\0', sscanf(buf, "SIP/2.0 %d", &status) == 1) && status >= 200)
            return status;
    }
    return -1;
}

/* Sends an INVITE whose SDP has an unknown protocol and then a format that
 * is not a token, from `source`, and returns the final status. */
static int send_issue_13_invite(ctx *t, const char *source, int n)
{
    static const char sdp[] = "v=0\r\n"
                              "o=- 1 1 IN IP4 127.0.0.2\r\n"
                              "s=-\r\n"
                              "c=IN IP4 127.0.0.2\r\n"
                              "t=0 0\r\n"
                              "m=audio 40000 X 8 <a>\r\n";
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in local = {.sin_family = AF_INET};
    inet_pton(AF_INET, source, &local.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&local, sizeof local), 0);
    socklen_t len = sizeof local;
    getsockname(fd, (struct sockaddr *)&local, &len);
    int lport = ntohs(local.sin_port);
    char msg[1024];
    int size = snprintf(msg, sizeof msg,
                        "INVITE sip:5555@127.0.0.1:%d SIP/2.0\r\n"
                        "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-issue13-%d\r\n"
                        "Max-Forwards: 70\r\n"
                        "From: <sip:13800000009@%s>;tag=x%d\r\n"
                        "To: <sip:5555@127.0.0.1>\r\n"
                        "Call-ID: issue13-%d@%s\r\n"
                        "CSeq: 1 INVITE\r\n"
                        "Contact: <sip:13800000009@%s:%d>\r\n"
                        "Content-Type: application/sdp\r\n"
                        "Content-Length: %zu\r\n\r\n%s",
                        t->port, source, lport, n, source, n, n, source, source, lport,
                        strlen(sdp), sdp);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    long base = th_rss_kib(0);
    assert_int_equal(sendto(fd, msg, (size_t)size, 0, (struct sockaddr *)&to, sizeof to), size);
    int status = final_status(fd, base);
    close(fd);
    long grown = th_rss_kib(0) - base;
    fprintf(stderr, "[ issue 13 INVITE from %s: %d, RSS %+ld KiB ]\n", source, status, grown);
    assert_true(grown < RSS_GROWTH_KIB);
    return status;
}

/* A message past VOICE_SIP_MAX_MESSAGE is not taken in: nta refuses an
 * INVITE from the trunk padded with a large header with 413 (without the
 * limit it would reach the thread and get 488 for its missing offer). */
static void test_oversized_message(void **state)
{
    ctx *t = *state;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&local, sizeof local), 0);
    socklen_t len = sizeof local;
    getsockname(fd, (struct sockaddr *)&local, &len);
    static char msg[VOICE_SIP_MAX_MESSAGE + 4096];
    char pad[VOICE_SIP_MAX_MESSAGE + 1];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    int size = snprintf(msg, sizeof msg,
                        "INVITE sip:5555@127.0.0.1:%d SIP/2.0\r\n"
                        "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-big\r\n"
                        "Max-Forwards: 70\r\nFrom: <sip:1@127.0.0.1>;tag=b\r\n"
                        "To: <sip:5555@127.0.0.1>\r\nCall-ID: big@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
                        "X-Pad: %s\r\nContent-Length: 0\r\n\r\n",
                        t->port, ntohs(local.sin_port), pad);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(sendto(fd, msg, (size_t)size, 0, (struct sockaddr *)&to, sizeof to), size);
    int status = final_status(fd, th_rss_kib(0));
    close(fd);
    assert_int_equal(status, 413);
    assert_int_equal(t->nev, 0);
}

/* From a stranger the INVITE is refused before its SDP is read; from a
 * trunk the SDP check refuses it. The stack answers calls afterwards. */
static void test_issue_13_datagram(void **state)
{
    ctx *t = *state;
    assert_int_equal(send_issue_13_invite(t, "127.0.0.2", 1), 403);
    assert_int_equal(send_issue_13_invite(t, "127.0.0.1", 2), 400);
    assert_int_equal(t->nev, 0);
    assert_int_equal(voice_sip_refused(t->sip, VOICE_SIP_REFUSED_SOURCE), 1);
    assert_int_equal(voice_sip_refused(t->sip, VOICE_SIP_REFUSED_BAD_SDP), 1);
    assert_string_equal(voice_sip_refusal_name(VOICE_SIP_REFUSED_BAD_SDP), "bad_sdp");
    t->hangup_after = "5#";
    run_call(t, "uac_dtmf.xml", "u1", 1);
    assert_dtmf_call(t);
}

/* P-Asserted-Identity names the caller only on a trunk trusted for it. */
static void test_pai_trusted(void **state)
{
    ctx *t = *state;
    voice_sip_stop(t->sip);
    t->sip = start_sip_pai(t, "127.0.0.1", 10, true);
    assert_non_null(t->sip);
    run_call(t, "uac_pai.xml", "u1", 1);
    assert_string_equal(sequence(t), "IEX");
    assert_string_equal(nth(t, VOICE_SIP_INCOMING, 0)->from_user, "+8613800000077");
}

static void test_pai_untrusted(void **state)
{
    ctx *t = *state;
    run_call(t, "uac_pai.xml", "u1", 1);
    assert_string_equal(sequence(t), "IEX");
    assert_string_equal(nth(t, VOICE_SIP_INCOMING, 0)->from_user, "13800000001");
}

static bool alive_is(ctx *t, void *arg)
{
    return voice_sip_alive(t->sip) == *(bool *)arg;
}

/* A thread that stops answering pings is reported, and recovers. */
static void test_liveness(void **state)
{
    ctx *t = *state;
    bool want = false;
    assert_true(voice_sip_alive(t->sip));
    voice_sip_freeze(t->sip, 20 * PING_MS);
    assert_true(run_until(t, alive_is, &want, WAIT_MS));
    want = true;
    assert_true(run_until(t, alive_is, &want, WAIT_MS));
}

/* Stop with one call up and one unanswered: BYE and 503 go out, and no
 * event reaches the callback once stop has returned. */
static void test_stop_ends_calls(void **state)
{
    ctx *t = *state;
    sipp_run up, offered;
    sipp_start(t, &up, "uac_dtmf.xml", "u1");
    assert_true(run_until(t, established, NULL, WAIT_MS));
    t->on_incoming = ON_IGNORE;
    sipp_start(t, &offered, "uac_expect_503.xml", "u1");
    wait_events(t, VOICE_SIP_INCOMING, 2);
    int before = t->nev;
    long t0 = th_now_ms();
    voice_sip_stop(t->sip);
    t->sip = NULL;
    fprintf(stderr, "[ stop with 2 calls: %ld ms ]\n", th_now_ms() - t0);
    wait_sipp(t, &up);
    wait_sipp(t, &offered);
    assert_int_equal(t->nev, before);
}

static void test_bad_options(void **state)
{
    ctx *t = *state;
    voice_sip_options opt = {.bind_addr = "127.0.0.1", .port = th_free_port(),
                             .trunks = "not-an-address", .max_calls = 1, .session_expires_s = 1800,
                             .refer_timeout_ms = 500};
    assert_null(voice_sip_start(t->base, &opt, on_event, t));
    opt.trunks = "127.0.0.1";
    opt.pai_trunks = "127.0.0.0/40";
    assert_null(voice_sip_start(t->base, &opt, on_event, t));
    opt.pai_trunks = NULL;
    opt.session_expires_s = 30;
    assert_null(voice_sip_start(t->base, &opt, on_event, t));
    opt.session_expires_s = 1800;
    opt.port = t->port; /* taken by the fixture's instance */
    assert_null(voice_sip_start(t->base, &opt, on_event, t));
}

int main(void)
{
    if (getenv("CL_TEST_FILTER")) /* one case by name, for debugging */
        cmocka_set_test_filter(getenv("CL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dtmf_udp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dtmf_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcmu_first_and_caller_bye, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refer_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refer_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refer_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_404, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_not_a_trunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_from_a_stranger_never_connects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refer_and_subscribe_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_g729_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_sdp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_sdp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_13_datagram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pai_trusted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pai_untrusted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_liveness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_ends_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
