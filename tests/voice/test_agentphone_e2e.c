/* test_agentphone_e2e — the demo's transfer path as a person tries it by
 * hand (docs/agents.md): a real softphone (baresip 1.0.0 through
 * scripts/softphone and configs/softphone, headless) calls the real
 * daemon (with redis-server and the registry simulator), presses 1 and 0;
 * the gateway REFERs it to the agent URI, where cardline-agentphone
 * answers the INVITE the softphone makes and shows the session id the
 * transfer carried. Then the agent types `r`: the phone asks the Agent API
 * for a resume URI and REFERs the caller there; the softphone types the ID
 * and the PIN (RFC 4733); the gateway sends the caller back to li's phone,
 * which answers again, showing the same session, verified.
 *
 * What is checked:
 *   - the session id the agent phone shows is "voice:" + the Call-ID of
 *     the softphone's call to the hotline, read from the gateway's log (a
 *     phone that showed another id, or none, fails);
 *   - the agent phone answered (its line) and the session is with the
 *     agent (Redis), so a transfer that fell back to "agents busy" fails;
 *   - after the resume, the second call shows the same session, and the
 *     Agent API context the phone prints says the PIN was verified;
 *   - the same by hand: a resume URI asked of the Agent API, `t URI` typed
 *     to the phone, the PIN typed again, and the caller is back (call 3);
 *   - the PIN is in neither the gateway's log, the session, nor the agent
 *     phone's screen; both the agent phone and the gateway exit cleanly
 *     (LeakSanitizer).
 * Keys reach the softphone as its console datagrams (scripts/softphone
 * keys), paced as typed. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sndfile.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "voice_world.h"

/* The demo's agent li: its token and the digest configs/agents.yaml keeps. */
#define AGENT_TOKEN "demo-agent-li"
#define AGENT_TOKEN_SHA256 "f7606fd3d17ce45aa42f8f7c5978eda7885e9767b036a2208a01f7914e3640e1"
#define KEY_GAP_MS 250           /* between two keys, as a person types */

typedef struct {
    vw_world *w;                 /* the gateway and its servers */
    th_proc phone;               /* cardline-agentphone */
    th_proc softphone;           /* baresip */
    char fifo[300];              /* the agent phone's stdin */
    int commands;                /* our end of it */
    int keys_port;               /* the softphone's console (UDP) */
} rig;

/* The world ---------------------------------------------------------------------------------*/

/* Agent li, whose resumed callers return to the agent phone's address. */
static void agents_conf(vw_world *w, FILE *conf)
{
    char path[300], text[512];
    w->agents_port = th_free_port();
    snprintf(path, sizeof path, "%s/agents.yaml", w->tw.dir);
    snprintf(text, sizeof text,
             "agents:\n  - name: li\n    role: agent\n    token_sha256: " AGENT_TOKEN_SHA256
             "\n    sip_uri: sip:li@127.0.0.1:%d\n",
             w->sipp_port);
    th_write_file(path, text);
    fprintf(conf, "[agents]\nenabled = 1\nlisten = 127.0.0.1:%d\ntokens_file = %s\n", w->agents_port, path);
}

static const char *const EVENTS[] = {"input", "transfer_back", "result", NULL};
static const vw_suite SUITE = {.name = "agentphone", .max_calls = 8, .event_kinds = EVENTS, .more_conf = agents_conf};

/* A second of 8 kHz tone for the greeting: what the agent says is not the
 * point here, that the phone answers with audio is. */
static void write_greeting(const char *path)
{
    SF_INFO info = {.samplerate = 8000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    assert_non_null(sf);
    short pcm[8000];
    for (int i = 0; i < 8000; i++)
        pcm[i] = (short)((i / 8) % 2 ? 8000 : -8000); /* 500 Hz square */
    assert_int_equal(sf_writef_short(sf, pcm, 8000), 8000);
    sf_close(sf);
}

/* Starts `argv` through sh with stdin from `input`, so neither the agent
 * phone nor baresip reads the test's terminal. */
static void spawn_with_input(th_proc *p, const char *name, const char *input, const char *const *argv)
{
    char script[400];
    snprintf(script, sizeof script, "exec \"$0\" \"$@\" <'%s'", input);
    const char *sh[32] = {"/bin/sh", "-c", script};
    size_t n = 3;
    for (size_t i = 0; argv[i] && n < 31; i++)
        sh[n++] = argv[i];
    sh[n] = NULL;
    assert_true(th_spawn(p, name, sh));
}

/* Polls until `needle` appears in `log` at least `times` times. */
static void wait_logged(const th_proc *p, const char *needle, int times)
{
    long deadline = th_now_ms() + VW_WAIT_MS;
    for (;;) {
        char *text = th_read_text(p->log);
        int n = th_count(text, needle);
        if (n >= times) {
            free(text);
            return;
        }
        if (th_now_ms() > deadline || waitpid(p->pid, NULL, WNOHANG) == p->pid) {
            print_error("%s: no \"%s\" (%d of %d); it shows:\n%s\n", p->log, needle, n, times, text);
            free(text);
            fail();
        }
        free(text);
        th_poll_pause();
    }
}

static int setup(void **state)
{
    rig *r = calloc(1, sizeof *r);
    void *world = NULL;
    if (vw_setup(&world, &SUITE) != 0) {
        *state = r;
        r->w = world;
        return -1;
    }
    r->w = world;
    *state = r;
    vw_world *w = r->w;
    char greeting[300], listen[64], api[64], hotline[64], sip_port[16], keys_port[16], phone_dir[300];

    /* The agent phone where agent_uri and li's sip_uri point. */
    snprintf(r->phone.dir, sizeof r->phone.dir, "%s", w->tw.dir);
    snprintf(r->fifo, sizeof r->fifo, "%s/agentphone.in", w->tw.dir);
    assert_int_equal(mkfifo(r->fifo, 0600), 0);
    r->commands = open(r->fifo, O_RDWR | O_CLOEXEC); /* RDWR: no wait for the reader */
    assert_true(r->commands >= 0);
    snprintf(greeting, sizeof greeting, "zh=%s/greeting.wav", w->tw.dir);
    write_greeting(greeting + 3);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", w->sipp_port);
    snprintf(api, sizeof api, "http://127.0.0.1:%d", w->agents_port);
    const char *phone[] = {CL_AGENTPHONE_BIN, "--listen", listen, "--api", api, "--token", AGENT_TOKEN,
                           "--greeting", greeting, NULL};
    spawn_with_input(&r->phone, "agentphone", r->fifo, phone);
    wait_logged(&r->phone, "answering", 1);

    /* The softphone, calling the hotline. */
    snprintf(r->softphone.dir, sizeof r->softphone.dir, "%s", w->tw.dir);
    snprintf(phone_dir, sizeof phone_dir, "%s/softphone", w->tw.dir);
    snprintf(hotline, sizeof hotline, "sip:" VW_HOTLINE "@127.0.0.1:%d", w->sip_port);
    snprintf(sip_port, sizeof sip_port, "%d", th_free_port());
    r->keys_port = th_free_port();
    snprintf(keys_port, sizeof keys_port, "%d", r->keys_port);
    const char *softphone[] = {CL_SOURCE_DIR "/scripts/softphone", "--headless", "--dir", phone_dir, "--sip-port",
                               sip_port, "--keys-port", keys_port, hotline, NULL};
    spawn_with_input(&r->softphone, "softphone", "/dev/null", softphone);
    return 0;
}

static int teardown(void **state)
{
    rig *r = *state;
    th_kill(&r->softphone);
    th_kill(&r->phone);
    if (r->commands > 0)
        close(r->commands);
    void *world = r->w;
    if (world)
        vw_teardown(&world);
    free(r);
    return 0;
}

/* The phones --------------------------------------------------------------------------------*/

/* Presses `keys` on the softphone: one console datagram each. */
static void press(const rig *r, const char *keys)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->keys_port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    assert_true(fd >= 0);
    for (const char *k = keys; *k; k++) {
        assert_int_equal(sendto(fd, k, 1, 0, (struct sockaddr *)&to, sizeof to), 1);
        struct timespec gap = {0, KEY_GAP_MS * 1000000L};
        nanosleep(&gap, NULL);
    }
    close(fd);
}

static void type_command(const rig *r, const char *line)
{
    assert_int_equal(write(r->commands, line, strlen(line)), (ssize_t)strlen(line));
}

/* The session of the softphone's call to the hotline: "voice:" + the
 * Call-ID of the gateway's first incoming call, from its log. */
static void hotline_session(const vw_world *w, char out[128])
{
    char *log = th_read_text(w->tw.gw.log);
    const char *at = strstr(log, "event=sip.incoming call=1 call_id=\"");
    assert_non_null(at);
    at = strchr(at, '"') + 1;
    size_t n = strcspn(at, "\"");
    assert_true(n > 0 && n < 100);
    snprintf(out, 128, "voice:%.*s", (int)n, at);
    free(log);
}

/* The agent phone's screen, whole. */
static char *screen(const rig *r)
{
    return th_read_text(r->phone.log);
}

/* The case -------------------------------------------------------------------------------------*/

static void test_transfer_reaches_the_agent_phone_and_back(void **state)
{
    rig *r = *state;
    vw_world *w = r->w;
    char session[128], want[256];

    wait_logged(&r->softphone, "Call established: sip:" VW_HOTLINE "@", 1);
    press(r, "10"); /* 中文, then an agent */
    wait_logged(&r->phone, "call 1 answered", 1);

    hotline_session(w, session);
    snprintf(want, sizeof want, "call 1 answered (PCMA), session %s, greeting zh\n", session);
    char *text = screen(r);
    if (!strstr(text, want))
        print_error("agent phone shows:\n%s\nwanted the line: %s", text, want);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want, "call 1 ringing: from sip:+8613800000001@127.0.0.1 to sip:general@127.0.0.1:%d",
             w->sipp_port);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "call 1 context: state transfer, at agent.to_agent, lang zh, "
                                 "caller +86138****0001, verified none, queue general"));
    free(text);
    vw_wait_session(w, session, "transfer", NULL);
    assert_int_equal(th_log_count(&w->tw.gw, "event=sip.transferred call=1"), 1);

    /* The agent sends the caller to PIN entry; the caller comes back. */
    type_command(r, "r\n");
    wait_logged(&r->phone, "call 1 transferred (200)", 1);
    wait_logged(&r->softphone, "Call established: sip:resume-", 1);
    press(r, VW_ID "#" VW_PIN "#");
    wait_logged(&r->phone, "call 2 answered", 1);
    vw_wait_session(w, session, "transfer", "verified");

    text = screen(r);
    snprintf(want, sizeof want, "call 2 answered (PCMA), session %s, greeting zh\n", session);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want, "call 2 ringing: from sip:+8613800000001@127.0.0.1 to sip:li@127.0.0.1:%d",
             w->sipp_port);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "call 2 context: state transfer, at assist.return_to_agent, lang zh, "
                                 "caller +86138****0001, verified pin, id 110101********4514, queue return"));
    assert_non_null(strstr(text, "assist verified"));
    assert_null(strstr(text, VW_PIN));
    assert_int_equal(th_count(text, "sip:resume-"), th_count(text, "sip:resume-…@")); /* token masked */
    free(text);
    vw_assert_pin_kept_secret(w, session, VW_PIN);

    /* By hand, as docs/agents.md shows it: the agent asks the Agent API
     * for the URI and has the phone transfer the caller there; the ID is
     * known by now, so the caller types the PIN only. */
    char path[200], command[300];
    snprintf(path, sizeof path, "/v1/sessions/%s/resume", session);
    const char *auth[] = {"Authorization: Bearer " AGENT_TOKEN, NULL};
    json_t *reply = NULL;
    char *body = NULL;
    assert_int_equal(th_http(w->agents_port, "POST", path, "{\"node\": \"assist.verify_pin\"}", auth, &body), 201);
    reply = json_loads(body, 0, NULL);
    snprintf(command, sizeof command, "t %s\n", vw_doc_str(reply, "uri", NULL));
    json_decref(reply);
    free(body);
    type_command(r, command);
    wait_logged(&r->phone, "call 2 transferred (200)", 1);
    wait_logged(&r->softphone, "Call established: sip:resume-", 2);
    press(r, VW_PIN "#");
    wait_logged(&r->phone, "call 3 answered", 1);
    text = screen(r);
    snprintf(want, sizeof want, "call 3 answered (PCMA), session %s, greeting zh\n", session);
    assert_non_null(strstr(text, want));
    assert_null(strstr(text, VW_PIN));
    assert_int_equal(th_count(text, "sip:resume-"), th_count(text, "sip:resume-…@"));
    free(text);

    /* The agent hangs up; everything stops cleanly. */
    type_command(r, "h\n");
    wait_logged(&r->phone, "call 3 ended", 1);
    th_stop(&r->softphone, VW_WAIT_MS);
    int status = th_stop(&r->phone, VW_WAIT_MS);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    vw_stop_gateway(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_transfer_reaches_the_agent_phone_and_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
