/* cardline-agentphone — the demo's agent at a desk phone: answers the calls
 * cardline transfers to `[voice] agent_uri` (and the callers a resume URI
 * sends back), greets the caller with a recorded clip in the session's
 * language, and prints what the agent's screen would show: the session id
 * the transfer carried (X-Cardline-Session, docs/agents.md), the session's
 * context from the Agent API, and how to send the caller into PIN entry.
 * Typed commands act on the latest call: `r [NODE]` asks the Agent API for
 * a resume URI and blind-transfers the caller there (REFER), `t URI`
 * blind-transfers to a URI the agent got by hand, `h` hangs up, `q` quits.
 *
 * One thread: sofia-sip's nua on its su_root, which also waits on stdin,
 * the signals (signalfd) and each call's RTP socket; the greeting leaves
 * as G.711 RTP (the call's law) paced by a 20 ms su_timer, then silence,
 * as a live headset would. Offers pass the gateway's own SDP check before
 * sofia's parser reads them. Any user at the listening address rings the
 * phone (general@, li@, ...): the demo's queue URI and the agents'
 * sip_uri meet here.
 *
 *   cardline-agentphone [--listen 127.0.0.1:5070] [--name li] [--token T]
 *                       [--api http://127.0.0.1:8081] [--greeting LANG=FILE.wav]...
 *
 * Greetings are 8 kHz mono WAV (scripts/demo renders them with espeak-ng).
 * Exit status: 0 after SIGINT, SIGTERM or `q`; 1 when the phone cannot
 * start; 2 for usage errors. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <spandsp.h>
#include <sndfile.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sofia-sip/nua.h>
#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sdp.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_log.h>
#include <sofia-sip/su_wait.h>
#include <sofia-sip/url.h>

#include "desk.h"
#include "rtp.h"
#include "sdp_check.h"

#define MAX_CALLS 8              /* calls the phone holds; more get 486 */
#define MAX_GREETINGS 4          /* --greeting options */
#define GREETING_MAX_S 30        /* longest greeting clip */
#define SESSION_MAX 160          /* bytes of a session id */
#define LINE_MAX_BYTES 512       /* one typed command */
#define PTIME_MS 20
#define SESSION_HEADER "X-Cardline-Session"
#define DEFAULT_NODE "assist.verify_pin"
#define DEMO_TOKEN "demo-agent-li"
#define COMMANDS "commands: r [NODE] (resume into NODE, default %s), t URI (transfer), h (hang up), q (quit)"

typedef struct {
    char lang[8];                /* the session language it greets in */
    uint8_t *law[2];             /* the clip in A-law [0] and µ-law [1] */
    size_t samples;              /* its length, 8 kHz samples */
} greeting;

typedef struct phone phone;

typedef struct {
    phone *p;                    /* owner */
    unsigned number;             /* the call's number on the screen, from 1 */
    nua_handle_t *nh;            /* the SIP call */
    bool up;                     /* ACKed: audio flows */
    bool transferring;           /* our REFER waits for its outcome */
    char session[SESSION_MAX];   /* what the transfer carried, or "" */
    int pt;                      /* RTP_PT_PCMA or RTP_PT_PCMU */
    struct sockaddr_storage peer;/* where the caller wants RTP */
    socklen_t peer_len;          /* its length */
    int fd;                      /* our RTP socket */
    int port;                    /* its port, in our SDP */
    unsigned sdp_version;        /* o= version of our last SDP */
    su_wait_t wait;              /* the socket in the root (drained) */
    int wait_index;              /* su_root_register's index, or -1 */
    su_timer_t *timer;           /* the 20 ms clock of our RTP */
    const greeting *clip;        /* what plays, or NULL once it has */
    size_t played;               /* samples of it sent */
    uint16_t seq;                /* next RTP sequence number */
    uint32_t ts;                 /* next RTP timestamp */
    uint32_t ssrc;               /* our source */
    bool marker;                 /* the next packet starts a spurt */
} call;

typedef struct {
    const char *host;            /* listening address */
    int port;                    /* and port */
    const char *name;            /* the agent, for the screen */
    const char *node;            /* where `r` sends the caller */
    desk desk;                   /* the Agent API */
} options;

struct phone {
    options opt;                 /* from the command line */
    su_root_t *root;             /* the one loop */
    nua_t *nua;                  /* the SIP stack */
    greeting greetings[MAX_GREETINGS]; /* the clips, the first is the default */
    size_t ngreetings;           /* how many */
    call *calls[MAX_CALLS];      /* calls held, NULL slots free */
    unsigned numbered;           /* calls seen so far */
    char line[LINE_MAX_BYTES];   /* a command being typed */
    size_t line_len;             /* its bytes so far */
    su_wait_t in_wait, sig_wait; /* stdin and the signals in the root */
    int in_index, sig_index;     /* their registrations, or -1 */
    int sig_fd;                  /* signalfd of SIGINT and SIGTERM */
    bool stopping;               /* nua_shutdown sent */
};

/* The screen --------------------------------------------------------------------*/

static void say(const call *c, const char *fmt, ...)
{
    va_list ap;
    if (c)
        printf("call %u ", c->number);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* A resume URI holds a one-time token that must stay off screens and logs. */
static void masked_uri(const char *uri, char *out, size_t size)
{
    const char *at = strchr(uri, '@');
    if (strncmp(uri, "sip:resume-", 11) == 0 && at)
        snprintf(out, size, "sip:resume-…%s", at);
    else
        snprintf(out, size, "%s", uri);
}

/* Greetings ---------------------------------------------------------------------*/

static bool greeting_load(greeting *g, const char *spec)
{
    const char *eq = strchr(spec, '=');
    SF_INFO info = {0};
    if (eq == NULL || eq == spec || (size_t)(eq - spec) >= sizeof g->lang) {
        fprintf(stderr, "cardline-agentphone: --greeting wants LANG=FILE.wav, not '%s'\n", spec);
        return false;
    }
    snprintf(g->lang, sizeof g->lang, "%.*s", (int)(eq - spec), spec);
    SNDFILE *sf = sf_open(eq + 1, SFM_READ, &info);
    if (sf == NULL || info.samplerate != 8000 || info.channels != 1 || info.frames <= 0 ||
        info.frames > 8000 * GREETING_MAX_S) {
        fprintf(stderr, "cardline-agentphone: %s: %s\n", eq + 1,
                sf ? "not an 8 kHz mono clip of at most 30 s" : sf_strerror(NULL));
        if (sf)
            sf_close(sf);
        return false;
    }
    int16_t *pcm = malloc((size_t)info.frames * sizeof *pcm);
    g->law[0] = malloc((size_t)info.frames);
    g->law[1] = malloc((size_t)info.frames);
    g->samples = pcm && g->law[0] && g->law[1] ? (size_t)sf_readf_short(sf, pcm, info.frames) : 0;
    for (size_t i = 0; i < g->samples; i++) {
        g->law[0][i] = linear_to_alaw(pcm[i]);
        g->law[1][i] = linear_to_ulaw(pcm[i]);
    }
    free(pcm);
    sf_close(sf);
    return g->samples > 0;
}

static const greeting *greeting_for(const phone *p, const char *lang)
{
    for (size_t i = 0; i < p->ngreetings; i++)
        if (strcmp(p->greetings[i].lang, lang) == 0)
            return &p->greetings[i];
    return p->ngreetings ? &p->greetings[0] : NULL;
}

/* RTP ---------------------------------------------------------------------------*/

static void send_packet(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic, (void)t;
    call *c = (call *)arg;
    uint8_t payload[RTP_SAMPLES_PER_PACKET], out[RTP_HEADER_BYTES + RTP_SAMPLES_PER_PACKET];
    memset(payload, c->pt == RTP_PT_PCMA ? 0xD5 : 0xFF, sizeof payload); /* G.711 silence */
    if (c->clip) {
        size_t n = c->clip->samples - c->played;
        n = n < sizeof payload ? n : sizeof payload;
        memcpy(payload, c->clip->law[c->pt == RTP_PT_PCMA ? 0 : 1] + c->played, n);
        c->played += n;
        if (c->played >= c->clip->samples)
            c->clip = NULL;
    }
    rtp_packet pkt = {.pt = (uint8_t)c->pt, .marker = c->marker, .seq = c->seq++, .ts = c->ts,
                      .ssrc = c->ssrc, .payload = payload, .payload_len = sizeof payload};
    c->ts += RTP_SAMPLES_PER_PACKET;
    c->marker = false;
    size_t len = rtp_pack(&pkt, out, sizeof out);
    if (len)
        sendto(c->fd, out, len, 0, (struct sockaddr *)&c->peer, c->peer_len);
}

/* The caller's audio is not listened to; reading keeps the socket empty. */
static int drain_rtp(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic, (void)w;
    call *c = (call *)arg;
    uint8_t buf[RTP_MAX_PACKET];
    while (recv(c->fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;
    return 0;
}

/* A UDP socket on the listening address, any port. */
static bool rtp_open(phone *p, call *c)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getaddrinfo(p->opt.host, "0", &hints, &ai) != 0)
        return false;
    c->fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bool ok = c->fd >= 0 && bind(c->fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
              getsockname(c->fd, (struct sockaddr *)&ss, &len) == 0;
    freeaddrinfo(ai);
    if (!ok)
        return false;
    c->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    if (su_wait_create(&c->wait, c->fd, SU_WAIT_IN) != 0)
        return false;
    c->wait_index = su_root_register(p->root, &c->wait, drain_rtp, (su_wakeup_arg_t *)c, 0);
    return c->wait_index >= 0;
}

static void rtp_start(call *c)
{
    c->ssrc = (uint32_t)random();
    c->seq = (uint16_t)random();
    c->ts = (uint32_t)random();
    c->marker = true;
    c->timer = su_timer_create(su_root_task(c->p->root), PTIME_MS);
    if (c->timer)
        su_timer_run(c->timer, send_packet, (su_timer_arg_t *)c);
}

/* Calls -------------------------------------------------------------------------*/

static call *call_new(phone *p, nua_handle_t *nh)
{
    for (size_t i = 0; i < MAX_CALLS; i++)
        if (p->calls[i] == NULL) {
            call *c = calloc(1, sizeof *c);
            if (c == NULL)
                return NULL;
            *c = (call){.p = p, .number = ++p->numbered, .nh = nh, .fd = -1, .wait_index = -1};
            p->calls[i] = c;
            nua_handle_bind(nh, (nua_hmagic_t *)c);
            return c;
        }
    return NULL;
}

static void call_free(call *c)
{
    phone *p = c->p;
    for (size_t i = 0; i < MAX_CALLS; i++)
        if (p->calls[i] == c)
            p->calls[i] = NULL;
    if (c->timer)
        su_timer_destroy(c->timer);
    if (c->wait_index >= 0)
        su_root_deregister(p->root, c->wait_index);
    if (c->fd >= 0)
        close(c->fd);
    nua_handle_bind(c->nh, NULL);
    nua_handle_destroy(c->nh);
    free(c);
}

/* The call the agent has on the headset: the latest one up. */
static call *current_call(phone *p)
{
    call *best = NULL;
    for (size_t i = 0; i < MAX_CALLS; i++)
        if (p->calls[i] && p->calls[i]->up && (!best || p->calls[i]->number > best->number))
            best = p->calls[i];
    return best;
}

/* The session id: the INVITE's header when the caller's phone made one of
 * the Refer-To's embedded header (RFC 3261 19.1.5), else that header still
 * inside the request URI (baresip 1.0.0 copies the URI as it is). */
static void session_of(const sip_t *sip, char *out, size_t size)
{
    out[0] = '\0';
    for (const sip_unknown_t *u = sip->sip_unknown; u; u = u->un_next)
        if (u->un_name && u->un_value && strcasecmp(u->un_name, SESSION_HEADER) == 0) {
            snprintf(out, size, "%s", u->un_value);
            return;
        }
    const url_t *url = sip->sip_request ? sip->sip_request->rq_url : NULL;
    if (url == NULL || url->url_headers == NULL)
        return;
    su_home_t home[1] = {SU_HOME_INIT(home)};
    char *headers = url_query_as_header_string(home, url->url_headers);
    size_t name = strlen(SESSION_HEADER);
    for (char *line = headers, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncasecmp(line, SESSION_HEADER, name) == 0 && line[name] == ':') {
            const char *v = line + name + 1;
            snprintf(out, size, "%.*s", (int)strcspn(v + strspn(v, " \t"), "\r"), v + strspn(v, " \t"));
            break;
        }
    }
    su_home_deinit(home);
}

/* The caller's offer: PCMA or PCMU, whichever it lists first, and its
 * address. False when it has none we can use. */
static bool read_offer(const sip_t *sip, call *c)
{
    const sip_payload_t *pl = sip->sip_payload;
    if (pl == NULL || !sdp_check(pl->pl_data, pl->pl_len, NULL))
        return false;
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sdp_parser_t *parser = sdp_parse(home, pl->pl_data, (issize_t)pl->pl_len, 0);
    sdp_session_t *sdp = sdp_session(parser);
    bool ok = false;
    for (const sdp_media_t *m = sdp ? sdp->sdp_media : NULL; m && !ok; m = m->m_next) {
        const sdp_connection_t *conn = m->m_connections ? m->m_connections : sdp->sdp_connection;
        if (m->m_type != sdp_media_audio || m->m_port == 0 || conn == NULL || conn->c_address == NULL)
            continue;
        for (const sdp_rtpmap_t *rm = m->m_rtpmaps; rm && !ok; rm = rm->rm_next)
            if (rm->rm_pt == RTP_PT_PCMA || rm->rm_pt == RTP_PT_PCMU) {
                char port[8];
                struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICHOST}, *ai = NULL;
                snprintf(port, sizeof port, "%lu", m->m_port);
                if (getaddrinfo(conn->c_address, port, &hints, &ai) == 0 && ai->ai_addrlen <= sizeof c->peer) {
                    memcpy(&c->peer, ai->ai_addr, ai->ai_addrlen);
                    c->peer_len = ai->ai_addrlen;
                    c->pt = (int)rm->rm_pt;
                    ok = true;
                }
                if (ai)
                    freeaddrinfo(ai);
            }
    }
    sdp_parser_free(parser);
    su_home_deinit(home);
    return ok;
}

static void answer(phone *p, call *c)
{
    char sdp[512];
    const char *ip = strchr(p->opt.host, ':') ? "IP6" : "IP4";
    snprintf(sdp, sizeof sdp,
             "v=0\r\no=agentphone %u %u IN %s %s\r\ns=cardline agent\r\nc=IN %s %s\r\nt=0 0\r\n"
             "m=audio %d RTP/AVP %d\r\na=rtpmap:%d %s/8000\r\na=ptime:20\r\na=sendrecv\r\n",
             c->number, ++c->sdp_version, ip, p->opt.host, ip, p->opt.host, c->port, c->pt, c->pt,
             c->pt == RTP_PT_PCMA ? "PCMA" : "PCMU");
    nua_respond(c->nh, SIP_200_OK, SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(sdp),
                TAG_END());
}

/* What the screen shows once the call is answered: the session, its
 * context (or why there is none), and how to send the caller into PIN
 * entry. */
static void show_session(phone *p, call *c, const greeting *g, const desk_context *ctx, const char *why)
{
    char command[1024];
    say(c, "answered (%s), session %s, greeting %s", c->pt == RTP_PT_PCMA ? "PCMA" : "PCMU",
        c->session[0] ? c->session : "none (not a cardline transfer)", g ? g->lang : "none");
    if (!c->session[0])
        return;
    if (ctx->summary[0])
        say(c, "context: %s", ctx->summary);
    else
        say(c, "context: unavailable (%s)", why);
    desk_resume_command(&p->opt.desk, c->session, p->opt.node, command, sizeof command);
    say(c, "type r + Enter to send the caller to %s (then back here), h to hang up; by hand: %s, then t URI",
        p->opt.node, command);
}

static void on_invite(phone *p, nua_handle_t *nh, const sip_t *sip)
{
    call *c = p->stopping ? NULL : call_new(p, nh);
    if (c == NULL) {
        nua_respond(nh, SIP_486_BUSY_HERE, TAG_END());
        nua_handle_destroy(nh);
        return;
    }
    char from[128] = "?", to[256] = "?";
    if (sip->sip_from)
        url_e(from, sizeof from, sip->sip_from->a_url);
    if (sip->sip_request)
        url_e(to, sizeof to, sip->sip_request->rq_url);
    session_of(sip, c->session, sizeof c->session);
    say(c, "ringing: from %s to %s", from, to);
    if (!read_offer(sip, c) || !rtp_open(p, c)) {
        say(c, "refused: no G.711 offer we can answer");
        nua_respond(nh, SIP_488_NOT_ACCEPTABLE, TAG_END());
        return;
    }
    answer(p, c);
}

/* A re-INVITE (hold, a new address): its offer read again, our SDP again. */
static void on_reinvite(phone *p, call *c, const sip_t *sip)
{
    if (!read_offer(sip, c)) {
        nua_respond(c->nh, SIP_488_NOT_ACCEPTABLE, TAG_END());
        return;
    }
    answer(p, c);
}

/* The session's language picks the greeting; asked once the call is up,
 * so the caller is not kept ringing by the API. */
static void on_established(phone *p, call *c)
{
    desk_context ctx = {0};
    char why[256] = "";
    if (c->session[0] && !desk_context_get(&p->opt.desk, c->session, &ctx, why, sizeof why))
        memset(&ctx, 0, sizeof ctx);
    c->clip = greeting_for(p, ctx.lang);
    c->up = true;
    rtp_start(c);
    show_session(p, c, c->clip, &ctx, why);
}

/* A sipfrag status line ("SIP/2.0 200 OK"), or 0. */
static int sipfrag_status(const sip_payload_t *pl)
{
    char line[64];
    int status = 0;
    if (pl == NULL)
        return 0;
    size_t n = pl->pl_len < sizeof line - 1 ? pl->pl_len : sizeof line - 1;
    memcpy(line, pl->pl_data, n);
    line[n] = '\0';
    return sscanf(line, "SIP/2.0 %3d", &status) == 1 ? status : 0;
}

static void on_notify(call *c, const sip_t *sip)
{
    int status = sipfrag_status(sip->sip_payload);
    if (!c->transferring || status < 200)
        return;
    c->transferring = false;
    if (status < 300) {
        say(c, "transferred (%d); hanging up", status);
        nua_bye(c->nh, TAG_END());
    } else {
        say(c, "transfer failed (%d); the caller is still here", status);
    }
}

static void on_event(nua_event_t event, int status, char const *phrase, nua_t *nua, nua_magic_t *magic,
                     nua_handle_t *nh, nua_hmagic_t *hmagic, sip_t const *sip, tagi_t tags[])
{
    phone *p = (phone *)magic;
    call *c = (call *)hmagic;
    (void)nua;
    if (event == nua_r_shutdown) {
        if (status >= 200)
            su_root_break(p->root);
        return;
    }
    if (c == NULL) {
        if (event == nua_i_invite && sip)
            on_invite(p, nh, sip);
        else if (nh && nh != nua_default(p->nua))
            nua_handle_destroy(nh);
        return;
    }
    int state = -1;
    switch (event) {
    case nua_i_state:
        tl_gets(tags, NUTAG_CALLSTATE_REF(state), TAG_END());
        if (state == nua_callstate_ready && !c->up)
            on_established(p, c);
        else if (state == nua_callstate_terminated) {
            say(c, "ended (%d %s)", status, phrase ? phrase : "");
            call_free(c);
        }
        break;
    case nua_i_invite:
        if (sip)
            on_reinvite(p, c, sip);
        break;
    case nua_i_notify:
        if (sip)
            on_notify(c, sip);
        break;
    case nua_r_refer:
        if (status >= 300 && c->transferring) {
            c->transferring = false;
            say(c, "transfer refused (%d %s)", status, phrase ? phrase : "");
        }
        break;
    default:
        break;
    }
}

/* Commands ----------------------------------------------------------------------*/

/* A blind transfer: REFER, then BYE once the caller's phone reports the
 * target answered (on_notify). */
static void transfer(call *c, const char *uri)
{
    char refer_to[DESK_URI_MAX + 2], shown[DESK_URI_MAX + 8];
    if (strncmp(uri, "sip:", 4) != 0 || strlen(uri) >= DESK_URI_MAX || strpbrk(uri, "<> \t\r\n")) {
        say(c, "cannot transfer to '%s': a sip: URI is wanted", uri);
        return;
    }
    masked_uri(uri, shown, sizeof shown);
    say(c, "transferring the caller to %s", shown);
    snprintf(refer_to, sizeof refer_to, "<%s>", uri);
    c->transferring = true;
    nua_refer(c->nh, SIPTAG_REFER_TO_STR(refer_to), TAG_END());
}

static void resume(phone *p, call *c, const char *node)
{
    char uri[DESK_URI_MAX], why[256];
    if (!c->session[0]) {
        say(c, "has no cardline session to resume");
        return;
    }
    if (!desk_resume(&p->opt.desk, c->session, node, uri, why, sizeof why)) {
        say(c, "resume refused: %s", why);
        return;
    }
    say(c, "resume URI for %s from the Agent API", node);
    transfer(c, uri);
}

static void stop(phone *p)
{
    if (p->stopping)
        return;
    p->stopping = true;
    nua_shutdown(p->nua);
}

static void command(phone *p, char *line)
{
    char *verb = strtok(line, " \t"), *arg = strtok(NULL, " \t");
    call *c = current_call(p);
    if (verb == NULL)
        return;
    if (strcmp(verb, "q") == 0) {
        stop(p);
    } else if (strcmp(verb, "r") == 0 || strcmp(verb, "t") == 0 || strcmp(verb, "h") == 0) {
        if (c == NULL)
            say(NULL, "no call is up");
        else if (verb[0] == 'r')
            resume(p, c, arg ? arg : p->opt.node);
        else if (verb[0] == 't' && arg)
            transfer(c, arg);
        else if (verb[0] == 'h')
            nua_bye(c->nh, TAG_END());
        else
            say(NULL, "t wants the URI to transfer to");
    } else {
        say(NULL, COMMANDS, p->opt.node);
    }
}

/* Typed lines; at the end of input (no terminal, as under the demo with
 * nothing typed) the phone keeps answering. */
static int on_stdin(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic, (void)w;
    phone *p = (phone *)arg;
    char buf[256];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n <= 0) {
        su_root_deregister(p->root, p->in_index);
        p->in_index = -1;
        return 0;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            p->line[p->line_len] = '\0';
            command(p, p->line);
            p->line_len = 0;
        } else if (p->line_len < sizeof p->line - 1) {
            p->line[p->line_len++] = buf[i];
        }
    }
    return 0;
}

static int on_signal(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic, (void)w;
    phone *p = (phone *)arg;
    struct signalfd_siginfo info;
    if (read(p->sig_fd, &info, sizeof info) == (ssize_t)sizeof info)
        stop(p);
    return 0;
}

/* Start and stop ----------------------------------------------------------------*/

/* sofia-sip's own diagnostics would interleave with the screen's lines. */
static void quiet_stack(void *arg, char const *fmt, va_list ap)
{
    (void)arg, (void)fmt, (void)ap;
}

static bool watch_inputs(phone *p)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    p->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (p->sig_fd < 0 || su_wait_create(&p->sig_wait, p->sig_fd, SU_WAIT_IN) != 0)
        return false;
    p->sig_index = su_root_register(p->root, &p->sig_wait, on_signal, (su_wakeup_arg_t *)p, 0);
    /* stdin may be a file or /dev/null, which epoll refuses: no commands then. */
    p->in_index = -1;
    if (su_wait_create(&p->in_wait, STDIN_FILENO, SU_WAIT_IN) == 0)
        p->in_index = su_root_register(p->root, &p->in_wait, on_stdin, (su_wakeup_arg_t *)p, 0);
    return p->sig_index >= 0;
}

static int run(phone *p)
{
    char url[128];
    snprintf(url, sizeof url, strchr(p->opt.host, ':') ? "sip:[%s]:%d" : "sip:%s:%d", p->opt.host, p->opt.port);
    p->root = su_root_create((su_root_magic_t *)p);
    if (p->root == NULL || !watch_inputs(p))
        return 1;
    p->nua = nua_create(p->root, on_event, (nua_magic_t *)p, NUTAG_URL(url), NUTAG_MEDIA_ENABLE(0),
                        NUTAG_AUTOANSWER(0), NUTAG_AUTOALERT(0), SIPTAG_ALLOW_STR("INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY"),
                        SIPTAG_USER_AGENT_STR("cardline-agentphone"), TAG_END());
    if (p->nua == NULL) {
        fprintf(stderr, "cardline-agentphone: cannot listen on %s (taken?)\n", url);
        su_root_destroy(p->root);
        return 1;
    }
    say(NULL, "cardline-agentphone: agent %s answering %s (UDP and TCP, any user), Agent API %s", p->opt.name, url,
        p->opt.desk.api);
    say(NULL, COMMANDS, p->opt.node);
    su_root_run(p->root);
    for (size_t i = 0; i < MAX_CALLS; i++)
        if (p->calls[i])
            call_free(p->calls[i]);
    nua_destroy(p->nua);
    if (p->in_index >= 0)
        su_root_deregister(p->root, p->in_index);
    su_root_deregister(p->root, p->sig_index);
    su_root_destroy(p->root);
    close(p->sig_fd);
    say(NULL, "cardline-agentphone: stopped");
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cardline-agentphone [--listen HOST:PORT] [--name NAME] [--token T] [--api URL]\n"
            "                           [--node FLOW.NODE] [--greeting LANG=FILE.wav]...\n"
            "  --listen HOST:PORT  where the phone answers (default 127.0.0.1:5070)\n"
            "  --name NAME         the agent shown (default li)\n"
            "  --token T           the agent's Agent API token (default the demo's, %s)\n"
            "  --api URL           the Agent API (default http://127.0.0.1:8081)\n"
            "  --node FLOW.NODE    where `r` sends the caller (default %s)\n"
            "  --greeting L=FILE   8 kHz mono WAV said to callers whose session language is L;\n"
            "                      the first is for everyone else\n"
            "Typed commands act on the latest call: r [NODE], t URI, h, q.\n",
            DEMO_TOKEN, DEFAULT_NODE);
}

static bool parse_listen(const char *text, options *o)
{
    static char host[64];
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text || (size_t)(colon - text) >= sizeof host)
        return false;
    snprintf(host, sizeof host, "%.*s", (int)(colon - text), text);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    o->host = host;
    o->port = (int)port;
    return *end == '\0' && port > 0 && port < 65536;
}

int main(int argc, char **argv)
{
    static phone p;
    p.opt = (options){.host = "127.0.0.1", .port = 5070, .name = "li", .node = DEFAULT_NODE,
                      .desk = {.api = "http://127.0.0.1:8081", .token = DEMO_TOKEN}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        bool ok = v != NULL;
        if (ok && strcmp(a, "--listen") == 0)
            ok = parse_listen(v, &p.opt);
        else if (ok && strcmp(a, "--name") == 0)
            p.opt.name = v;
        else if (ok && strcmp(a, "--token") == 0)
            p.opt.desk.token = v;
        else if (ok && strcmp(a, "--api") == 0)
            p.opt.desk.api = v;
        else if (ok && strcmp(a, "--node") == 0)
            p.opt.node = v;
        else if (ok && strcmp(a, "--greeting") == 0 && p.ngreetings < MAX_GREETINGS)
            ok = greeting_load(&p.greetings[p.ngreetings++], v);
        else
            ok = false;
        if (!ok) {
            usage(stderr);
            return 2;
        }
        i++;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    srandom((unsigned)getpid() ^ (unsigned)time(NULL));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    su_init();
    su_log_redirect(NULL, quiet_stack, NULL);
    int rc = run(&p);
    su_deinit();
    curl_global_cleanup();
    for (size_t i = 0; i < p.ngreetings; i++)
        free(p.greetings[i].law[0]), free(p.greetings[i].law[1]);
    return rc;
}
