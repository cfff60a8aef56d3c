/* voice — owns the calls: for each SIP call its RTP stream, the keys it
 * collected, its timer and the engine hop in flight; turns SIP and media
 * events into engine events and engine outputs into audio, hang-ups and
 * transfers. A call to a resume URI takes its agent's token from Redis and
 * continues the token's session instead of starting one. SIP itself is
 * sip.c (its own thread), RTP media.c, prompt audio audio.c. */
#include "voice.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialplan.h"
#include "engine.h"
#include "log.h"
#include "mask.h"
#include "mem.h"
#include "metrics.h"
#include "store.h"

#define SESSION_PREFIX "voice:"
#define MAX_CLIPS 256            /* clips one output plays at most */
#define MAX_VALUES 16            /* values without words one output says at most */
#define MAX_ENTRY 64             /* keys of one entry (an ask node's max is smaller) */
#define MAX_TYPEAHEAD 32         /* keys pressed while a hop runs, kept for the next wait */
#define DEFAULT_WAIT_MS 8000     /* first-key wait when an output names none */
#define URI_MAX 256
#define FIGURES_EVERY_MS 1000    /* RTP send figures published to /metrics */
#define RESUME_PREFIX "resume-"  /* request-URI user of a call an agent sends back */
#define RESUME_TOKEN_LEN 32      /* lowercase hex after it */
#define RESUME_KEY_PREFIX "cl:x:" /* the token's key in Redis (docs/agents.md) */
#define RESUME_MAX_BYTES 4096    /* a token's JSON; anything longer was not written by the agent API */

typedef enum {
    AWAIT_NONE = 0,              /* no input wanted (playing an end, transferring) */
    AWAIT_MENU,                  /* one key */
    AWAIT_ASK                    /* keys up to max or the terminator */
} await_kind;

typedef enum {
    AFTER_NOTHING = 0,           /* the prompts are all: wait for keys */
    AFTER_HANGUP,                /* end: BYE once played */
    AFTER_TRANSFER               /* transfer: REFER once played */
} after_play;

/* Why a value without words was not said (cardline_voice_values_skipped_total). */
enum { SKIP_OFF, SKIP_BUSY, SKIP_LATE, SKIP_EMPTY, SKIP_REASONS };
static const char *const skip_reasons[] = {"off", "busy", "late", "empty"};

typedef struct call call;

struct call {
    voice *v;                    /* owner; NULL once voice_free left the call to its hop */
    unsigned id;                 /* sip.h's call number */
    call *next;                  /* bucket chain */
    char session[sizeof SESSION_PREFIX + 128]; /* the engine's session id */
    voice_stream *stream;        /* RTP, NULL once closed */
    voice_audio *audio;          /* the set playing now (a reference), or NULL */
    struct event *timer;         /* first-key or inter-key timeout */

    bool hop_running;            /* an engine hop (or a resume token lookup) is in flight */
    bool resuming;               /* a resume call not answered yet: token or first hop in flight */
    bool started;                /* the START hop was sent */
    bool gone;                   /* SIP ended: only the HANGUP hop is left */
    bool session_over;           /* the engine ended the session, or it went to an agent */
    bool playing;                /* prompts are being played */

    await_kind await;            /* what the flow waits for */
    int await_max;               /* ask: keys that end the entry by themselves */
    char terminator;             /* ask: key that ends the entry, or 0 */
    char swallow;                /* the terminator of an entry that ended at its maximum
                                  * length: the habitual "#" after it is not the next input */
    int wait_ms;                 /* first-key timeout of the waiting node */
    int inter_digit_ms;          /* silence that ends its entry */
    after_play after;            /* what happens once the prompts are played */
    char queue[64];              /* transfer: the agent queue */
    char return_uri[URI_MAX];    /* resumed: the agent every transfer goes back to; "" otherwise */
    int answer_pt;               /* resuming: the codec to answer with */
    int answer_dtmf_pt;          /* resuming: the telephone-event type to answer with, or -1 */

    voice_clip values[MAX_VALUES]; /* clips of the output's values without words */
    const speech_sound *held[MAX_VALUES]; /* their sounds, held until the next output */
    int nvalues;                 /* how many */

    char entry[MAX_ENTRY + 1];   /* keys of the entry so far (may be secret: wiped) */
    int entry_len;               /* how many */
    char typeahead[MAX_TYPEAHEAD]; /* keys pressed while a hop ran */
    int typeahead_len;           /* how many */
};

struct voice {
    struct event_base *base;     /* the main loop */
    voice_options opt;           /* copy; strings owned */
    engine *engine;              /* runs the hops */
    voice_media *media;          /* RTP */
    voice_sip *sip;              /* signalling thread */
    voice_audio *audio;          /* audio of the current dialplan set */
    call **buckets;              /* calls by number */
    size_t nbuckets;             /* a power of two */
    int ncalls;                  /* calls held */
    metrics_series *m_calls;     /* gauge: calls held */
    metrics_series *m_answered;  /* calls answered */
    metrics_series *m_refused;   /* INVITEs refused here (no route, no port, no resume token) */
    metrics_series *m_resumed;   /* calls an agent sent back with a resume token, answered */
    metrics_series *m_sip_refused[VOICE_SIP_REFUSED_REASONS]; /* the SIP thread's refusals by reason */
    metrics_series *m_sip_up;    /* gauge: the SIP thread answers its pings */
    metrics_series *m_packets;   /* RTP packets sent */
    metrics_series *m_p50;       /* gauge: send interval median of the last window */
    metrics_series *m_p99;       /* gauge: its 99th percentile */
    speech *speech;              /* values without words, or NULL */
    metrics_series *m_skipped[SKIP_REASONS]; /* values skipped, by SKIP_* */
    struct event *figures;       /* publishes the media figures every FIGURES_EVERY_MS */
};

static void send_hop(call *c, engine_event_kind kind, const char *input);
static void play_output(call *c, json_t *out);
static void play_unavailable(call *c);
static void on_key(call *c, char key);
static void answer_resumed(call *c);
static void refuse_resumed(call *c, int status, const char *why);

/* Settings ----------------------------------------------------------------------*/

static const conf_key voice_conf_keys[] = {
    CONF_KEY_BOOL(voice_options, "enabled", enabled, "0"),
    CONF_KEY_ADDRESS(voice_options, "listen", sip.bind_addr, sip.port, "127.0.0.1:5060"),
    CONF_KEY(voice_options, "trunks", CONF_ALLOWLIST, sip.trunks, "127.0.0.1"),
    CONF_KEY(voice_options, "pai_trunks", CONF_ALLOWLIST, sip.pai_trunks, ""),
    CONF_KEY_INT(voice_options, "max_calls", sip.max_calls, 1, 10000, "600"),
    CONF_KEY(voice_options, "rtp_address", CONF_HOST, sip.rtp_address, "127.0.0.1"),
    CONF_KEY_INT(voice_options, "rtp_port_min", media.port_min, 1024, 65534, "20000"),
    CONF_KEY_INT(voice_options, "rtp_port_max", media.port_max, 1025, 65535, "29999"),
    CONF_KEY_INT(voice_options, "rtp_inactivity_ms", media.inactivity_ms, 0, 3600000, "30000"),
    CONF_KEY_INT(voice_options, "session_expires_s", sip.session_expires_s, 90, 86400, "1800"),
    CONF_KEY(voice_options, "agent_uri", CONF_STRING, agent_uri, "sip:{queue}@127.0.0.1:5070"),
    CONF_KEY_INT(voice_options, "refer_timeout_ms", sip.refer_timeout_ms, 100, 60000, "8000"),
    CONF_KEY_INT(voice_options, "inter_digit_timeout_ms", inter_digit_timeout_ms, 500, 30000, "3000"),
    CONF_KEY_INT(voice_options, "prompt_gap_ms", prompt_gap_ms, 0, 2000, "300"),
    CONF_KEY(voice_options, "prompts_dir", CONF_STRING, prompts_dir, "build/prompts"),
    CONF_KEY(voice_options, "recorded_dir", CONF_STRING, recorded_dir, ""),
};
const conf_section voice_config = CONF_SECTION("voice", voice_conf_keys);



static call **bucket_of(voice *v, unsigned id)
{
    return &v->buckets[id & (v->nbuckets - 1)];
}

static call *call_find(voice *v, unsigned id)
{
    for (call *c = *bucket_of(v, id); c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

static void call_unlink(call *c)
{
    voice *v = c->v;
    for (call **p = bucket_of(v, c->id); *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            v->ncalls--;
            metrics_set(v->m_calls, v->ncalls);
            return;
        }
    }
}

static void wipe_entry(call *c)
{
    explicit_bzero(c->entry, sizeof c->entry);
    explicit_bzero(c->typeahead, sizeof c->typeahead);
    c->entry_len = 0;
    c->typeahead_len = 0;
}

static void release_values(call *c)
{
    for (int i = 0; i < c->nvalues; i++)
        speech_release(c->held[i]);
    c->nvalues = 0;
}

static void call_free(call *c)
{
    if (c->v)
        call_unlink(c);
    if (c->stream)
        voice_stream_close(c->stream);
    if (c->audio)
        voice_audio_unref(c->audio);
    release_values(c);
    if (c->timer)
        event_free(c->timer);
    wipe_entry(c);
    free(c);
}

/* Timers ----------------------------------------------------------------------------*/

static void on_timer(evutil_socket_t fd, short what, void *arg);

static void arm_timer(call *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* Input ---------------------------------------------------------------------------*/

/* The entry is over: its keys go to the engine (then are wiped), or the
 * bare terminator counts as no input. */
static void finish_entry(call *c)
{
    evtimer_del(c->timer);
    c->await = AWAIT_NONE;
    if (c->entry_len == 0) {
        send_hop(c, ENGINE_EV_NO_INPUT, NULL);
        return;
    }
    c->entry[c->entry_len] = '\0';
    send_hop(c, ENGINE_EV_INPUT, c->entry);
    explicit_bzero(c->entry, sizeof c->entry);
    c->entry_len = 0;
}

static void take_key(call *c, char key)
{
    if (c->playing) {
        voice_stream_stop(c->stream); /* barge-in */
        c->playing = false;
    }
    if (c->await == AWAIT_MENU) {
        char one[2] = {key, '\0'};
        evtimer_del(c->timer);
        c->await = AWAIT_NONE;
        send_hop(c, ENGINE_EV_INPUT, one);
        return;
    }
    if (c->terminator && key == c->terminator) {
        finish_entry(c);
        return;
    }
    c->entry[c->entry_len++] = key;
    if (c->entry_len >= c->await_max || c->entry_len >= MAX_ENTRY) {
        c->swallow = c->terminator;
        finish_entry(c);
        return;
    }
    arm_timer(c, c->inter_digit_ms);
}

static void on_key(call *c, char key)
{
    if (c->gone || c->after != AFTER_NOTHING)
        return;
    bool swallowed = c->swallow && key == c->swallow;
    c->swallow = 0;
    if (swallowed)
        return;
    if (c->hop_running || c->await == AWAIT_NONE) {
        if (c->typeahead_len < MAX_TYPEAHEAD)
            c->typeahead[c->typeahead_len++] = key;
        return;
    }
    take_key(c, key);
}

/* Keys pressed while the last hop ran, given to the node that now waits. */
static void drain_typeahead(call *c)
{
    int i = 0;
    while (i < c->typeahead_len && c->await != AWAIT_NONE && !c->hop_running)
        take_key(c, c->typeahead[i++]);
    memmove(c->typeahead, c->typeahead + i, (size_t)(c->typeahead_len - i));
    c->typeahead_len -= i;
    explicit_bzero(c->typeahead + c->typeahead_len, sizeof c->typeahead - (size_t)c->typeahead_len);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    call *c = arg;
    if (c->hop_running || c->await == AWAIT_NONE)
        return;
    if (c->await == AWAIT_ASK && c->entry_len > 0) {
        finish_entry(c); /* the caller stopped typing: what came is the entry */
        return;
    }
    c->await = AWAIT_NONE;
    send_hop(c, ENGINE_EV_TIMEOUT, NULL);
}

/* Hops -----------------------------------------------------------------------------*/

static void end_call(call *c)
{
    c->after = AFTER_HANGUP;
    voice_sip_hangup(c->v->sip, c->id);
}

/* The caller left: the session ends in the engine too, then the call goes. */
static void finish_gone(call *c)
{
    if (c->started && !c->session_over) {
        c->session_over = true;
        send_hop(c, ENGINE_EV_HANGUP, NULL);
        return;
    }
    call_free(c);
}

static void on_hop(const engine_result *r, void *arg)
{
    call *c = arg;
    c->hop_running = false;
    if (c->resuming && r->status != ENGINE_OK)
        c->session_over = true; /* the session never came to this call: no HANGUP hop for it */
    if (c->v == NULL || c->gone) {
        if (c->v == NULL)
            call_free(c);
        else
            finish_gone(c);
        return;
    }
    if (c->resuming && r->status != ENGINE_OK) {
        /* No session in "transfer" to continue (gone, ended, taken back) is
         * as good as no token; a store in trouble is "try again". */
        bool busy = r->status == ENGINE_UNAVAILABLE || r->status == ENGINE_BUSY;
        refuse_resumed(c, busy ? 503 : 404, engine_status_name(r->status));
        return;
    }
    if (c->resuming)
        answer_resumed(c);
    if (r->status != ENGINE_OK) {
        log_warn("voice.hop", "session=%s status=%s", log_quote(mask_session(c->session).s).s,
                 engine_status_name(r->status));
        play_unavailable(c);
        return;
    }
    play_output(c, r->output);
}

static void send_hop(call *c, engine_event_kind kind, const char *input)
{
    engine_event ev = {
        .kind = kind,
        .channel = CHANNEL_VOICE,
        .session_id = c->session,
        .input = input,
    };
    c->hop_running = true;
    engine_hop(c->v->engine, &ev, on_hop, c);
}

/* Output ------------------------------------------------------------------------------*/

static void read_await(call *c, json_t *await)
{
    const char *kind = json_string_value(json_object_get(await, "kind"));
    const char *term = json_string_value(json_object_get(await, "terminator"));
    json_int_t wait = json_integer_value(json_object_get(await, "timeout_ms"));
    json_int_t gap = json_integer_value(json_object_get(await, "inter_digit_ms"));
    c->await = kind && strcmp(kind, "menu") == 0 ? AWAIT_MENU : AWAIT_ASK;
    c->await_max = (int)json_integer_value(json_object_get(await, "max"));
    if (c->await_max <= 0 || c->await_max > MAX_ENTRY)
        c->await_max = MAX_ENTRY;
    c->terminator = term && term[0] ? term[0] : 0;
    c->wait_ms = wait > 0 && wait < 600000 ? (int)wait : DEFAULT_WAIT_MS;
    c->inter_digit_ms = gap > 0 && gap < 600000 ? (int)gap : c->v->opt.inter_digit_timeout_ms;
}

static void read_state(call *c, json_t *out)
{
    const char *state = json_string_value(json_object_get(out, "state"));
    c->await = AWAIT_NONE;
    c->after = AFTER_NOTHING;
    if (state && strcmp(state, "wait") == 0) {
        read_await(c, json_object_get(out, "await"));
    } else if (state && strcmp(state, "transfer") == 0) {
        const char *q = json_string_value(json_object_get(json_object_get(out, "transfer"), "queue"));
        snprintf(c->queue, sizeof c->queue, "%s", q ? q : "");
        c->after = AFTER_TRANSFER;
    } else {
        c->after = AFTER_HANGUP;
        c->session_over = true; /* the engine ended it: no HANGUP hop */
    }
}

/* A value without words: its sound, asked of speech now so that it is
 * made while what comes before it plays. */
static const voice_clip *value_clip(const char *lang, const char *text, void *arg)
{
    call *c = arg;
    voice *v = c->v;
    const speech_sound *sound = NULL;
    if (v->speech == NULL) {
        metrics_inc(v->m_skipped[SKIP_OFF]);
        return NULL;
    }
    if (c->nvalues == MAX_VALUES || !(sound = speech_get(v->speech, lang, text))) {
        metrics_inc(v->m_skipped[SKIP_BUSY]);
        return NULL;
    }
    c->held[c->nvalues] = sound;
    c->values[c->nvalues] = (voice_clip){NULL, NULL, 0, sound};
    return &c->values[c->nvalues++];
}

/* Plays `ids` prompts of an output (each with its vars) in `lang`, a gap
 * of silence between two. The last output's values are let go: the new
 * play list replaces the one that played them. */
static void play_prompts(call *c, const char *lang, json_t *prompts)
{
    const voice_clip *clips[MAX_CLIPS];
    size_t n = 0, i;
    json_t *p;
    if (c->audio)
        voice_audio_unref(c->audio);
    c->audio = voice_audio_ref(c->v->audio);
    release_values(c);
    json_array_foreach(prompts, i, p) {
        const char *id = json_string_value(json_object_get(p, "id"));
        if (i > 0 && n < MAX_CLIPS && c->v->opt.prompt_gap_ms > 0)
            clips[n++] = voice_audio_silence(c->audio, c->v->opt.prompt_gap_ms);
        if (id)
            voice_audio_say_values(c->audio, lang, id, json_object_get(p, "vars"), value_clip, c, clips, &n,
                                   MAX_CLIPS);
    }
    c->playing = true;
    voice_stream_play(c->stream, clips, n);
}

static void play_output(call *c, json_t *out)
{
    const char *lang = json_string_value(json_object_get(out, "lang"));
    read_state(c, out);
    play_prompts(c, lang ? lang : "", json_object_get(out, "prompts"));
    if (c->await != AWAIT_NONE)
        drain_typeahead(c);
}

/* The engine could not answer (Redis down): say so in the set's first
 * language, then hang up. */
static void play_unavailable(call *c)
{
    json_t *prompts = json_pack("[{s:s, s:{}}]", "id", DP_PROMPT_UNAVAILABLE, "vars");
    c->await = AWAIT_NONE;
    c->after = AFTER_HANGUP;
    play_prompts(c, dialplan_language(engine_dialplan(c->v->engine), 0), prompts);
    json_decref(prompts);
}

/* Where a transfer goes: back to the agent who resumed the call, else the
 * agent URI with "{queue}" replaced by the queue. */
static void transfer_target(const call *c, char *out, size_t size)
{
    const char *t = c->v->opt.agent_uri, *at = strstr(t, "{queue}");
    if (c->return_uri[0])
        snprintf(out, size, "%s", c->return_uri);
    else if (at == NULL)
        snprintf(out, size, "%s", t);
    else
        snprintf(out, size, "%.*s%s%s", (int)(at - t), t, c->queue, at + strlen("{queue}"));
}

static void on_played(void *arg)
{
    call *c = arg;
    c->playing = false;
    if (c->gone)
        return;
    if (c->after == AFTER_HANGUP) {
        voice_sip_hangup(c->v->sip, c->id);
    } else if (c->after == AFTER_TRANSFER) {
        char uri[URI_MAX];
        transfer_target(c, uri, sizeof uri);
        voice_sip_refer(c->v->sip, c->id, uri, c->session);
    } else if (c->await != AWAIT_NONE && !c->hop_running && c->entry_len == 0) {
        arm_timer(c, c->wait_ms);
    }
}

static void on_rtp_key(char key, void *arg)
{
    on_key(arg, key);
}

static void on_inactive(void *arg)
{
    call *c = arg;
    log_info("voice.inactive", "session=%s", log_quote(mask_session(c->session).s).s);
    end_call(c);
}

/* SIP events ----------------------------------------------------------------------------*/

static void refuse(voice *v, const voice_sip_event *ev, int status, const char *why)
{
    metrics_inc(v->m_refused);
    log_info("voice.refused", "status=%d why=%s to=%s", status, why, log_quote(ev->to_user).s);
    voice_sip_reject(v->sip, ev->call, status);
}

static call *call_new(voice *v, const voice_sip_event *ev)
{
    call *c = mem_calloc(1, sizeof *c);
    c->v = v;
    c->id = ev->call;
    snprintf(c->session, sizeof c->session, SESSION_PREFIX "%s", ev->call_id);
    c->timer = evtimer_new(v->base, on_timer, c);
    call **b = bucket_of(v, c->id);
    c->next = *b;
    *b = c;
    v->ncalls++;
    metrics_set(v->m_calls, v->ncalls);
    return c;
}

/* The call's RTP stream, pointed at the peer the offer names; false when
 * no port is free. */
static bool open_stream(call *c, const voice_sip_event *ev)
{
    voice_stream_cbs cbs = {on_rtp_key, on_played, on_inactive};
    c->stream = voice_stream_open(c->v->media, &cbs, c);
    if (c->stream == NULL)
        return false;
    voice_stream_set_peer(c->stream, (const struct sockaddr *)&ev->rtp, ev->rtp_len, ev->pt, ev->dtmf_pt);
    voice_stream_hold(c->stream, ev->hold);
    return true;
}

/* Resume calls ---------------------------------------------------------------------------*/

/* An agent's phone sends the caller to sip:resume-<token>@…: the token,
 * written by the agent API and good once, names the session (left with
 * the agent by a transfer), the node to run and the agent to return to.
 * The INVITE stays unanswered while the token is taken and the session is
 * moved to the node; no token, or no session waiting for it, is a 404.
 * This file never logs the token itself. */

static bool token_shaped(const char *t)
{
    size_t n = strspn(t, "0123456789abcdef");
    return n == RESUME_TOKEN_LEN && t[n] == '\0';
}

/* A URI that can stand between the angle brackets of Refer-To as it is. */
static bool refer_uri_ok(const char *uri)
{
    if (uri == NULL || strlen(uri) >= URI_MAX || (strncmp(uri, "sip:", 4) && strncmp(uri, "sips:", 5)))
        return false;
    for (const char *p = uri; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || strchr("<>\"", *p))
            return false;
    return true;
}

/* Takes the token's session, node and return URI into the call; false
 * when the value is not a token the agent API writes. */
static bool read_token(call *c, const char *text, size_t len, char *node, size_t node_size, char *agent,
                       size_t agent_size)
{
    json_t *t = len <= RESUME_MAX_BYTES ? json_loadb(text, len, 0, NULL) : NULL;
    const char *session = json_string_value(json_object_get(t, "session"));
    const char *to = json_string_value(json_object_get(t, "node"));
    const char *uri = json_string_value(json_object_get(t, "return_uri"));
    const char *who = json_string_value(json_object_get(t, "agent"));
    bool ok = session && strncmp(session, SESSION_PREFIX, strlen(SESSION_PREFIX)) == 0 &&
              strlen(session) < sizeof c->session && to && to[0] && strlen(to) < node_size && refer_uri_ok(uri);
    if (ok) {
        snprintf(c->session, sizeof c->session, "%s", session);
        snprintf(c->return_uri, sizeof c->return_uri, "%s", uri);
        snprintf(node, node_size, "%s", to);
        snprintf(agent, agent_size, "%s", who ? who : "");
    }
    json_decref(t);
    return ok;
}

static void refuse_resumed(call *c, int status, const char *why)
{
    voice *v = c->v;
    metrics_inc(v->m_refused);
    log_info("voice.refused", "status=%d why=%s to=%s", status, why, log_quote(RESUME_PREFIX "…").s);
    voice_sip_reject(v->sip, c->id, status);
    call_free(c);
}

static void answer_resumed(call *c)
{
    c->resuming = false;
    voice_sip_answer(c->v->sip, c->id, voice_stream_port(c->stream), c->answer_pt, c->answer_dtmf_pt);
    metrics_inc(c->v->m_answered);
    metrics_inc(c->v->m_resumed);
}

static void on_token(store_status st, const struct redisReply *reply, void *arg)
{
    call *c = arg;
    char node[128], agent[64];
    c->hop_running = false;
    if (c->v == NULL || c->gone) {
        call_free(c); /* the caller left first: the session stays with the agent */
        return;
    }
    if (st != STORE_OK || reply->type == REDIS_REPLY_ERROR) {
        log_warn("voice.resume_failed", "status=%s", st == STORE_OK ? "error_reply" : store_status_name(st));
        refuse_resumed(c, 503, "store");
        return;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        refuse_resumed(c, 404, "no_token");
        return;
    }
    if (!read_token(c, reply->str, reply->len, node, sizeof node, agent, sizeof agent)) {
        refuse_resumed(c, 404, "bad_token");
        return;
    }
    log_info("voice.resume", "session=%s agent=%s node=%s", log_quote(mask_session(c->session).s).s,
             log_quote(agent).s, log_quote(node).s);
    engine_event back = {
        .kind = ENGINE_EV_TRANSFER_BACK,
        .channel = CHANNEL_VOICE,
        .session_id = c->session,
        .node = node,
    };
    c->started = true;
    c->hop_running = true;
    engine_hop(c->v->engine, &back, on_hop, c);
}

static void on_resume_incoming(voice *v, const voice_sip_event *ev)
{
    const char *token = ev->to_user + strlen(RESUME_PREFIX);
    if (!token_shaped(token)) {
        metrics_inc(v->m_refused);
        log_info("voice.refused", "status=404 why=bad_token to=%s", log_quote(RESUME_PREFIX "…").s);
        voice_sip_reject(v->sip, ev->call, 404);
        return;
    }
    call *c = call_new(v, ev);
    if (!open_stream(c, ev)) {
        refuse_resumed(c, 503, "no_rtp_port"); /* before the token is spent */
        return;
    }
    c->resuming = true;
    c->answer_pt = ev->pt;
    c->answer_dtmf_pt = ev->dtmf_pt;
    char key[sizeof RESUME_KEY_PREFIX + RESUME_TOKEN_LEN];
    snprintf(key, sizeof key, RESUME_KEY_PREFIX "%s", token);
    const char *argv[] = {"GETDEL", key};
    c->hop_running = true;
    store_command(v->opt.store, 2, argv, NULL, on_token, c);
}

/* Calls ------------------------------------------------------------------------------------*/

static void on_incoming(voice *v, const voice_sip_event *ev)
{
    if (strncmp(ev->to_user, RESUME_PREFIX, strlen(RESUME_PREFIX)) == 0) {
        on_resume_incoming(v, ev);
        return;
    }
    if (dialplan_route(engine_dialplan(v->engine), CHANNEL_VOICE, ev->to_user) == NULL) {
        refuse(v, ev, 404, "no_route");
        return;
    }
    call *c = call_new(v, ev);
    if (!open_stream(c, ev)) {
        call_free(c);
        refuse(v, ev, 503, "no_rtp_port");
        return;
    }
    voice_sip_answer(v->sip, c->id, voice_stream_port(c->stream), ev->pt, ev->dtmf_pt);
    metrics_inc(v->m_answered);
    log_info("voice.call", "session=%s from=%s to=%s", log_quote(mask_session(c->session).s).s,
             log_quote(mask_phone(ev->from_user).s).s, log_quote(ev->to_user).s);
    engine_event start = {
        .kind = ENGINE_EV_START,
        .channel = CHANNEL_VOICE,
        .session_id = c->session,
        .caller = ev->from_user,
        .entry = ev->to_user,
    };
    c->started = true;
    c->hop_running = true;
    engine_hop(v->engine, &start, on_hop, c);
}

static void on_ended(call *c)
{
    c->gone = true;
    evtimer_del(c->timer);
    if (c->stream) {
        voice_stream_close(c->stream);
        c->stream = NULL;
    }
    if (!c->hop_running)
        finish_gone(c);
}

/* The agent queue did not take the caller: the flow's fallback says why. */
static void transfer_back(call *c, int status)
{
    log_info("voice.transfer_failed", "session=%s status=%d", log_quote(mask_session(c->session).s).s, status);
    c->after = AFTER_NOTHING;
    send_hop(c, ENGINE_EV_TRANSFER_BACK, NULL);
}

static void on_sip_event(const voice_sip_event *ev, void *arg)
{
    voice *v = arg;
    if (ev->kind == VOICE_SIP_INCOMING) {
        on_incoming(v, ev);
        return;
    }
    call *c = call_find(v, ev->call);
    if (c == NULL || c->gone)
        return;
    switch (ev->kind) {
    case VOICE_SIP_MEDIA:
        voice_stream_set_peer(c->stream, (const struct sockaddr *)&ev->rtp, ev->rtp_len, ev->pt, ev->dtmf_pt);
        voice_stream_hold(c->stream, ev->hold);
        break;
    case VOICE_SIP_DIGIT:
        on_key(c, ev->digit);
        break;
    case VOICE_SIP_TRANSFER_FAILED:
        transfer_back(c, ev->status);
        break;
    case VOICE_SIP_TRANSFERRED:
        /* The session stays "transfer" in Redis for the agent: no HANGUP hop. */
        c->session_over = true;
        on_ended(c);
        break;
    case VOICE_SIP_ENDED:
        on_ended(c);
        break;
    default:
        break;
    }
}

/* Lifecycle -------------------------------------------------------------------------------*/

static void print_problem(bool missing, const char *why, void *arg)
{
    size_t *count = arg;
    (*count)++;
    if (!missing)
        log_warn("voice.audio", "problem=%s", log_quote(why).s);
}

static voice_audio *load_audio(const voice *v)
{
    size_t problems = 0;
    voice_audio *a = voice_audio_load(engine_dialplan(v->engine), v->opt.prompts_dir, v->opt.recorded_dir,
                                      print_problem, &problems);
    voice_audio_stats st;
    voice_audio_stats_get(a, &st);
    log_info("voice.audio", "files=%zu missing=%zu bytes=%zu dir=%s", st.files, st.missing, st.bytes,
             log_quote(v->opt.prompts_dir).s);
    return a;
}

/* Each window's RTP send intervals, so /metrics shows pacing as it is now. */
static void on_figures(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    voice *v = arg;
    voice_media_stats st;
    voice_media_stats_get(v->media, &st, true);
    metrics_add(v->m_packets, (double)st.packets);
    metrics_set(v->m_p50, st.p50_us);
    metrics_set(v->m_p99, st.p99_us);
    metrics_add(v->m_skipped[SKIP_LATE], (double)st.values_late);
    metrics_add(v->m_skipped[SKIP_EMPTY], (double)st.values_empty);
    if (v->sip == NULL)
        return;
    for (int i = 0; i < VOICE_SIP_REFUSED_REASONS; i++)
        metrics_set(v->m_sip_refused[i], (double)voice_sip_refused(v->sip, (voice_sip_refusal)i));
    metrics_set(v->m_sip_up, voice_sip_alive(v->sip));
}

static bool start_figures(voice *v)
{
    struct timeval every = {FIGURES_EVERY_MS / 1000, (FIGURES_EVERY_MS % 1000) * 1000};
    v->m_packets = metrics_counter("cardline_voice_rtp_packets_total", "RTP packets sent.", NULL);
    v->m_p50 = metrics_gauge("cardline_voice_rtp_interval_p50_us",
                             "Median interval between a call's RTP packets over the last second, microseconds.",
                             NULL);
    v->m_p99 = metrics_gauge("cardline_voice_rtp_interval_p99_us",
                             "99th percentile of that interval over the last second, microseconds.", NULL);
    for (int i = 0; i < VOICE_SIP_REFUSED_REASONS; i++) {
        char label[64];
        snprintf(label, sizeof label, "reason=\"%s\"", voice_sip_refusal_name((voice_sip_refusal)i));
        v->m_sip_refused[i] = metrics_counter("cardline_sip_refused_total",
                                              "INVITEs the SIP thread refused on its own, by reason.", label);
    }
    for (int i = 0; i < SKIP_REASONS; i++) {
        char label[32];
        snprintf(label, sizeof label, "reason=\"%s\"", skip_reasons[i]);
        v->m_skipped[i] = metrics_counter("cardline_voice_values_skipped_total",
                                          "Values without words not said: no speech (off), speech queue full "
                                          "(busy), not made within [speech] wait_ms (late), nothing made (empty).",
                                          label);
    }
    v->m_sip_up = metrics_gauge("cardline_voice_sip_up", "1 while the SIP thread answers its pings.", NULL);
    v->figures = event_new(v->base, -1, EV_PERSIST, on_figures, v);
    return v->figures != NULL && event_add(v->figures, &every) == 0;
}

static char *dup_opt(const char *s)
{
    return s ? strdup(s) : NULL;
}

voice *voice_new(struct event_base *base, const voice_options *opt)
{
    if (opt->engine == NULL || opt->store == NULL || opt->prompts_dir == NULL || opt->agent_uri == NULL ||
        opt->inter_digit_timeout_ms < 100 || opt->prompt_gap_ms < 0 || opt->prompt_gap_ms > 2000 ||
        opt->sip.max_calls < 1) {
        log_error("voice.config", "why=%s", log_quote("voice options out of range").s);
        return NULL;
    }
    voice *v = mem_calloc(1, sizeof *v);
    v->base = base;
    v->opt = *opt;
    v->opt.prompts_dir = dup_opt(opt->prompts_dir);
    v->opt.recorded_dir = dup_opt(opt->recorded_dir);
    v->opt.agent_uri = dup_opt(opt->agent_uri);
    v->opt.speech = NULL; /* used here only */
    v->engine = opt->engine;
    for (v->nbuckets = 64; v->nbuckets < (size_t)opt->sip.max_calls * 2; v->nbuckets *= 2)
        ;
    v->buckets = calloc(v->nbuckets, sizeof *v->buckets);
    v->m_calls = metrics_gauge("cardline_voice_calls", "Voice calls held now.", NULL);
    v->m_answered = metrics_counter("cardline_voice_answered_total", "Voice calls answered.", NULL);
    v->m_refused = metrics_counter("cardline_voice_refused_total",
                                   "INVITEs refused by the gateway (no route, no RTP port, no resume token).",
                                   NULL);
    v->m_resumed = metrics_counter("cardline_voice_resumed_total",
                                   "Calls an agent sent back into the IVR with a resume token, answered.", NULL);
    v->audio = load_audio(v);
    v->media = voice_media_new(base, &opt->media);
    if (opt->speech && (v->speech = speech_new(base, opt->speech)) == NULL) {
        voice_free(v);
        return NULL;
    }
    if (v->buckets == NULL || v->audio == NULL || v->media == NULL || !start_figures(v)) {
        voice_free(v);
        return NULL;
    }
    v->sip = voice_sip_start(base, &opt->sip, on_sip_event, v);
    if (v->sip == NULL) {
        voice_free(v);
        return NULL;
    }
    return v;
}

void voice_reload(voice *v)
{
    voice_audio *fresh = load_audio(v);
    if (fresh == NULL)
        return;
    voice_audio_unref(v->audio);
    v->audio = fresh;
}

/* Calls whose hop is in flight are left to it (the engine answers every
 * hop, at the latest when it is freed); the others go now. */
static void drop_calls(voice *v)
{
    for (size_t i = 0; i < v->nbuckets; i++) {
        call *c = v->buckets[i];
        while (c) {
            call *next = c->next;
            evtimer_del(c->timer);
            if (c->stream) {
                voice_stream_close(c->stream);
                c->stream = NULL;
            }
            c->v = NULL;
            if (!c->hop_running)
                call_free(c);
            c = next;
        }
        v->buckets[i] = NULL;
    }
    v->ncalls = 0;
}

void voice_free(voice *v)
{
    if (v == NULL)
        return;
    if (v->figures)
        event_free(v->figures);
    if (v->sip)
        voice_sip_stop(v->sip);
    if (v->buckets)
        drop_calls(v);
    if (v->media)
        voice_media_free(v->media);
    if (v->audio)
        voice_audio_unref(v->audio);
    speech_free(v->speech);
    free(v->buckets);
    free((char *)v->opt.prompts_dir);
    free((char *)v->opt.recorded_dir);
    free((char *)v->opt.agent_uri);
    free(v);
}

bool voice_alive(const voice *v)
{
    return v->sip && voice_sip_alive(v->sip);
}

void voice_stats_get(voice *v, voice_stats *out, bool reset_media)
{
    out->calls = v->ncalls;
    voice_media_stats_get(v->media, &out->media, reset_media);
    voice_audio_stats_get(v->audio, &out->audio);
}
