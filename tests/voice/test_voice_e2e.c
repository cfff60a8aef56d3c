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
 *     after which the call still ends normally and a new one is served;
 *   - the INVITE of issue 13 (unknown protocol, a format that is not a
 *     token) from a stranger (403) and from the trunk (400): the daemon
 *     stays alive, grows by less than 20 MB, counts both refusals in
 *     /metrics, reports voice up in /healthz and serves the next caller.
 * Prompts have no audio here (an empty prompts_dir plays as nothing), so a
 * flow runs as fast as its keys arrive. Every wait is bounded; each case
 * stops the daemon with SIGTERM and expects exit 0 (LeakSanitizer clean).
 * The world the cases run in is voice_world.h's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "voice_world.h"

/* The card of VW_ID (normal) and its last four digits. */
#define CARD "A52870316"
#define LAST4 "0316"

/* The world ---------------------------------------------------------------------------------*/

/* What the caller did: the kinds of session event the cases compare. */
static const char *const CALLER_EVENTS[] = {"input", "no_input", "timeout", "transfer_back", NULL};

static const vw_suite SUITE = {.name = "voice", .max_calls = 8, .event_kinds = CALLER_EVENTS};
static const vw_suite TWO_CALLS = {.name = "voice", .max_calls = 2, .event_kinds = CALLER_EVENTS};

static int setup(void **state)
{
    return vw_setup(state, &SUITE);
}

static int setup_two_calls(void **state)
{
    return vw_setup(state, &TWO_CALLS);
}

/* Whether the daemon still runs (reaped when it has died). */
static bool gateway_alive(vw_world *w)
{
    int status;
    if (w->tw.gw.pid > 0 && waitpid(w->tw.gw.pid, &status, WNOHANG) == w->tw.gw.pid) {
        w->tw.gw.pid = 0;
        return false;
    }
    return w->tw.gw.pid > 0;
}

/* No PIN in the session's document and events, nor anywhere in the log;
 * no ID in the log either. */
static void assert_pin_kept_secret(const vw_world *w, const char *session)
{
    vw_assert_pin_kept_secret(w, session, VW_PIN);
    char *log = th_read_text(w->tw.gw.log);
    bool id_in_log = th_has_number(log, strlen(log), VW_ID);
    free(log);
    assert_false(id_in_log);
}

/* The registry --------------------------------------------------------------------------*/

/* Writes of `what` the registry applied. */
static long long applied_count(const vw_world *w, const char *what)
{
    return th_sim_applied(&w->tw.sim, what);
}

static int card_status(const vw_world *w, const char *card)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/cards/%s", card);
    json_t *j = th_sim_json(&w->tw.sim, path);
    int status = j ? (int)json_integer_value(json_object_get(j, "status")) : -1;
    json_decref(j);
    return status;
}

static void assert_registry_untouched(const vw_world *w)
{
    static const char *const writes[] = {"loss_reports", "cancellations", "activations", "contact_updates"};
    for (size_t i = 0; i < sizeof writes / sizeof *writes; i++)
        if (applied_count(w, writes[i]) != 0)
            fail_msg("the registry applied %s", writes[i]);
    assert_int_equal(card_status(w, CARD), 1);
}

/* The cases ---------------------------------------------------------------------------------*/

/* Keys by INFO for a status check, exactly as the prompts ask: 1 中文,
 * 1 status, the ID and #, the PIN and #, then 2 (finish) at the menu
 * after the task. */
static const char STATUS_KEYS[] = "11" VW_ID "#" VW_PIN "#2";
static const char STATUS_EVENTS[] = "input main.choose_lang 1 | input main.main_menu 1 | "
                                    "input identify.ask_id 110101********4514 | input identify.ask_pin <secret> | "
                                    "input main.after_task 2";

static void status_call(vw_world *w, const char *tag)
{
    vw_sipp_run r;
    const char *extra[] = {"-key", "keys", STATUS_KEYS, NULL};
    assert_int_equal(vw_sipp(w, &r, tag, "e2e-keys.xml", VW_HOTLINE, extra), 0);
    vw_wait_session(w, r.session, "end", NULL);
    vw_assert_events(w, r.session, STATUS_EVENTS);
    assert_pin_kept_secret(w, r.session);
}

static void test_status_by_info(void **state)
{
    vw_world *w = *state;
    status_call(w, "status");
    assert_registry_untouched(w);
    vw_stop_gateway(w);
}

static void test_loss_by_rtp(void **state)
{
    vw_world *w = *state;
    vw_skip_without_pcap();
    vw_sipp_run r;
    const char *extra[] = {"-key", "id", VW_ID, "-key", "last4", LAST4, NULL};
    assert_int_equal(vw_sipp(w, &r, "loss", "e2e-loss-rtp.xml", VW_HOTLINE, extra), 0);
    vw_wait_session(w, r.session, "end", NULL);
    vw_assert_events(w, r.session,
                     "input main.choose_lang 1 | input main.main_menu 2 | input identify.ask_id 110101********4514"
                     " | input identify.ask_pin <secret> | input loss.ask_last4 <answer len=4>"
                     " | input loss.confirm 1 | input main.after_task 2");
    long deadline = th_now_ms() + VW_WAIT_MS;
    while (applied_count(w, "loss_reports") < 1 && th_now_ms() < deadline)
        th_poll_pause();
    assert_int_equal(applied_count(w, "loss_reports"), 1);
    assert_int_equal(card_status(w, CARD), 4);
    assert_pin_kept_secret(w, r.session);
    vw_stop_gateway(w);
}

/* The REFER's session header names this call's session and its target is
 * the agent URI with the queue filled in, carrying the session on to the
 * agent's phone. */
static void assert_refer_logged(const vw_world *w, const vw_sipp_run *r)
{
    char target[64], refer_to[256], want[640];
    snprintf(target, sizeof target, "sip:general@127.0.0.1:%d", w->sipp_port);
    vw_refer_to(refer_to, sizeof refer_to, target, r->session);
    snprintf(want, sizeof want, "REFER session=voice:%s call_id=%s refer_to=%s ", r->call_id, r->call_id, refer_to);
    vw_assert_sipp_logged_once(r, want);
}

static void test_agent_transfer(void **state)
{
    vw_world *w = *state;
    vw_sipp_run r;
    const char *extra[] = {"-key", "keys", "10", NULL};
    assert_int_equal(vw_sipp(w, &r, "transfer", "e2e-transfer.xml", VW_HOTLINE, extra), 0);
    assert_refer_logged(w, &r);
    vw_wait_session(w, r.session, "transfer", NULL); /* kept for the agent: no hangup hop */
    json_t *doc = vw_session_doc(w, r.session);
    assert_string_equal(vw_doc_str(doc, "transfer", "queue"), "general");
    json_decref(doc);
    vw_assert_events(w, r.session, "input main.choose_lang 1 | input main.main_menu 0");
    vw_wait_calls(w, 0);
    vw_stop_gateway(w);
}

static void test_refused_transfer(void **state)
{
    vw_world *w = *state;
    vw_sipp_run r;
    const char *extra[] = {"-key", "keys", "10", NULL};
    assert_int_equal(vw_sipp(w, &r, "refused", "e2e-transfer-refused.xml", VW_HOTLINE, extra), 0);
    assert_refer_logged(w, &r);
    vw_wait_session(w, r.session, "end", NULL);
    json_t *doc = vw_session_doc(w, r.session);
    assert_string_equal(vw_doc_str(doc, "node", NULL), "agents_busy");
    json_decref(doc);
    vw_assert_events(w, r.session, "input main.choose_lang 1 | input main.main_menu 0 | transfer_back agent.to_agent");
    assert_int_equal(th_log_count(&w->tw.gw, "event=voice.transfer_failed"), 1);
    vw_stop_gateway(w);
}

static void test_unknown_number(void **state)
{
    vw_world *w = *state;
    vw_sipp_run r;
    assert_int_equal(vw_sipp(w, &r, "unknown", "e2e-not-found.xml", "99999", NULL), 0);
    json_t *doc = vw_session_doc(w, r.session);
    assert_null(doc);
    assert_int_equal(vw_metric(w, "cardline_voice_calls"), 0);
    vw_stop_gateway(w);
}

/* [voice] max_calls = 2: three callers 100 ms apart who each hold for 2 s;
 * two are answered, the third is refused 503. */
static void test_call_cap(void **state)
{
    vw_world *w = *state;
    vw_sipp_run r;
    const char *extra[] = {"-m", "3", "-l", "3", "-r", "10", "-d", "2000", NULL};
    assert_int_equal(vw_sipp(w, &r, "cap", "e2e-hold.xml", VW_HOTLINE, extra), 0);
    assert_int_equal(vw_sipp_log_count(&r, "answered "), 2);
    assert_int_equal(vw_sipp_log_count(&r, "busy "), 1);
    vw_wait_calls(w, 0);
    vw_stop_gateway(w);
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
    vw_world *w = *state;
    vw_sipp_run held;
    const char *extra[] = {"-d", "3000", NULL};
    vw_sipp_start(w, &held, "held", "e2e-hold.xml", VW_HOTLINE, extra);
    vw_wait_calls(w, 1);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    srand(12333);
    spray_sip(fd, w->sip_port);
    for (int port = w->rtp_min; port < w->rtp_min + VW_RTP_PORTS; port++)
        spray_rtp(fd, port);
    close(fd);
    assert_int_equal(vw_sipp_wait(w, &held), 0);
    assert_int_equal(vw_sipp_log_count(&held, "answered "), 1);
    assert_true(gateway_alive(w));
    status_call(w, "after-garbage");
    assert_true(gateway_alive(w));
    assert_int_equal(th_http_get(w->tw.http_port, "/healthz", NULL), 200);
    vw_stop_gateway(w);
}

/* The datagram of issue 13 against the daemon -----------------------------------------*/

#define RSS_GROWTH_KIB (20 * 1024) /* what the refused INVITEs may cost, with room */

/* Sends the INVITE from `source` and returns the final status, or -1. The
 * parser loop it once triggered grows the daemon by hundreds of MB a
 * second without answering: past RSS_GROWTH_KIB the daemon is killed and
 * the test fails before the machine runs out of memory. */
static int issue_13_invite(vw_world *w, const char *source, int n, long base_kib)
{
    static const char sdp[] = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\n"
                              "t=0 0\r\nm=audio 40000 X 8 <a>\r\n";
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    inet_pton(AF_INET, source, &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    char msg[1024];
    int size = snprintf(msg, sizeof msg,
                        "INVITE sip:" VW_HOTLINE "@127.0.0.1:%d SIP/2.0\r\n"
                        "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-e2e13-%d\r\n"
                        "Max-Forwards: 70\r\nFrom: <sip:13800000009@%s>;tag=e%d\r\n"
                        "To: <sip:" VW_HOTLINE "@127.0.0.1>\r\nCall-ID: e2e13-%d@%s\r\n"
                        "CSeq: 1 INVITE\r\nContact: <sip:13800000009@%s:%d>\r\n"
                        "Content-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n%s",
                        w->sip_port, source, ntohs(sa.sin_port), n, source, n, n, source, source,
                        ntohs(sa.sin_port), strlen(sdp), sdp);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->sip_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(sendto(fd, msg, (size_t)size, 0, (struct sockaddr *)&to, sizeof to), size);
    int status = -1;
    for (long deadline = th_now_ms() + VW_WAIT_MS; status < 0 && th_now_ms() < deadline;) {
        if (th_rss_kib(w->tw.gw.pid) - base_kib > RSS_GROWTH_KIB) {
            th_kill(&w->tw.gw);
            fail_msg("the daemon grew past %d KiB on the INVITE from %s", RSS_GROWTH_KIB, source);
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        char buf[2048];
        ssize_t got = poll(&pfd, 1, 20) == 1 ? recv(fd, buf, sizeof buf - 1, 0) : -1;
        int code;
        if (got > 0 && (buf[got] = '\0', sscanf(buf, "SIP/2.0 %d", &code) == 1) && code >= 200)
            status = code;
    }
    close(fd);
    return status;
}

static void wait_metric(const vw_world *w, const char *name, double want)
{
    long deadline = th_now_ms() + VW_WAIT_MS;
    while (vw_metric(w, name) != want) {
        if (th_now_ms() > deadline)
            fail_msg("%s stayed at %g, wanted %g", name, vw_metric(w, name), want);
        th_poll_pause();
    }
}

/* A stranger's INVITE is refused 403 before its SDP is read, a trunk's 400
 * by the SDP check; the daemon stays up, small and healthy, counts both,
 * and serves the next caller. */
static void test_issue_13_datagram(void **state)
{
    vw_world *w = *state;
    long base = th_rss_kib(w->tw.gw.pid);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(issue_13_invite(w, "127.0.0.2", 2 * i, base), 403);
        assert_int_equal(issue_13_invite(w, "127.0.0.1", 2 * i + 1, base), 400);
    }
    long grown = th_rss_kib(w->tw.gw.pid) - base;
    fprintf(stderr, "[ daemon RSS after 10 issue 13 INVITEs: %+ld KiB ]\n", grown);
    assert_true(gateway_alive(w));
    assert_true(grown < RSS_GROWTH_KIB);
    wait_metric(w, "cardline_sip_refused_total{reason=\"source\"}", 5);
    wait_metric(w, "cardline_sip_refused_total{reason=\"bad_sdp\"}", 5);
    char *body = NULL;
    assert_int_equal(th_http_get(w->tw.http_port, "/healthz", &body), 200);
    assert_non_null(strstr(body, "\"voice\":\"up\""));
    free(body);
    status_call(w, "after-issue-13");
    vw_stop_gateway(w);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_status_by_info, setup, vw_teardown),
        cmocka_unit_test_setup_teardown(test_issue_13_datagram, setup, vw_teardown),
        cmocka_unit_test_setup_teardown(test_loss_by_rtp, setup, vw_teardown),
        cmocka_unit_test_setup_teardown(test_agent_transfer, setup, vw_teardown),
        cmocka_unit_test_setup_teardown(test_refused_transfer, setup, vw_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_number, setup, vw_teardown),
        cmocka_unit_test_setup_teardown(test_call_cap, setup_two_calls, vw_teardown),
        cmocka_unit_test_setup_teardown(test_garbage_datagrams, setup, vw_teardown),
    };
    return cmocka_run_group_tests_name("voice_e2e", tests, NULL, NULL);
}
