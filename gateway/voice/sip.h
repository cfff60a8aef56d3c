/* sip — SIP signalling through sofia-sip in a thread of its own (sofia-sip
 * cannot run inside libevent; see docs/voice.md). The thread accepts or
 * refuses INVITEs on its own where no business is involved — a source not
 * in the trunk list (403, before any SDP is read), the concurrent-call cap
 * (503), no SDP or no common codec (488), a body that is not SDP (415),
 * SDP that fails sdp_check.h's sizes and grammar or does not parse (400) —
 * and hands every other event to the main loop as a voice_sip_event. The
 * main loop answers with the actions below, which the thread carries out.
 * No business logic and no media here: SDP is negotiated (PCMA, PCMU,
 * telephone-event), written and answered here, also for re-INVITEs, and the
 * peer's RTP address reported; media.c sends and receives.
 *
 * The main loop pings the thread every ping_interval_ms; voice_sip_alive
 * turns false when a ping stays unanswered for three intervals (the thread
 * is stuck or gone) and true again once it answers.
 *
 * Every nua_* call, handle reference and destroy stays in the SIP thread;
 * calls are named across threads by a number that is never reused. */
#ifndef CARDLINE_VOICE_SIP_H
#define CARDLINE_VOICE_SIP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct event_base;

typedef struct voice_sip voice_sip;

#define VOICE_SIP_PING_MS 1000   /* default ping_interval_ms */
#define VOICE_SIP_MAX_MESSAGE 16384 /* bytes of the largest SIP message taken in */

/* Why the thread refused an INVITE, for cardline_sip_refused_total. */
typedef enum {
    VOICE_SIP_REFUSED_SOURCE = 0, /* 403: not a trunk */
    VOICE_SIP_REFUSED_BUSY,      /* 503: max_calls reached or stopping */
    VOICE_SIP_REFUSED_NO_SDP,    /* 488: no offer */
    VOICE_SIP_REFUSED_CONTENT_TYPE, /* 415: a body that is not application/sdp */
    VOICE_SIP_REFUSED_BAD_SDP,   /* 400: sizes, grammar or parse */
    VOICE_SIP_REFUSED_NO_CODEC,  /* 488: no PCMA/PCMU stream we can send to */
    VOICE_SIP_REFUSED_REASONS
} voice_sip_refusal;

typedef struct {
    const char *bind_addr;       /* address to listen on (and put in Contact) */
    const char *rtp_address;     /* address our SDP gives for RTP; NULL for bind_addr */
    int port;                    /* SIP port, UDP and TCP */
    const char *trunks;          /* allowlist (allow.h) of sources that may INVITE; NULL/"" none */
    const char *pai_trunks;      /* allowlist of those trunks whose P-Asserted-Identity
                                  * names the caller; NULL/"" none */
    int ping_interval_ms;        /* liveness ping of the thread; 0 for VOICE_SIP_PING_MS */
    int max_calls;               /* calls at once; an INVITE beyond gets 503 */
    int session_expires_s;       /* session timer (RFC 4028) we ask for, >= 90 */
    int refer_timeout_ms;        /* a transfer not confirmed by then has failed */
} voice_sip_options;

typedef enum {
    VOICE_SIP_INCOMING = 0,      /* an INVITE passed source, cap and SDP checks: answer or reject it */
    VOICE_SIP_ESTABLISHED,       /* ACK received: the call is up */
    VOICE_SIP_MEDIA,             /* a re-INVITE changed the peer's media (address, codec, hold) */
    VOICE_SIP_DIGIT,             /* a key by SIP INFO (dtmf-relay or dtmf) */
    VOICE_SIP_TRANSFERRED,       /* the REFER succeeded (NOTIFY 2xx); the thread has sent BYE */
    VOICE_SIP_TRANSFER_FAILED,   /* REFER refused, timed out or NOTIFY non-2xx; the call is still up */
    VOICE_SIP_ENDED              /* the call is over (BYE, CANCEL, timer, error); the number is dead */
} voice_sip_event_kind;

typedef struct {
    voice_sip_event_kind kind;   /* what happened */
    unsigned call;               /* the call's number, unique for the process */
    /* INCOMING */
    char call_id[128];           /* SIP Call-ID (the engine's session id) */
    char from_user[64];          /* the caller: user of P-Asserted-Identity from a pai_trunk
                                  * carrying one, else user of From; "" when absent */
    char to_user[64];            /* user part of the request URI (the route entry) */
    char source[64];             /* IP address the INVITE came from */
    /* INCOMING and MEDIA */
    struct sockaddr_storage rtp; /* where the peer wants RTP */
    socklen_t rtp_len;           /* length of rtp */
    int pt;                      /* chosen codec: RTP_PT_PCMA or RTP_PT_PCMU */
    int dtmf_pt;                 /* the peer's telephone-event payload type, or -1 */
    bool hold;                   /* the peer put us on hold (sendonly/inactive/0.0.0.0) */
    /* DIGIT */
    char digit;                  /* '0'-'9', '*', '#', 'A'-'D' */
    /* TRANSFER_FAILED and ENDED */
    int status;                  /* the SIP status that decided it, 0 if none */
} voice_sip_event;

/* Runs on the main loop, in the order the thread saw the events. */
typedef void voice_sip_event_fn(const voice_sip_event *ev, void *arg);

/* Lifecycle ------------------------------------------------------------------------*/

/* Binds UDP and TCP and starts the thread. NULL (logged) when an option is
 * out of range or the port cannot be bound. The thread wakes `base`
 * through an eventfd: the base needs no evthread locking. */
voice_sip *voice_sip_start(struct event_base *base, const voice_sip_options *opt,
                           voice_sip_event_fn *fn, void *arg);

/* Ends every call (BYE or 503), shuts nua down in order, joins the thread.
 * No event is delivered after it returns (nor the ENDED of the calls it
 * ended). Call it from the main loop, not from inside the event callback.
 * Blocks until the peers answer the BYEs, at most nua's 30 s limit. */
void voice_sip_stop(voice_sip *s);

/* Actions (main loop → SIP thread, asynchronous) ---------------------------------------*/

/* 200 OK with our SDP: `rtp_port` on the bind address, codec `pt`, and
 * telephone-event at `dtmf_pt` when it is not -1. */
void voice_sip_answer(voice_sip *s, unsigned call, int rtp_port, int pt, int dtmf_pt);
/* A final error response to an INCOMING call (404, 503, ...). */
void voice_sip_reject(voice_sip *s, unsigned call, int status);
/* BYE (or CANCEL/refusal before the answer). ENDED follows. */
void voice_sip_hangup(voice_sip *s, unsigned call);
/* REFER to `target` (a SIP URI) with header X-Cardline-Session: session_id. */
void voice_sip_refer(voice_sip *s, unsigned call, const char *target, const char *session_id);

/* Makes the thread sleep `ms` (tests and drills of the health check). */
void voice_sip_freeze(voice_sip *s, int ms);

/* Figures ---------------------------------------------------------------------------*/

/* Calls the thread holds now (for metrics and the bench). */
int voice_sip_calls(const voice_sip *s);

/* INVITEs (and re-INVITEs) refused for `why` since start. */
unsigned long voice_sip_refused(const voice_sip *s, voice_sip_refusal why);
/* The label value of a reason ("source", "busy", ...). */
const char *voice_sip_refusal_name(voice_sip_refusal why);

/* False once a ping stayed unanswered for three intervals. Main loop only. */
bool voice_sip_alive(const voice_sip *s);

#endif
