/* sip — the SIP thread: a sofia-sip nua stack on a su_root of its own, the
 * table of calls it holds, the checks that refuse INVITEs without asking
 * the main loop, checking and parsing offers and writing our answers, the
 * liveness ping, and the two queues across the thread boundary (events out
 * through core/handoff, a locked list and an eventfd the main loop reads,
 * actions in through su_msg). The main loop never touches nua; the thread never
 * touches the caller's data except through voice_sip_event copies.
 *
 * SDP: nua runs without soa (NUTAG_MEDIA_ENABLE(0)), so no SDP is parsed
 * before this file decides: an INVITE from a source that is not a trunk is
 * refused 403 with its body unread (sofia-sip 1.12.11's sdp_parse can be
 * made to allocate without end, docs/voice.md). A trunk's offer must pass
 * sdp_check (sizes, RFC 4566 grammar) before sdp_parse reads it for the
 * peer's address, codec and direction. The answer is written here: one
 * codec (PCMA or PCMU, following the offerer's order, RFC 3264 6.1) plus
 * telephone-event at the peer's payload type, our address and RTP port;
 * re-INVITEs (hold, new address, refreshes) are answered here with the same
 * SDP, its o= version one higher, the direction mirrored. An INVITE without
 * SDP gets 488 (no late offers: the request is valid, the session is not
 * acceptable here); a body of another type 415; SDP refused by the check
 * or the parser 400 (a malformed request, RFC 3261 21.4.1).
 *
 * Limits: messages above VOICE_SIP_MAX_MESSAGE bytes are refused by nta (413),
 * server transactions in progress and queued outgoing messages are capped,
 * a TCP peer's half-sent message times out; calls are capped by max_calls.
 * Liveness: the main loop pings the thread through su_msg and watches for
 * the answer (voice_sip_alive).
 *
 * The thread wakes the main loop by writing to an eventfd, so the base
 * needs no evthread locking (which would tax every event of the loop). Call
 * voice_sip_stop from the main loop, never from inside the event callback. */
#include "sip.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/event.h>

struct voice_sip;
struct call;
struct action;

#define SU_ROOT_MAGIC_T struct voice_sip
#define SU_MSG_ARG_T struct action
#define SU_TIMER_ARG_T struct call
#define NUA_MAGIC_T struct voice_sip
#define NUA_HMAGIC_T struct call

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nua.h>
#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sdp.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/sip_extra.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_log.h>
#include <sofia-sip/su_wait.h>
#include <sofia-sip/tport_tag.h>

#include "allow.h"
#include "dtmf.h"
#include "handoff.h"
#include "log.h"
#include "mask.h"
#include "rtp.h"
#include "sdp_check.h"

#define CALL_BUCKETS 1024          /* hash buckets of the call table */
#define MAX_SDP 1024               /* bytes of the SDP we answer with */
#define MAX_TARGET 256             /* bytes of a REFER target */
#define MAX_SESSION 128            /* bytes of the X-Cardline-Session value */
#define SESSION_HEADER "X-Cardline-Session" /* on the REFER and embedded in its Refer-To */
#define MIN_SE_S 90                /* RFC 4028 minimum we accept */
#define PING_MISSES 3              /* unanswered ping intervals that make the thread dead */
/* Methods nua accepts; others get 405 (create_nua says why). NOTIFY is for
 * the progress of our own REFERs. */
#define SIP_ALLOWED_METHODS "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK, NOTIFY"
#define OUT_QUEUE 64               /* messages queued for one transport connection */
#define TCP_PARTIAL_MS 10000       /* silence in the middle of a TCP message: the connection is closed */
#define TCP_IDLE_MS 30000          /* a TCP connection without traffic or transactions is closed */
#define MAX_FREEZE_MS 60000        /* longest voice_sip_freeze */

typedef enum {
    CALL_OFFERED = 0,              /* INCOMING delivered, waiting for answer or reject */
    CALL_ANSWERED,                 /* 200 OK sent, waiting for ACK */
    CALL_UP,                       /* ACK received */
    CALL_ENDING                    /* BYE or refusal sent; ENDED follows */
} call_state;

/* What an offer tells us about the peer's media. */
typedef struct {
    struct sockaddr_storage rtp;   /* where the peer wants RTP */
    socklen_t rtp_len;             /* length of rtp */
    int pt;                        /* RTP_PT_PCMA or RTP_PT_PCMU */
    int dtmf_pt;                   /* telephone-event payload type, or -1 */
    bool hold;                     /* sendonly, inactive or c=0.0.0.0 */
    int mode;                      /* the stream's direction (sdp_mode_t) as offered */
} media;

/* What our SDP says, kept to answer re-INVITEs alike. */
typedef struct {
    int rtp_port;                  /* our RTP port */
    int pt;                        /* codec */
    int dtmf_pt;                   /* telephone-event payload type, or -1 */
    unsigned version;              /* o= version of the last answer sent */
} answer;

/* One call, owned by the SIP thread. */
typedef struct call {
    struct call *next;             /* bucket chain */
    struct voice_sip *s;           /* the module, for timer callbacks */
    unsigned id;                   /* the number the main loop knows it by */
    nua_handle_t *nh;              /* its nua handle (hmagic points back here) */
    call_state state;              /* where the dialog is */
    bool tcp;                      /* the INVITE came over TCP: our Contact says so */
    media peer;                    /* the media last reported to the main loop */
    answer ours;                   /* our side, set by the first answer */
    bool refer_pending;            /* a REFER waits for its outcome */
    su_timer_t *refer_timer;       /* refer_timeout_ms after the REFER, or NULL */
} call;

typedef enum { A_ANSWER, A_REJECT, A_HANGUP, A_REFER, A_PING, A_FREEZE, A_STOP } action_kind;

/* An action carried from the main loop to the thread in a su_msg. */
typedef struct action {
    action_kind kind;              /* what to do */
    unsigned call;                 /* to which call (unused by A_STOP) */
    int rtp_port;                  /* A_ANSWER */
    int pt;                        /* A_ANSWER */
    int dtmf_pt;                   /* A_ANSWER */
    int status;                    /* A_REJECT */
    unsigned ping;                 /* A_PING: the number to echo */
    int freeze_ms;                 /* A_FREEZE */
    char target[MAX_TARGET];       /* A_REFER: the URI in Refer-To */
    char session[MAX_SESSION];     /* A_REFER: the X-Cardline-Session value */
} action;

/* An event waiting for the main loop. */
typedef struct qnode {
    handoff_item item;             /* in `events` */
    voice_sip_event ev;            /* the event as delivered */
} qnode;

struct voice_sip {
    /* Set before the thread starts, read-only after. */
    struct event_base *base;       /* the main loop */
    voice_sip_options opt;         /* limits (string fields point into this struct) */
    char bind_addr[64];            /* copy of opt.bind_addr */
    char rtp_address[64];          /* copy of opt.rtp_address, or of bind_addr */
    allow_list *trunks;            /* allowed INVITE sources, NULL for none */
    allow_list *pai_trunks;        /* sources trusted for P-Asserted-Identity, NULL for none */
    voice_sip_event_fn *fn;        /* event callback */
    void *arg;                     /* its argument */
    handoff *events;               /* events for the main loop, posted by the thread */

    /* Main loop only. */
    struct event *ping_timer;      /* every ping_interval_ms */
    unsigned ping_sent;            /* number of the last ping sent */
    int ping_waits;                /* intervals the last ping has gone unanswered */
    bool alive;                    /* the thread answered in time */

    /* Shared between the threads. */
    pthread_mutex_t lock;          /* guards the start state */
    pthread_cond_t started;        /* signalled when start_state leaves 0 */
    int start_state;               /* 0 starting, 1 running, -1 failed */
    su_root_t *root;               /* the thread's root, target of actions */
    atomic_int ncalls;             /* calls in the table */
    atomic_uint pong;              /* the last ping number the thread echoed */
    atomic_ulong refused[VOICE_SIP_REFUSED_REASONS]; /* refusals by reason */
    pthread_t thread;              /* the SIP thread */

    /* SIP thread only. */
    nua_t *nua;                    /* the stack */
    call *calls[CALL_BUCKETS];     /* call table by number */
    unsigned next_id;              /* the last number given to a call */
    bool stopping;                 /* nua_shutdown was called */
};

/* Events to the main loop --------------------------------------------------------*/

static void post(voice_sip *s, const voice_sip_event *ev)
{
    /* Not mem_malloc: the SIP thread logs a lost event rather than abort
     * the calls it holds. */
    qnode *n = malloc(sizeof *n);
    if (n == NULL) {
        log_error("sip.event_lost", "call=%u kind=%d", ev->call, (int)ev->kind);
        return;
    }
    n->ev = *ev;
    handoff_post(s->events, &n->item);
}

static qnode *pop(voice_sip *s)
{
    handoff_item *it = handoff_take(s->events);
    return it ? handoff_owner(it, qnode, item) : NULL;
}

static void deliver(handoff *h, void *arg)
{
    (void)h;
    voice_sip *s = arg;
    for (qnode *n; (n = pop(s)) != NULL; free(n))
        s->fn(&n->ev, s->arg);
}

static void post_simple(voice_sip *s, const call *c, voice_sip_event_kind kind, int status)
{
    voice_sip_event ev = {.kind = kind, .call = c->id, .status = status, .dtmf_pt = -1};
    post(s, &ev);
}

static void post_media(voice_sip *s, const call *c)
{
    voice_sip_event ev = {.kind = VOICE_SIP_MEDIA, .call = c->id, .rtp = c->peer.rtp,
                          .rtp_len = c->peer.rtp_len, .pt = c->peer.pt,
                          .dtmf_pt = c->peer.dtmf_pt, .hold = c->peer.hold};
    post(s, &ev);
}

/* The call table -----------------------------------------------------------------*/

static call *call_find(voice_sip *s, unsigned id)
{
    for (call *c = s->calls[id % CALL_BUCKETS]; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

static call *call_add(voice_sip *s, nua_handle_t *nh)
{
    call *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->s = s;
    c->id = ++s->next_id;
    c->nh = nh;
    c->next = s->calls[c->id % CALL_BUCKETS];
    s->calls[c->id % CALL_BUCKETS] = c;
    nua_handle_bind(nh, c);
    atomic_fetch_add(&s->ncalls, 1);
    return c;
}

static void refer_timer_stop(call *c)
{
    if (c->refer_timer) {
        su_timer_destroy(c->refer_timer);
        c->refer_timer = NULL;
    }
    c->refer_pending = false;
}

/* Unlinks and frees the call and lets nua release its handle; events nua
 * still holds for the handle find hmagic NULL and are ignored. */
static void call_remove(voice_sip *s, call *c)
{
    for (call **p = &s->calls[c->id % CALL_BUCKETS]; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    refer_timer_stop(c);
    nua_handle_bind(c->nh, NULL);
    nua_handle_destroy(c->nh);
    atomic_fetch_sub(&s->ncalls, 1);
    free(c);
}

static void call_end(voice_sip *s, call *c, int status)
{
    log_info("sip.ended", "call=%u status=%d", c->id, status);
    post_simple(s, c, VOICE_SIP_ENDED, status);
    call_remove(s, c);
}

/* SDP ----------------------------------------------------------------------------*/

static bool offers_pt(const sdp_media_t *m, int pt)
{
    for (const sdp_rtpmap_t *rm = m->m_rtpmaps; rm; rm = rm->rm_next)
        if ((int)rm->rm_pt == pt)
            return true;
    return false;
}

/* PCMA or PCMU, whichever the offer lists first; `keep` wins when offered
 * (a re-INVITE should not switch the codec under the media path). */
static int pick_codec(const sdp_media_t *m, int keep)
{
    if (keep >= 0 && offers_pt(m, keep))
        return keep;
    for (const sdp_rtpmap_t *rm = m->m_rtpmaps; rm; rm = rm->rm_next)
        if (rm->rm_pt == RTP_PT_PCMA || rm->rm_pt == RTP_PT_PCMU)
            return (int)rm->rm_pt;
    return -1;
}

static int pick_dtmf(const sdp_media_t *m)
{
    for (const sdp_rtpmap_t *rm = m->m_rtpmaps; rm; rm = rm->rm_next)
        if (rm->rm_encoding && strcasecmp(rm->rm_encoding, "telephone-event") == 0 &&
            (rm->rm_rate == 8000 || rm->rm_rate == 0))
            return (int)rm->rm_pt;
    return -1;
}

static bool set_address(const sdp_connection_t *c, unsigned port, media *out)
{
    memset(&out->rtp, 0, sizeof out->rtp);
    if (c == NULL || c->c_address == NULL || c->c_nettype != sdp_net_in)
        return false;
    if (c->c_addrtype == sdp_addr_ip4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->rtp;
        if (inet_pton(AF_INET, c->c_address, &sin->sin_addr) != 1)
            return false;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->rtp_len = sizeof *sin;
        out->hold = sin->sin_addr.s_addr == INADDR_ANY;
        return true;
    }
    if (c->c_addrtype == sdp_addr_ip6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->rtp;
        if (inet_pton(AF_INET6, c->c_address, &sin6->sin6_addr) != 1)
            return false;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->rtp_len = sizeof *sin6;
        out->hold = IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
        return true;
    }
    return false;
}

/* Parses an offer into `out`. Returns 0, 400 (not SDP) or 488 (no usable
 * audio stream, no common codec, no address we can send to). */
static int parse_offer(const char *body, size_t len, int keep_pt, media *out)
{
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sdp_parser_t *parser = sdp_parse(home, body, (issize_t)len, 0);
    sdp_session_t *sdp = sdp_session(parser);
    int result = 488;
    if (sdp == NULL) {
        result = 400;
        goto done;
    }
    for (const sdp_media_t *m = sdp->sdp_media; m; m = m->m_next) {
        if (m->m_type != sdp_media_audio || m->m_proto != sdp_proto_rtp || m->m_port == 0 ||
            m->m_rejected)
            continue;
        int pt = pick_codec(m, keep_pt);
        if (pt < 0)
            continue;
        media found = {.pt = pt, .dtmf_pt = pick_dtmf(m)};
        if (!set_address(m->m_connections ? m->m_connections : sdp->sdp_connection, m->m_port,
                         &found))
            continue;
        sdp_mode_t session_mode = sdp_attribute_mode(sdp->sdp_attributes, sdp_sendrecv);
        if (!(m->m_mode & sdp_recvonly) || !(session_mode & sdp_recvonly))
            found.hold = true;
        found.mode = (int)m->m_mode;
        *out = found;
        result = 0;
        break;
    }
done:
    sdp_parser_free(parser);
    su_home_deinit(home);
    return result;
}

/* Checks and parses an offer body into `out`: 0, or the refusal status
 * with its reason counted in *why. */
static int read_offer(const sip_t *sip, int keep_pt, media *out, voice_sip_refusal *why)
{
    const sip_payload_t *pl = sip->sip_payload;
    const sip_content_type_t *ct = sip->sip_content_type;
    const char *problem = NULL;
    if (pl == NULL || pl->pl_len == 0) {
        *why = VOICE_SIP_REFUSED_NO_SDP;
        return 488;
    }
    if (ct == NULL || ct->c_type == NULL || strcasecmp(ct->c_type, "application/sdp") != 0) {
        *why = VOICE_SIP_REFUSED_CONTENT_TYPE;
        return 415;
    }
    if (!sdp_check(pl->pl_data, pl->pl_len, &problem)) {
        log_info("sip.bad_sdp", "check=%s", problem);
        *why = VOICE_SIP_REFUSED_BAD_SDP;
        return 400;
    }
    int status = parse_offer(pl->pl_data, pl->pl_len, keep_pt, out);
    *why = status == 400 ? VOICE_SIP_REFUSED_BAD_SDP : VOICE_SIP_REFUSED_NO_CODEC;
    return status;
}

static bool media_equal(const media *a, const media *b)
{
    return a->rtp_len == b->rtp_len && memcmp(&a->rtp, &b->rtp, a->rtp_len) == 0 &&
           a->pt == b->pt && a->dtmf_pt == b->dtmf_pt && a->hold == b->hold &&
           a->mode == b->mode;
}

/* The answer's direction mirrors the offer's (RFC 3264 6.1). */
static const char *answer_mode(int offered)
{
    switch (offered) {
    case sdp_sendonly:
        return "recvonly";
    case sdp_recvonly:
        return "sendonly";
    case sdp_inactive:
        return "inactive";
    default:
        return "sendrecv";
    }
}

/* Our SDP for the call, its o= version one higher than the last. */
static void build_answer_sdp(const voice_sip *s, call *c, char *out, size_t size)
{
    const char *ip = strchr(s->rtp_address, ':') ? "IP6" : "IP4";
    const answer *a = &c->ours;
    c->ours.version++;
    int n = snprintf(out, size,
                     "v=0\r\n"
                     "o=cardline %u %u IN %s %s\r\n"
                     "s=cardline\r\n"
                     "c=IN %s %s\r\n"
                     "t=0 0\r\n"
                     "m=audio %d RTP/AVP %d",
                     c->id, a->version, ip, s->rtp_address, ip, s->rtp_address, a->rtp_port, a->pt);
    if (a->dtmf_pt >= 0)
        n += snprintf(out + n, size - (size_t)n, " %d", a->dtmf_pt);
    n += snprintf(out + n, size - (size_t)n, "\r\na=rtpmap:%d %s/8000\r\n", a->pt,
                  a->pt == RTP_PT_PCMA ? "PCMA" : "PCMU");
    if (a->dtmf_pt >= 0)
        n += snprintf(out + n, size - (size_t)n,
                      "a=rtpmap:%d telephone-event/8000\r\na=fmtp:%d 0-15\r\n", a->dtmf_pt,
                      a->dtmf_pt);
    snprintf(out + n, size - (size_t)n, "a=ptime:20\r\na=%s\r\n", answer_mode(c->peer.mode));
}

static void count_refusal(voice_sip *s, voice_sip_refusal why)
{
    atomic_fetch_add(&s->refused[why], 1);
}

/* Incoming requests --------------------------------------------------------------*/

static void address_text(const struct sockaddr *sa, char *out, size_t size)
{
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    if (getnameinfo(sa, len, out, (socklen_t)size, NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(out, size, "?");
}

/* Whether `sa` is in `list`; an empty list (NULL) holds nobody. */
static bool listed(const allow_list *list, const struct sockaddr *sa)
{
    return list != NULL && allow_match(list, sa);
}

static void copy_user(char *out, size_t size, const url_t *url)
{
    snprintf(out, size, "%s", url && url->url_user ? url->url_user : "");
}

/* The user of the first P-Asserted-Identity that has one (sip: or tel:).
 * nta's parser leaves the header unknown; its value is parsed here. */
static bool copy_asserted_user(const sip_t *sip, char *out, size_t size)
{
    su_home_t home[1] = {SU_HOME_INIT(home)};
    bool found = false;
    for (const sip_unknown_t *u = sip->sip_unknown; u && !found; u = u->un_next) {
        if (u->un_name == NULL || u->un_value == NULL ||
            strcasecmp(u->un_name, "P-Asserted-Identity") != 0)
            continue;
        for (const sip_p_asserted_identity_t *pai = sip_p_asserted_identity_make(home, u->un_value);
             pai && !found; pai = pai->paid_next)
            if (pai->paid_url->url_user && *pai->paid_url->url_user) {
                copy_user(out, size, pai->paid_url);
                found = true;
            }
    }
    su_home_deinit(home);
    return found;
}

/* The caller: P-Asserted-Identity's user when the source is trusted to
 * assert one (RFC 3325), else From's user. */
static void copy_caller(const voice_sip *s, const sip_t *sip, const struct sockaddr *src,
                        char *out, size_t size)
{
    if (listed(s->pai_trunks, src) &&
        copy_asserted_user(sip, out, size))
        return;
    copy_user(out, size, sip->sip_from ? sip->sip_from->a_url : NULL);
}

/* The request-URI user as it may be logged: an agent's one-time resume
 * token (resume-<token>) is a credential and stays out of the log. */
static const char *loggable_user(const char *user)
{
    return strncmp(user, "resume-", strlen("resume-")) == 0 ? "resume-…" : user;
}

/* The source address comes from the transport (the datagram's sender or
 * the TCP peer), not from Via, which the sender writes. */
static bool request_source(nua_t *nua, struct sockaddr_storage *out, bool *tcp)
{
    msg_t *msg = nua_current_request(nua);
    su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
    if (ai == NULL || ai->ai_addr == NULL || ai->ai_addrlen > sizeof *out)
        return false;
    memset(out, 0, sizeof *out);
    memcpy(out, ai->ai_addr, ai->ai_addrlen);
    *tcp = ai->ai_protocol == IPPROTO_TCP;
    return true;
}

static void refuse(nua_t *nua, nua_handle_t *nh, int status)
{
    nua_respond(nh, status, sip_status_phrase(status), NUTAG_WITH_THIS(nua), TAG_END());
    nua_handle_destroy(nh);
}

static void on_new_invite(voice_sip *s, nua_t *nua, nua_handle_t *nh, const sip_t *sip)
{
    struct sockaddr_storage src;
    char source[64] = "?";
    const char *call_id = sip->sip_call_id ? sip->sip_call_id->i_id : "";
    bool tcp = false;
    if (!request_source(nua, &src, &tcp)) {
        log_warn("sip.refused", "status=500 reason=no_source call_id=%s", log_quote(call_id).s);
        refuse(nua, nh, 500);
        return;
    }
    address_text((struct sockaddr *)&src, source, sizeof source);
    int status = 0;
    voice_sip_refusal why = VOICE_SIP_REFUSED_SOURCE;
    media peer;
    if (!listed(s->trunks, (struct sockaddr *)&src))
        status = 403, why = VOICE_SIP_REFUSED_SOURCE;
    else if (s->stopping || atomic_load(&s->ncalls) >= s->opt.max_calls)
        status = 503, why = VOICE_SIP_REFUSED_BUSY;
    else
        status = read_offer(sip, -1, &peer, &why);
    if (status) {
        log_info("sip.refused", "status=%d reason=%s source=%s call_id=%s", status,
                 voice_sip_refusal_name(why), source, log_quote(call_id).s);
        count_refusal(s, why);
        refuse(nua, nh, status);
        return;
    }
    call *c = call_add(s, nh);
    if (c == NULL) {
        refuse(nua, nh, 500);
        return;
    }
    c->peer = peer;
    c->tcp = tcp;
    voice_sip_event ev = {.kind = VOICE_SIP_INCOMING, .call = c->id, .rtp = peer.rtp,
                          .rtp_len = peer.rtp_len, .pt = peer.pt, .dtmf_pt = peer.dtmf_pt,
                          .hold = peer.hold};
    snprintf(ev.call_id, sizeof ev.call_id, "%s", call_id);
    copy_caller(s, sip, (struct sockaddr *)&src, ev.from_user, sizeof ev.from_user);
    copy_user(ev.to_user, sizeof ev.to_user, sip->sip_request ? sip->sip_request->rq_url : NULL);
    snprintf(ev.source, sizeof ev.source, "%s", source);
    log_info("sip.incoming", "call=%u call_id=%s from=%s to=%s source=%s pt=%d dtmf_pt=%d",
             c->id, log_quote(call_id).s, mask_phone(ev.from_user).s,
             log_quote(loggable_user(ev.to_user)).s, source, peer.pt, peer.dtmf_pt);
    post(s, &ev);
}

/* Answers an INFO: 200 with a digit reported, 200 for an empty keepalive,
 * 415 for other content, 400 for a DTMF body we cannot read. */
static void on_info(voice_sip *s, nua_t *nua, call *c, const sip_t *sip)
{
    const sip_content_type_t *ct = sip->sip_content_type;
    const sip_payload_t *pl = sip->sip_payload;
    int status = 200;
    char digit = 0;
    if (pl == NULL || pl->pl_len == 0)
        status = 200;
    else if (ct && ct->c_type && strcasecmp(ct->c_type, "application/dtmf-relay") == 0)
        status = (digit = voice_info_digit(true, pl->pl_data, pl->pl_len)) ? 200 : 400;
    else if (ct && ct->c_type && strcasecmp(ct->c_type, "application/dtmf") == 0)
        status = (digit = voice_info_digit(false, pl->pl_data, pl->pl_len)) ? 200 : 400;
    else
        status = 415;
    nua_respond(c->nh, status, sip_status_phrase(status), NUTAG_WITH_THIS(nua), TAG_END());
    if (digit) {
        voice_sip_event ev = {.kind = VOICE_SIP_DIGIT, .call = c->id, .digit = digit,
                              .dtmf_pt = -1};
        post(s, &ev);
    }
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
    if (sscanf(line, "SIP/2.0 %3d", &status) != 1 || status < 100 || status > 699)
        return 0;
    return status;
}

static void transfer_failed(voice_sip *s, call *c, int status)
{
    refer_timer_stop(c);
    log_info("sip.transfer_failed", "call=%u status=%d", c->id, status);
    post_simple(s, c, VOICE_SIP_TRANSFER_FAILED, status);
}

static void on_notify(voice_sip *s, call *c, const sip_t *sip)
{
    if (!c->refer_pending || sip->sip_event == NULL ||
        strcasecmp(sip->sip_event->o_type, "refer") != 0)
        return;
    int status = sipfrag_status(sip->sip_payload);
    if (status >= 200 && status < 300) {
        refer_timer_stop(c);
        log_info("sip.transferred", "call=%u", c->id);
        post_simple(s, c, VOICE_SIP_TRANSFERRED, status);
        c->state = CALL_ENDING;
        nua_bye(c->nh, TAG_END());
    } else if (status >= 300) {
        transfer_failed(s, c, status);
    }
}

static void on_refer_timeout(su_root_magic_t *magic, su_timer_t *t, call *c)
{
    (void)t;
    if (c->refer_pending)
        transfer_failed(magic, c, 0);
}

/* Sends 2xx with our SDP (its version one higher than the last). */
static void respond_with_sdp(voice_sip *s, call *c, nua_t *nua)
{
    char sdp[MAX_SDP], contact[128];
    build_answer_sdp(s, c, sdp, sizeof sdp);
    /* nua's Contact names no transport, which sends the peer's in-dialog
     * requests to UDP; a TCP caller is told to stay on TCP. */
    snprintf(contact, sizeof contact,
             strchr(s->bind_addr, ':') ? "<sip:[%s]:%d;transport=tcp>" : "<sip:%s:%d;transport=tcp>",
             s->bind_addr, s->opt.port);
    nua_respond(c->nh, SIP_200_OK, TAG_IF(nua, NUTAG_WITH_THIS(nua)),
                SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(sdp),
                TAG_IF(c->tcp, SIPTAG_CONTACT_STR(contact)), TAG_END());
}

/* A re-INVITE: hold, resume, a new address or codec, or a session refresh.
 * Its offer is checked like the first; the answer is our SDP again, in the
 * codec the peer now has (the one we had when it is still offered). Without
 * an offer ours goes as the offer and the ACK's answer is not read. */
static void on_reinvite(voice_sip *s, nua_t *nua, call *c, const sip_t *sip)
{
    if (c->state != CALL_UP) {
        nua_respond(c->nh, SIP_491_REQUEST_PENDING, NUTAG_WITH_THIS(nua), TAG_END());
        return;
    }
    if (sip->sip_payload && sip->sip_payload->pl_len) {
        media m;
        voice_sip_refusal why;
        int status = read_offer(sip, c->peer.pt, &m, &why);
        if (status) {
            log_info("sip.refused", "call=%u status=%d reason=%s", c->id, status,
                     voice_sip_refusal_name(why));
            count_refusal(s, why);
            nua_respond(c->nh, status, sip_status_phrase(status), NUTAG_WITH_THIS(nua),
                        TAG_END());
            return;
        }
        c->ours.pt = m.pt;
        c->ours.dtmf_pt = m.dtmf_pt;
        if (!media_equal(&m, &c->peer)) {
            c->peer = m;
            log_info("sip.media", "call=%u pt=%d hold=%d", c->id, m.pt, m.hold);
            post_media(s, c);
        }
    }
    respond_with_sdp(s, c, nua);
}

static void on_state(voice_sip *s, call *c, int status, tagi_t tags[])
{
    int state = -1;
    tl_gets(tags, NUTAG_CALLSTATE_REF(state), TAG_END());
    if (state == nua_callstate_terminated) {
        call_end(s, c, status);
        return;
    }
    if (state == nua_callstate_ready && c->state == CALL_ANSWERED) {
        c->state = CALL_UP;
        log_info("sip.established", "call=%u", c->id);
        post_simple(s, c, VOICE_SIP_ESTABLISHED, 200);
    }
}

/* Events on handles we did not bind: new INVITEs, and whatever else nua
 * made a handle of its own for (OPTIONS, MESSAGE, REGISTER, a method it
 * does not know, ...), which it has answered by itself and we release:
 * this thread binds every handle it keeps, so an unbound one left alone
 * would never be freed. */
static void on_unbound(voice_sip *s, nua_event_t event, nua_t *nua, nua_handle_t *nh,
                       const sip_t *sip)
{
    if (event == nua_i_invite && sip)
        on_new_invite(s, nua, nh, sip);
    else if (event == nua_i_info)
        refuse(nua, nh, 481);
    else
        nua_handle_destroy(nh);
}

static void on_bound(voice_sip *s, nua_event_t event, int status, nua_t *nua, call *c,
                     const sip_t *sip, tagi_t tags[])
{
    switch (event) {
    case nua_i_state:
        on_state(s, c, status, tags);
        break;
    case nua_i_invite:
        if (sip)
            on_reinvite(s, nua, c, sip);
        break;
    case nua_i_info:
        if (sip)
            on_info(s, nua, c, sip);
        break;
    case nua_i_notify:
        if (sip)
            on_notify(s, c, sip);
        break;
    case nua_r_refer:
        if (status >= 300 && c->refer_pending)
            transfer_failed(s, c, status);
        break;
    default:
        break;
    }
}

static void on_nua_event(nua_event_t event, int status, char const *phrase, nua_t *nua,
                         voice_sip *s, nua_handle_t *nh, call *c, const sip_t *sip,
                         tagi_t tags[])
{
    (void)phrase;
    if (event == nua_r_shutdown) {
        if (status >= 200)
            su_root_break(s->root);
        return;
    }
    if (nh == NULL || nh == nua_default(nua))
        return;
    if (c)
        on_bound(s, event, status, nua, c, sip, tags);
    else
        on_unbound(s, event, nua, nh, sip);
}

/* Actions from the main loop -----------------------------------------------------*/

static void do_answer(voice_sip *s, call *c, const action *a)
{
    if (c->state != CALL_OFFERED)
        return;
    c->ours = (answer){.rtp_port = a->rtp_port, .pt = a->pt, .dtmf_pt = a->dtmf_pt};
    c->state = CALL_ANSWERED;
    respond_with_sdp(s, c, NULL);
}

/* A refusal before the answer ends the call here and now: nua's own report
 * of the refused INVITE is not relied on. */
static void refuse_offered(voice_sip *s, call *c, int status)
{
    nua_respond(c->nh, status, sip_status_phrase(status), TAG_END());
    call_end(s, c, status);
}

static void do_hangup(voice_sip *s, call *c)
{
    if (c->state == CALL_OFFERED) {
        refuse_offered(s, c, 480);
    } else if (c->state != CALL_ENDING) {
        c->state = CALL_ENDING;
        nua_bye(c->nh, TAG_END());
    }
}

/* Refer-To: the target with the session id as an embedded header (RFC 3261
 * 19.1.5), so the transferred caller's INVITE carries it to the agent's
 * phone. ':' stays as it is (a header value may hold it): phones that copy
 * the URI literally (baresip 1.0.0 mangles every %XX) then still pass
 * "voice:" intact; the rest that a header value may not hold is escaped. */
static void refer_to_with_session(char *out, size_t size, const char *target, const char *session)
{
    char escaped[3 * MAX_SESSION + 1];
    isize_t len = url_esclen(session, "@&=;,%");
    if (len < 0 || (size_t)len >= sizeof escaped) {
        snprintf(out, size, "<%s>", target);
        return;
    }
    url_escape(escaped, session, "@&=;,%");
    snprintf(out, size, "<%s%c" SESSION_HEADER "=%s>", target, strchr(target, '?') ? '&' : '?', escaped);
}

static void do_refer(voice_sip *s, call *c, const action *a)
{
    if (c->state != CALL_UP || c->refer_pending) {
        post_simple(s, c, VOICE_SIP_TRANSFER_FAILED, 0);
        return;
    }
    char refer_to[MAX_TARGET + 3 * MAX_SESSION + 32], header[MAX_SESSION + 32];
    refer_to_with_session(refer_to, sizeof refer_to, a->target, a->session);
    snprintf(header, sizeof header, SESSION_HEADER ": %s", a->session);
    c->refer_pending = true;
    c->refer_timer = su_timer_create(su_root_task(s->root), s->opt.refer_timeout_ms);
    if (c->refer_timer)
        su_timer_set(c->refer_timer, on_refer_timeout, c);
    log_info("sip.refer", "call=%u target=%s", c->id, log_quote(a->target).s);
    nua_refer(c->nh, SIPTAG_REFER_TO_STR(refer_to), SIPTAG_HEADER_STR(header), TAG_END());
}

static void start_shutdown(voice_sip *s)
{
    s->stopping = true;
    for (size_t b = 0; b < CALL_BUCKETS; b++)
        for (call *c = s->calls[b], *next; c; c = next) {
            next = c->next;
            if (c->state == CALL_OFFERED)
                refuse_offered(s, c, 503);
            else if (c->state != CALL_ENDING)
                do_hangup(s, c);
        }
    nua_shutdown(s->nua);
}

static void on_action(su_root_magic_t *magic, su_msg_r msg, action *a)
{
    (void)msg;
    voice_sip *s = magic;
    if (a->kind == A_STOP) {
        start_shutdown(s);
        return;
    }
    if (a->kind == A_PING) {
        atomic_store(&s->pong, a->ping);
        return;
    }
    if (a->kind == A_FREEZE) {
        usleep((useconds_t)a->freeze_ms * 1000);
        return;
    }
    call *c = s->stopping ? NULL : call_find(s, a->call);
    if (c == NULL)
        return;
    switch (a->kind) {
    case A_ANSWER:
        do_answer(s, c, a);
        break;
    case A_REJECT:
        if (c->state == CALL_OFFERED)
            refuse_offered(s, c, a->status);
        break;
    case A_HANGUP:
        do_hangup(s, c);
        break;
    case A_REFER:
        do_refer(s, c, a);
        break;
    case A_PING:
    case A_FREEZE:
    case A_STOP:
        break;
    }
}

static void send_action(voice_sip *s, const action *a)
{
    su_msg_r m = SU_MSG_R_INIT;
    if (su_msg_new(m, sizeof *a) != 0) {
        log_error("sip.action_lost", "call=%u kind=%d", a->call, (int)a->kind);
        return;
    }
    *su_msg_data(m) = *a;
    if (su_msg_send_to(m, su_root_task(s->root), on_action) != 0)
        log_error("sip.action_lost", "call=%u kind=%d", a->call, (int)a->kind);
}

/* The thread ---------------------------------------------------------------------*/

/* sofia's own diagnostics (garbage received, ICMP errors) become debug
 * lines of ours instead of free text on stderr. sofia writes a line in
 * pieces; they are joined up to the newline. Only SIP threads log here. */
static _Thread_local char stack_line[400];
static _Thread_local size_t stack_len;

static void stack_log(void *stream, char const *fmt, va_list ap)
{
    (void)stream;
    char piece[400];
    vsnprintf(piece, sizeof piece, fmt, ap);
    for (const char *p = piece; *p; p++) {
        if (*p == '\n') {
            stack_line[stack_len] = '\0';
            if (stack_len)
                log_debug("sip.stack", "text=%s", log_quote(stack_line).s);
            stack_len = 0;
        } else if (stack_len < sizeof stack_line - 1) {
            stack_line[stack_len++] = *p == '\t' ? ' ' : *p;
        }
    }
}

static void report_start(voice_sip *s, int state)
{
    pthread_mutex_lock(&s->lock);
    s->start_state = state;
    pthread_cond_signal(&s->started);
    pthread_mutex_unlock(&s->lock);
}


static nua_t *create_nua(voice_sip *s, su_root_t *root)
{
    char url[128];
    snprintf(url, sizeof url, strchr(s->bind_addr, ':') ? "sip:[%s]:%d" : "sip:%s:%d",
             s->bind_addr, s->opt.port);
    return nua_create(root, on_nua_event, s,
                      NUTAG_URL(url),
                      /* The methods a call needs, and no more: nua answers
                       * others 405 before any usage exists. A REFER or a
                       * SUBSCRIBE would make it a notifier, and 1.12.11
                       * retries a NOTIFY it cannot build (a From host that
                       * is no host, no Contact) from inside its own failure
                       * until the SIP thread's stack overflows. */
                      SIPTAG_ALLOW_STR(SIP_ALLOWED_METHODS),
                      NUTAG_APPL_METHOD("INFO"),

                      NUTAG_AUTOANSWER(0),
                      NUTAG_AUTOALERT(0),
                      NUTAG_MEDIA_ENABLE(0),
                      NTATAG_MAXSIZE(VOICE_SIP_MAX_MESSAGE),
                      NTATAG_MAX_PROCEEDING((usize_t)s->opt.max_calls * 2 + 64),
                      TPTAG_QUEUESIZE(OUT_QUEUE),
                      NUTAG_SESSION_TIMER((unsigned)s->opt.session_expires_s),
                      /* Without soa a refresh re-INVITE of ours would carry no
                       * offer: the caller refreshes, or we refresh by UPDATE. */
                      NUTAG_SESSION_REFRESHER(nua_remote_refresher),
                      NUTAG_UPDATE_REFRESH(1),
                      NUTAG_MIN_SE(MIN_SE_S),
                      SIPTAG_SUPPORTED_STR("timer"),
                      SIPTAG_USER_AGENT_STR("cardline"),
                      /* After a message head it cannot parse, sofia stops
                       * reading that TCP connection and, left to its
                       * defaults, never closes it: it stayed in CLOSE-WAIT
                       * once the peer hung up. Close connections idle this
                       * long, and those stuck mid-message (docs/voice.md). */
                      TPTAG_IDLE(TCP_IDLE_MS),
                      TPTAG_TIMEOUT(TCP_PARTIAL_MS),
                      TAG_END());
}

/* The TCP listening sockets nua opened on our port; the only way to them,
 * since sofia-sip 1.12.11 exposes no transport's descriptor. */
static size_t tcp_listeners(const voice_sip *s, int *fds, size_t max)
{
    size_t n = 0;
    DIR *dir = opendir("/proc/self/fd");
    for (struct dirent *d; dir && n < max && (d = readdir(dir)) != NULL;) {
        int fd = atoi(d->d_name), type = 0, listening = 0;
        socklen_t len = sizeof type;
        struct sockaddr_storage ss;
        if (d->d_name[0] < '0' || d->d_name[0] > '9' || fd == dirfd(dir) ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
            continue;
        len = sizeof listening;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening)
            continue;
        len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
            continue;
        int port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                   : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                              : -1;
        if (port == s->opt.port)
            fds[n++] = fd;
    }
    if (dir)
        closedir(dir);
    return n;
}

/* Over TCP, sofia-sip 1.12.11 reads a message that follows another on the
 * same connection without its size limit and allocates whatever its
 * Content-Length claims (2 GiB ends in an assertion). Only trunks may
 * reach that code: the kernel drops other sources' connection attempts
 * before the stack sees a byte. A stranger's datagram still gets its 403. */
static void filter_tcp_strangers(voice_sip *s)
{
    int fds[4];
    size_t n = tcp_listeners(s, fds, sizeof fds / sizeof *fds);
    for (size_t i = 0; i < n; i++)
        if (allow_filter_socket(s->trunks, fds[i]) != 0)
            log_error("sip.tcp_filter_failed", "errno=%d", errno);
    log_info("sip.tcp_filtered", "listeners=%zu", n);
}

static void *sip_thread(void *arg)
{
    voice_sip *s = arg;
    su_init();
    su_log_redirect(su_log_default, stack_log, NULL);
    su_root_t *root = su_root_create(s);
    if (root == NULL) {
        su_deinit();
        report_start(s, -1);
        return NULL;
    }
    su_root_threading(root, 0);
    s->root = root;
    s->nua = create_nua(s, root);
    if (s->nua == NULL) {
        su_root_destroy(root);
        su_deinit();
        report_start(s, -1);
        return NULL;
    }
    filter_tcp_strangers(s);
    report_start(s, 1);
    su_root_run(root);
    for (size_t b = 0; b < CALL_BUCKETS; b++)
        while (s->calls[b])
            call_remove(s, s->calls[b]);
    nua_destroy(s->nua);
    su_root_destroy(root);
    su_deinit();
    return NULL;
}

/* Lifecycle ----------------------------------------------------------------------*/

/* nua_create leaks its home when the bind fails (1.12.11), so a port that
 * is taken is found here first; a lost race still ends in a clean NULL. */
static bool port_bindable(const char *addr, int port)
{
    static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        struct addrinfo hints = {.ai_socktype = types[i], .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
        struct addrinfo *ai = NULL;
        if (getaddrinfo(addr, service, &hints, &ai) != 0)
            return false;
        int fd = socket(ai->ai_family, ai->ai_socktype, 0);
        int one = 1;
        bool ok = fd >= 0 &&
                  (types[i] == SOCK_DGRAM ||
                   setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0) &&
                  bind(fd, ai->ai_addr, ai->ai_addrlen) == 0;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        if (!ok)
            return false;
    }
    return true;
}

static bool options_valid(const voice_sip_options *opt)
{
    return opt->bind_addr && *opt->bind_addr && strlen(opt->bind_addr) < 64 &&
           (opt->rtp_address == NULL || strlen(opt->rtp_address) < 64) &&
           opt->port > 0 && opt->port < 65536 && opt->max_calls > 0 &&
           opt->session_expires_s >= MIN_SE_S && opt->refer_timeout_ms > 0 &&
           opt->ping_interval_ms >= 0;
}

/* One allowlist option: NULL for none, or false when it does not parse. */
static bool list_parse(const char *text, const char *name, allow_list **out)
{
    char err[128];
    *out = NULL;
    if (text == NULL || text[strspn(text, " ,")] == '\0')
        return true;
    *out = allow_parse(text, err, sizeof err);
    if (*out == NULL)
        log_error("sip.start", "error=bad_%s why=%s", name, log_quote(err).s);
    return *out != NULL;
}

/* A PAI-trusted source that is not a trunk is never asked: its INVITEs are
 * refused before the caller is read. */
static bool trunks_parse(voice_sip *s, const voice_sip_options *opt)
{
    return list_parse(opt->trunks, "trunks", &s->trunks) &&
           list_parse(opt->pai_trunks, "pai_trunks", &s->pai_trunks);
}

static void trunks_free(voice_sip *s)
{
    allow_free(s->trunks);
    allow_free(s->pai_trunks);
}

/* The main loop's liveness check: the last ping answered, or how long not. */
static void ping_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    voice_sip *s = arg;
    if (atomic_load(&s->pong) != s->ping_sent) {
        if (++s->ping_waits >= PING_MISSES && s->alive) {
            s->alive = false;
            log_error("sip.unresponsive", "unanswered_ms=%d",
                      s->ping_waits * s->opt.ping_interval_ms);
        }
        return;
    }
    if (!s->alive)
        log_info("sip.responsive", NULL);
    s->alive = true;
    s->ping_waits = 0;
    send_action(s, &(action){.kind = A_PING, .ping = ++s->ping_sent});
}

static voice_sip *module_new(struct event_base *base, const voice_sip_options *opt,
                             voice_sip_event_fn *fn, void *arg)
{
    voice_sip *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->base = base;
    s->opt = *opt;
    snprintf(s->bind_addr, sizeof s->bind_addr, "%s", opt->bind_addr);
    s->opt.bind_addr = s->bind_addr;
    snprintf(s->rtp_address, sizeof s->rtp_address, "%s",
             opt->rtp_address && *opt->rtp_address ? opt->rtp_address : opt->bind_addr);
    s->opt.rtp_address = s->rtp_address;
    s->opt.trunks = NULL;
    s->opt.pai_trunks = NULL;
    if (s->opt.ping_interval_ms == 0)
        s->opt.ping_interval_ms = VOICE_SIP_PING_MS;
    s->fn = fn;
    s->arg = arg;
    s->alive = true;
    if (!trunks_parse(s, opt)) {
        trunks_free(s);
        free(s);
        return NULL;
    }
    s->events = handoff_new(base, deliver, s);
    s->ping_timer = event_new(base, -1, EV_PERSIST, ping_tick, s);
    if (s->events == NULL || s->ping_timer == NULL) {
        handoff_free(s->events);
        if (s->ping_timer)
            event_free(s->ping_timer);
        trunks_free(s);
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->started, NULL);
    return s;
}

static void module_free(voice_sip *s)
{
    for (qnode *n; (n = pop(s)) != NULL;)
        free(n);
    handoff_free(s->events);
    event_free(s->ping_timer);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->started);
    trunks_free(s);
    free(s);
}

voice_sip *voice_sip_start(struct event_base *base, const voice_sip_options *opt,
                           voice_sip_event_fn *fn, void *arg)
{
    if (base == NULL || opt == NULL || fn == NULL || !options_valid(opt)) {
        log_error("sip.start", "error=bad_options");
        return NULL;
    }
    if (!port_bindable(opt->bind_addr, opt->port)) {
        log_error("sip.start", "error=bind addr=%s port=%d", log_quote(opt->bind_addr).s,
                  opt->port);
        return NULL;
    }
    voice_sip *s = module_new(base, opt, fn, arg);
    if (s == NULL)
        return NULL;
    if (pthread_create(&s->thread, NULL, sip_thread, s) != 0) {
        module_free(s);
        return NULL;
    }
    pthread_mutex_lock(&s->lock);
    while (s->start_state == 0)
        pthread_cond_wait(&s->started, &s->lock);
    int state = s->start_state;
    pthread_mutex_unlock(&s->lock);
    if (state < 0) {
        pthread_join(s->thread, NULL);
        log_error("sip.start", "error=bind addr=%s port=%d", s->bind_addr, opt->port);
        module_free(s);
        return NULL;
    }
    int ms = s->opt.ping_interval_ms;
    event_add(s->ping_timer, &(struct timeval){ms / 1000, (ms % 1000) * 1000});
    log_info("sip.start", "addr=%s port=%d trunks=%s pai_trunks=%s max_calls=%d", s->bind_addr,
             opt->port, log_quote(opt->trunks ? opt->trunks : "").s,
             log_quote(opt->pai_trunks ? opt->pai_trunks : "").s, opt->max_calls);
    return s;
}

void voice_sip_stop(voice_sip *s)
{
    if (s == NULL)
        return;
    send_action(s, &(action){.kind = A_STOP});
    pthread_join(s->thread, NULL);
    module_free(s);
    log_info("sip.stop", NULL);
}

void voice_sip_answer(voice_sip *s, unsigned call, int rtp_port, int pt, int dtmf_pt)
{
    send_action(s, &(action){.kind = A_ANSWER, .call = call, .rtp_port = rtp_port, .pt = pt,
                             .dtmf_pt = dtmf_pt});
}

void voice_sip_reject(voice_sip *s, unsigned call, int status)
{
    if (status < 300 || status > 699)
        status = 500;
    send_action(s, &(action){.kind = A_REJECT, .call = call, .status = status});
}

void voice_sip_hangup(voice_sip *s, unsigned call)
{
    send_action(s, &(action){.kind = A_HANGUP, .call = call});
}

void voice_sip_refer(voice_sip *s, unsigned call, const char *target, const char *session_id)
{
    action a = {.kind = A_REFER, .call = call};
    snprintf(a.target, sizeof a.target, "%s", target ? target : "");
    snprintf(a.session, sizeof a.session, "%s", session_id ? session_id : "");
    send_action(s, &a);
}

void voice_sip_freeze(voice_sip *s, int ms)
{
    send_action(s, &(action){.kind = A_FREEZE,
                             .freeze_ms = ms < 0 ? 0 : ms > MAX_FREEZE_MS ? MAX_FREEZE_MS : ms});
}

int voice_sip_calls(const voice_sip *s)
{
    return atomic_load(&s->ncalls);
}

unsigned long voice_sip_refused(const voice_sip *s, voice_sip_refusal why)
{
    return why < VOICE_SIP_REFUSED_REASONS ? atomic_load(&s->refused[why]) : 0;
}

const char *voice_sip_refusal_name(voice_sip_refusal why)
{
    static const char *const names[VOICE_SIP_REFUSED_REASONS] = {
        "source", "busy", "no_sdp", "content_type", "bad_sdp", "no_codec"};
    return why < VOICE_SIP_REFUSED_REASONS ? names[why] : "?";
}

bool voice_sip_alive(const voice_sip *s)
{
    return s->alive;
}
