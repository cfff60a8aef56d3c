/* ussd — the aggregator wire (form parsing, validation, CON/END replies),
 * the derivation of the newest input from `text` against what the loaded
 * session consumed, paging and holding pages (where pages are cut is
 * ussd_page.c's). Nothing of a session stays here between requests: pages
 * are cut again from the output the engine stores, a held hop is the
 * session's store note, so any gateway answers any request. The dialplan
 * semantics, replays and races belong to the engine; this file only
 * decides which requests reach it and how its outputs look on a handset. */
#include "ussd.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "allow.h"
#include "engine.h"
#include "handlers.h"
#include "httpd.h"
#include "log.h"
#include "mask.h"
#include "mem.h"
#include "metrics.h"
#include "monotime.h"
#include "store.h"
#include "ussd_wire.h"
#include "walltime.h"

#define USSD_PATH "/ussd"
#define USSD_ID_PREFIX "ussd:"
#define USSD_MAX_WAITERS 16       /* identical requests answered by one hop */
#define USSD_BUCKETS 4096         /* hash buckets of the flight table */
#define USSD_KEY_BYTES 16         /* HMAC bytes kept in a hop key */
#define USSD_KEY_LEN (2 + 2 * USSD_KEY_BYTES)
#define USSD_CONTINUE_KEY "1"
#define USSD_SECRET_BYTES 32
/* A hop running this long after its holding page was started by a gateway
 * that is gone (every handler call ends within handler_timeout_ms). */
#define USSD_HELD_LOST_MS 60000
#define USSD_START_KEY_PREFIX "cl:rl:start:ussd:"
#define USSD_TRY_LATER "END 您的号码发起的会话过多，请稍后再试。Too many sessions from your number; please try later."

typedef enum {
    R_ENGINE = 0,   /* answered from an engine hop (applied or replayed) */
    R_PAGE,         /* a further page of an output */
    R_HOLDING,      /* a holding page */
    R_CONTINUED,    /* a held hop's output after the caller's reply */
    R_RETRY,        /* a retry of a request answered with a holding page */
    R_BAD_REQUEST,  /* 4xx: malformed request, nothing done */
    R_OUT_OF_STEP,  /* 409: text does not continue the session, or another hop runs */
    R_NO_ROUTE,
    R_NO_SESSION,
    R_UNAVAILABLE,  /* engine busy or unavailable */
    R_REFUSED,      /* 401/403: the peer did not authenticate, nothing done */
    R_LIMITED,      /* the number started too many sessions: a "try later" page */
    R_COUNT
} result_kind;

static const char *const result_names[R_COUNT] = {
    "engine", "page", "holding", "continued", "retry", "bad_request",
    "out_of_step", "no_route", "no_session", "unavailable", "refused", "limited"};

typedef struct flight flight;
typedef struct starting starting;

/* How a flight's requests are answered, as derive decided on the loaded
 * session (ANSWER_HOP when the engine ran a hop). */
typedef enum {
    ANSWER_HOP = 0,     /* the hop's output, first page */
    ANSWER_REPLAY,      /* a retry of the last hop: its output's first page */
    ANSWER_PAGE,        /* page `page` of the last hop's output */
    ANSWER_CONTINUED,   /* the reply after holding pages: the held hop's first page */
    ANSWER_HOLDING,     /* a holding page: the held hop runs, or a retry of one */
    ANSWER_FAILED       /* the held hop failed or its node was lost: `failure` */
} answer_kind;

/* A session's holding state, kept as its store note (store_note) so any
 * gateway reads it with the session: "STATE SINCE REPLIES BASE HELD" —
 * STATE `run` or `fail:N` (N an engine_status), SINCE the wall-clock ms of
 * the first holding page, REPLIES the caller's replies answered with
 * holding pages since, BASE the last hop's key when the held hop started
 * (`-` unknown), HELD the held hop's key. The held hop has been applied
 * once the session's last hop key is HELD. */
typedef struct {
    bool failed;                   /* STATE is fail:N */
    engine_status failure;         /* N */
    long long since;               /* SINCE */
    int replies;                   /* REPLIES */
    char base[USSD_KEY_LEN + 1];   /* BASE ("-" unknown) */
    char held[USSD_KEY_LEN + 1];   /* HELD */
} held_note;

/* A request waiting for a hop's answer. */
typedef struct {
    httpd_request *req;            /* to answer with the hop */
    char phone[USSD_MAX_PHONE + 1]; /* its caller, for the log */
    monotime t0;                   /* its arrival, for the log */
} waiter;

/* One engine hop in flight on this gateway and the requests waiting for
 * it; kept after the hop while its note writes are unanswered. Kept small,
 * the waiters apart: an allocation over ~1 KB takes glibc's slow path, and
 * nearly every hop has one waiter. */
struct flight {
    ussd *u;                       /* NULL once ussd_free orphaned it */
    flight *next;                  /* bucket chain of u->flights */
    char *text;                    /* the request's text (may hold a PIN: wiped) */
    char key[USSD_KEY_LEN + 1];    /* this hop's key */
    char sid[sizeof USSD_ID_PREFIX + USSD_MAX_SESSION_ID]; /* the engine's session id */
    char lang[8];                  /* language of the session's last output ("zh" until known) */
    waiter *waiters;               /* identical requests answered by the hop */
    size_t nreqs;                  /* entries in waiters (at most USSD_MAX_WAITERS) */
    struct event *deadline;        /* answer_deadline_ms after the first request */
    bool running;                  /* the engine hop has not answered yet */
    int notes;                     /* note writes not answered yet */
    answer_kind answer;            /* derive's decision */
    size_t page;                   /* ANSWER_PAGE: which */
    int segments;                  /* ANSWER_HOLDING: replies after the held text */
    held_note note;                /* ANSWER_HOLDING/FAILED: the session's note */
    held_note own;                 /* this hop held: the note it keeps */
    bool held;                     /* this hop was answered with a holding page */
    bool note_missed;              /* its note found no session (a START): written again after */
};

struct ussd {
    struct event_base *base;       /* the main loop */
    ussd_options opt;              /* limits */
    EVP_MAC_CTX *mac;              /* HMAC-SHA256 keyed with the hop key secret */
    const struct timeval *deadline; /* answer_deadline_ms, a libevent common timeout (O(1) timers) */
    struct evbuffer *reply;        /* the body of the reply being sent */
    allow_list *allow;             /* allowed sources, NULL = any */
    LIST_HEAD(, starting) starts;  /* session starts waiting for their count */
    flight *flights[USSD_BUCKETS]; /* hops in flight here, by sessionId */
    metrics_series *results[R_COUNT]; /* requests by result */
};

/* Small helpers ------------------------------------------------------------------*/

/* Frees text that may hold a PIN. */
static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static bool is_english(const char *lang)
{
    return strcmp(lang, "zh") != 0;
}

/* Hop keys ------------------------------------------------------------------------*/

/* "u:" + HMAC-SHA256(secret, text) cut to 128 bits: the text itself may
 * hold a PIN and the key is stored in Redis. The context was keyed once
 * (ussd_new); an init without a key starts over with that key, which costs
 * a fifth of OpenSSL's one-shot HMAC() that looks up the digest each time. */
static void hop_key(const ussd *u, const char *text, size_t len, char out[USSD_KEY_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    if (!EVP_MAC_init(u->mac, NULL, 0, NULL) || !EVP_MAC_update(u->mac, (const unsigned char *)text, len) ||
        !EVP_MAC_final(u->mac, mac, &mac_len, sizeof mac) || mac_len < USSD_KEY_BYTES)
        abort();
    out[0] = 'u';
    out[1] = ':';
    for (int i = 0; i < USSD_KEY_BYTES; i++) {
        out[2 + 2 * i] = hex[mac[i] >> 4];
        out[3 + 2 * i] = hex[mac[i] & 15];
    }
    out[USSD_KEY_LEN] = '\0';
}

/* A context for HMAC-SHA256 with `key`; NULL when OpenSSL has none. */
static EVP_MAC_CTX *keyed_mac(const unsigned char *key, size_t len)
{
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    EVP_MAC_free(hmac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (ctx && !EVP_MAC_init(ctx, key, len, params)) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* Flights by session -----------------------------------------------------------------*/

static size_t bucket_of(const char *id)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    return (size_t)(h % USSD_BUCKETS);
}

static const char *flight_session(const flight *f)
{
    return f->sid + strlen(USSD_ID_PREFIX);
}

static flight *find_flight(ussd *u, const char *id)
{
    for (flight *f = u->flights[bucket_of(id)]; f; f = f->next)
        if (strcmp(flight_session(f), id) == 0)
            return f;
    return NULL;
}

static void flight_free(flight *f)
{
    wipe_free(f->text);
    if (f->deadline)
        event_free(f->deadline);
    free(f->waiters);
    free(f);
}

/* A flight ends once its hop and its note writes have answered. */
static void flight_end_if_done(flight *f)
{
    if (f->running || f->notes > 0)
        return;
    if (f->u) {
        flight **pp = &f->u->flights[bucket_of(flight_session(f))];
        while (*pp != f)
            pp = &(*pp)->next;
        *pp = f->next;
    }
    flight_free(f);
}

/* Replies ---------------------------------------------------------------------------*/

/* A request the engine answered as usual already has its info line (the
 * hop's, engine.hop): its own goes to debug. Every other outcome (pages,
 * holding pages, refusals) is logged at info. */
static void log_request(const char *sid, const char *phone, int status, result_kind r, monotime t0)
{
    log_level level = r == R_ENGINE && status == 200 ? LOG_DEBUG : LOG_INFO;
    if (!log_enabled(level))
        return;
    log_event(level, "ussd.request", "session=%s phone=%s status=%d result=%s ms=%.1f", log_quote(sid).s,
              mask_phone(phone).s, status, result_names[r], monotime_ms_since(t0));
}

/* The reply moves the buffer's bytes to the connection: one buffer serves
 * every reply. */
static void send_text(ussd *u, httpd_request *req, int status, const char *body, result_kind r)
{
    metrics_inc(u->results[r]);
    evbuffer_add(u->reply, body, strlen(body));
    httpd_reply_text(req, status, "text/plain; charset=utf-8", u->reply);
    evbuffer_drain(u->reply, evbuffer_get_length(u->reply));
}

static void answer_waiters(ussd *u, flight *f, int status, const char *body, result_kind r)
{
    for (size_t i = 0; i < f->nreqs; i++) {
        waiter *w = &f->waiters[i];
        send_text(u, w->req, status, body, r);
        log_request(flight_session(f), w->phone, status, r, w->t0);
    }
    f->nreqs = 0;
}

/* Pages -------------------------------------------------------------------------------*/

/* Page `n` of `cut` as sent: "CON " on every page but the last, which says
 * whether more is to come. */
static void page_body(const ussd_pages *cut, size_t n, bool more_to_come, char *out, size_t size)
{
    const char *prefix = n + 1 < cut->count || more_to_come ? "CON " : "END ";
    snprintf(out, size, "%s%s", prefix, cut->text[n]);
}

/* The dialplan's own wording for a prompt, or `fallback`. */
static void prompt_text(const ussd *u, const char *lang, const char *id, const char *fallback, char *out, size_t size)
{
    json_t *o = json_pack("{s:s, s:[{s:s, s:{}}]}", "lang", lang, "prompts", "id", id, "vars");
    if (!o || engine_render_text(u->opt.engine, o, CHANNEL_USSD, out, size) == 0)
        snprintf(out, size, "%s", fallback);
    json_decref(o);
}

/* The first page of the refusal for `st`, and its HTTP status. */
static int refusal_page(const ussd *u, engine_status st, const char *lang, char *out, size_t size)
{
    char text[1024];
    bool en = is_english(lang);
    int status = 200;
    switch (st) {
    case ENGINE_NO_ROUTE:
        snprintf(text, sizeof text, "%s", en ? "This service code is not available." : "该服务代码不可用。");
        break;
    case ENGINE_NO_SESSION:
        snprintf(text, sizeof text, "%s",
                 en ? "Your session has expired. Please dial again." : "会话已过期，请重新拨号。");
        break;
    case ENGINE_BAD_EVENT:
        status = 409;
        snprintf(text, sizeof text, "%s", "This reply does not continue the session.");
        break;
    case ENGINE_HELD:
        snprintf(text, sizeof text, "%s",
                 en ? "Your session is with an agent. Please wait for the agent's call."
                    : "您的会话已转交人工服务，请等候客服联系。");
        break;
    default:
        prompt_text(u, lang, "unavailable",
                    en ? "Sorry, the service is temporarily unavailable." : "抱歉，服务暂时不可用。", text,
                    sizeof text);
        break;
    }
    ussd_pages cut;
    ussd_paginate(text, strlen(text), lang, u->opt.page_octets, &cut);
    page_body(&cut, 0, false, out, size);
    ussd_pages_free(&cut);
    return status;
}

static result_kind refusal_result(engine_status st)
{
    switch (st) {
    case ENGINE_NO_ROUTE:
        return R_NO_ROUTE;
    case ENGINE_NO_SESSION:
        return R_NO_SESSION;
    case ENGINE_BAD_EVENT:
    case ENGINE_HELD:
        return R_OUT_OF_STEP;
    default:
        return R_UNAVAILABLE;
    }
}

static bool output_waits(json_t *output)
{
    const char *state = json_string_value(json_object_get(output, "state"));
    return state && strcmp(state, "wait") == 0;
}

/* Page `n` of a hop's output (the last page when it has fewer). */
static void output_page(const ussd *u, json_t *output, size_t n, char *out, size_t size)
{
    ussd_pages cut;
    ussd_output_pages(u->opt.engine, output, u->opt.page_octets, &cut);
    page_body(&cut, n < cut.count ? n : cut.count - 1, output_waits(output), out, size);
    ussd_pages_free(&cut);
}

static size_t output_page_count(const ussd *u, json_t *output)
{
    ussd_pages cut;
    ussd_output_pages(u->opt.engine, output, u->opt.page_octets, &cut);
    size_t n = cut.count;
    ussd_pages_free(&cut);
    return n;
}

static void holding_text(const char *lang, char *out, size_t size)
{
    snprintf(out, size, "CON %s",
             is_english(lang) ? "Still checking — reply " USSD_CONTINUE_KEY " to continue"
                              : "正在查询，请回复" USSD_CONTINUE_KEY "继续");
}

/* Holding notes ------------------------------------------------------------------------*/

static bool parse_note(const char *text, held_note *n)
{
    char state[16];
    int failure = 0;
    *n = (held_note){0};
    if (!text || sscanf(text, "%15s %lld %d %34s %34s", state, &n->since, &n->replies, n->base, n->held) != 5 ||
        n->replies < 0)
        return false;
    if (strcmp(state, "run") == 0)
        return true;
    if (sscanf(state, "fail:%d", &failure) != 1 || failure <= ENGINE_OK || failure > ENGINE_HELD)
        return false;
    n->failed = true;
    n->failure = (engine_status)failure;
    return true;
}

static void format_note(const held_note *n, char *out, size_t size)
{
    char state[16] = "run";
    if (n->failed)
        snprintf(state, sizeof state, "fail:%d", (int)n->failure);
    snprintf(out, size, "%s %lld %d %s %s", state, n->since, n->replies, n->base[0] ? n->base : "-", n->held);
}

/* A note write and, once it is answered, the holding page it stands for:
 * to `req`, or to the flight's waiters when `req` is NULL. Answering only
 * after the write means the caller's reply, on whichever gateway it
 * lands, finds the note. */
typedef struct {
    flight *f;                     /* whose `notes` counts this write */
    httpd_request *req;            /* a request to answer, or NULL */
    char phone[USSD_MAX_PHONE + 1]; /* its caller, for the log */
    monotime t0;                   /* its arrival */
    result_kind r;                 /* what it is counted as */
} note_write;

static void send_holding(ussd *u, flight *f, httpd_request *req, const char *phone, monotime t0, result_kind r)
{
    char body[256];
    holding_text(f->lang, body, sizeof body);
    if (!req) {
        answer_waiters(u, f, 200, body, r);
        return;
    }
    send_text(u, req, 200, body, r);
    log_request(flight_session(f), phone, 200, r, t0);
}

static void on_note_written(store_status st, void *arg)
{
    note_write *w = arg;
    flight *f = w->f;
    f->notes--;
    if (st == STORE_NOT_FOUND)
        f->note_missed = true;
    else if (st != STORE_OK)
        log_warn("ussd.note_failed", "session=%s status=%s", log_quote(flight_session(f)).s, store_status_name(st));
    if (f->u && (w->req || f->nreqs > 0))
        send_holding(f->u, f, w->req, w->phone, w->t0, w->r);
    free(w);
    flight_end_if_done(f);
}

/* Writes `n` as the session's note, then answers the holding page (see
 * note_write); without a request and no waiters, only writes. */
static void write_note(flight *f, const held_note *n, httpd_request *req, const char *phone, monotime t0,
                       result_kind r)
{
    char text[STORE_MAX_NOTE_BYTES];
    format_note(n, text, sizeof text);
    note_write *w = mem_calloc(1, sizeof *w);
    w->f = f;
    w->req = req;
    if (phone)
        snprintf(w->phone, sizeof w->phone, "%s", phone);
    w->t0 = t0;
    w->r = r;
    f->notes++;
    store_note(engine_store(f->u->opt.engine), f->sid, text, on_note_written, w);
}

/* Deriving the newest input --------------------------------------------------------------*/

/* Takes the text after `prefix` + "*" when `text` extends it (all of a
 * non-empty `text` extends the empty history). */
static bool extends(const char *text, const char *prefix, size_t plen, const char **rest)
{
    if (plen == 0 && text[0]) {
        *rest = text;
        return true;
    }
    if (strncmp(text, prefix, plen) != 0 || text[plen] != '*')
        return false;
    *rest = text + plen + 1;
    return true;
}

/* `*`-separated segments in `rest` (0 for NULL). */
static int segments_in(const char *rest)
{
    if (!rest)
        return 0;
    int n = 1;
    for (const char *p = rest; (p = strchr(p, '*')); p++)
        n++;
    return n;
}

/* The longest prefix of the flight's text — the whole, one ending before a
 * `*`, or the empty history — whose key is `key`: true with `rest` the text
 * after it (NULL for the whole). */
static bool prefix_with_key(const flight *f, const char *key, const char **rest)
{
    *rest = NULL;
    if (strcmp(f->key, key) == 0)
        return true;
    for (size_t p = strlen(f->text); p-- > 0;) {
        char k[USSD_KEY_LEN + 1];
        if (f->text[p] != '*')
            continue;
        hop_key(f->u, f->text, p, k);
        if (strcmp(k, key) == 0) {
            *rest = f->text + p + 1;
            return true;
        }
    }
    char k[USSD_KEY_LEN + 1];
    hop_key(f->u, "", 0, k);
    if (strcmp(k, key) != 0)
        return false;
    *rest = f->text;
    return true;
}

/* Drops `n` segments from the front of `rest` (NULL when none is left). */
static const char *skip_segments(const char *rest, int n)
{
    for (int i = 0; rest && i < n; i++) {
        const char *star = strchr(rest, '*');
        rest = star ? star + 1 : NULL;
    }
    return rest;
}

/* Consumes the leading `98` replies of `rest` while the output has pages
 * left to show; returns the page they lead to. */
static size_t skip_more(const flight *f, json_t *output, const char **rest)
{
    size_t page = 0, pages = 0;
    const size_t more = strlen(USSD_MORE_KEY);
    while (*rest && strncmp(*rest, USSD_MORE_KEY, more) == 0 && ((*rest)[more] == '\0' || (*rest)[more] == '*')) {
        if (pages == 0)
            pages = output ? output_page_count(f->u, output) : 1;
        if (page + 1 >= pages)
            break;
        page++;
        *rest = (*rest)[more] ? *rest + more + 1 : NULL;
    }
    return page;
}

/* The held hop has not been applied: a request whose text is or extends the
 * held text is answered a holding page, or the held hop's failure once the
 * caller has been answered holding pages for every reply before. A note of
 * a hop running longer than USSD_HELD_LOST_MS is a gateway lost mid-hop. */
static bool held_unapplied(flight *f, const held_note *n)
{
    const char *rest = NULL;
    if (!prefix_with_key(f, n->held, &rest))
        return false;
    f->note = *n;
    f->segments = rest ? segments_in(rest) : 0;
    bool lost = !n->failed && walltime_ms() - n->since > USSD_HELD_LOST_MS;
    f->answer = f->segments <= n->replies || (!n->failed && !lost) ? ANSWER_HOLDING : ANSWER_FAILED;
    f->note.failed = n->failed || lost;
    f->note.failure = n->failed ? n->failure : ENGINE_UNAVAILABLE;
    return true;
}

/* The newest input is what `text` adds to the text the session consumed:
 * the prefix whose key is the last hop's key, then — when that hop was
 * answered with holding pages first — the replies to those pages, then the
 * `98`s of the pages shown. A text that adds nothing asks for an answer
 * already given (a retry, a further page). Inputs containing `*` (an ID's
 * X) come out whole. Everything comes from the loaded session, so any
 * gateway derives the same. */
static engine_derived derive(const engine_consumed *c, char *out, size_t size, void *arg)
{
    flight *f = arg;
    if (!f->u)
        return ENGINE_DERIVE_REFUSED;
    const char *lang = json_string_value(json_object_get(c->last_output, "lang"));
    if (lang)
        snprintf(f->lang, sizeof f->lang, "%s", lang);
    snprintf(f->own.base, sizeof f->own.base, "%s", c->last_key);
    f->answer = ANSWER_HOP;
    held_note n;
    bool held = parse_note(c->note, &n);
    if (held && strcmp(n.held, c->last_key) != 0) {
        if (strcmp(n.base, c->last_key) == 0 && held_unapplied(f, &n))
            return ENGINE_DERIVE_ANSWERED;
        held = false;   /* an older hop's note */
    }
    const char *rest = NULL;
    if (!prefix_with_key(f, c->last_key, &rest))
        return ENGINE_DERIVE_REFUSED;
    if (held && segments_in(rest) <= n.replies) {
        f->answer = ANSWER_HOLDING;   /* a retry of a request answered with a holding page */
        f->note = n;
        f->segments = segments_in(rest);
        return ENGINE_DERIVE_ANSWERED;
    }
    if (held && !(rest = skip_segments(rest, n.replies + 1))) {
        f->answer = ANSWER_CONTINUED;
        return ENGINE_DERIVE_ANSWERED;
    }
    if (!rest) {
        f->answer = ANSWER_REPLAY;
        return ENGINE_DERIVE_ANSWERED;
    }
    f->page = skip_more(f, c->last_output, &rest);
    if (!rest) {
        f->answer = ANSWER_PAGE;
        return ENGINE_DERIVE_ANSWERED;
    }
    if (strlen(rest) >= size)
        return ENGINE_DERIVE_REFUSED;
    snprintf(out, size, "%s", rest);
    return ENGINE_DERIVED;
}

/* Flights: the engine hop ---------------------------------------------------------------*/

/* The hop outlived answer_deadline_ms: its requests get a holding page
 * once the note says so, and the hop goes on. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flight *f = arg;
    f->held = true;
    f->own.since = walltime_ms();
    snprintf(f->own.held, sizeof f->own.held, "%s", f->key);
    write_note(f, &f->own, NULL, NULL, 0, R_HOLDING);
}

/* A held hop ended: the caller's next reply, on any gateway, is answered
 * from the session and its note. A hop that was not applied leaves a
 * failure in the note; one applied on a session that did not exist when
 * the note was first written (a START) needs the note now. */
static void after_held_hop(flight *f, const engine_result *r)
{
    if (r->status == ENGINE_OK && f->answer == ANSWER_HOP) {
        if (f->note_missed)
            write_note(f, &f->own, NULL, NULL, 0, R_HOLDING);
        return;
    }
    f->own.failed = true;
    f->own.failure = r->status == ENGINE_OK ? ENGINE_UNAVAILABLE : r->status;
    write_note(f, &f->own, NULL, NULL, 0, R_HOLDING);
}

static void answer_hop(ussd *u, flight *f, const engine_result *r)
{
    char body[1024];
    if (r->status != ENGINE_OK) {
        int status = refusal_page(u, r->status, f->lang, body, sizeof body);
        answer_waiters(u, f, status, body, refusal_result(r->status));
        return;
    }
    switch (f->answer) {
    case ANSWER_HOLDING:
        if (f->segments > f->note.replies) {
            f->note.replies = f->segments;   /* the note counts this reply, then it is answered */
            write_note(f, &f->note, NULL, NULL, 0, R_HOLDING);
        } else {
            send_holding(u, f, NULL, NULL, 0, R_RETRY);
        }
        return;
    case ANSWER_FAILED: {
        int status = refusal_page(u, f->note.failure, f->lang, body, sizeof body);
        answer_waiters(u, f, status, body, R_CONTINUED);
        return;
    }
    case ANSWER_PAGE:
        output_page(u, r->output, f->page, body, sizeof body);
        answer_waiters(u, f, 200, body, R_PAGE);
        return;
    case ANSWER_CONTINUED:
        output_page(u, r->output, 0, body, sizeof body);
        answer_waiters(u, f, 200, body, R_CONTINUED);
        return;
    default:
        output_page(u, r->output, 0, body, sizeof body);
        answer_waiters(u, f, 200, body, R_ENGINE);
        return;
    }
}

static void on_hop(const engine_result *r, void *arg)
{
    flight *f = arg;
    f->running = false;
    if (f->u) {
        evtimer_del(f->deadline);
        if (f->held)
            after_held_hop(f, r);
        else
            answer_hop(f->u, f, r);
    }
    flight_end_if_done(f);
}

static void add_waiter(flight *f, httpd_request *req, const char *phone, monotime t0)
{
    waiter *grown = mem_realloc(f->waiters, (f->nreqs + 1) * sizeof *grown);
    f->waiters = grown;
    waiter *w = &f->waiters[f->nreqs++];
    w->req = req;
    snprintf(w->phone, sizeof w->phone, "%s", phone);
    w->t0 = t0;
}

/* The request ---------------------------------------------------------------------------*/

typedef struct {
    const char *session_id;   /* sessionId */
    const char *code;         /* serviceCode */
    const char *phone;        /* phoneNumber */
    const char *text;         /* text ("" when absent) */
    monotime t0;              /* arrival */
} ussd_req;

/* A session start waiting for its number's count (the request's form is
 * gone by then: the fields are copied). */
struct starting {
    ussd *u;                       /* NULL once ussd_free orphaned it */
    LIST_ENTRY(starting) link;     /* in u->starts */
    httpd_request *req;            /* to answer */
    char sid[USSD_MAX_SESSION_ID + 1]; /* sessionId */
    char code[USSD_MAX_CODE + 1];  /* serviceCode */
    char phone[USSD_MAX_PHONE + 1]; /* phoneNumber */
    monotime t0;                   /* arrival */
};

static void start_flight(ussd *u, httpd_request *req, const ussd_req *q)
{
    flight *f = mem_calloc(1, sizeof *f);
    f->u = u;
    f->text = mem_strdup(q->text);
    snprintf(f->sid, sizeof f->sid, USSD_ID_PREFIX "%s", q->session_id);
    snprintf(f->lang, sizeof f->lang, "zh");
    hop_key(u, q->text, strlen(q->text), f->key);
    add_waiter(f, req, q->phone, q->t0);
    f->deadline = evtimer_new(u->base, on_deadline, f);
    if (!f->deadline)
        mem_out_of_memory("ussd: evtimer_new");
    evtimer_add(f->deadline, u->deadline);
    size_t b = bucket_of(q->session_id);
    f->next = u->flights[b];
    u->flights[b] = f;
    f->running = true;
    engine_event ev = {
        .kind = q->text[0] ? ENGINE_EV_INPUT : ENGINE_EV_START,
        .channel = CHANNEL_USSD,
        .session_id = f->sid,
        .caller = q->phone,
        .entry = q->code,
        .hop_key = f->key,
        .derive_input = derive,
        .derive_arg = f,
    };
    engine_hop(u->opt.engine, &ev, on_hop, f);
}

static void reply_local(ussd *u, httpd_request *req, const ussd_req *q, int status, const char *body, result_kind r)
{
    send_text(u, req, status, body, r);
    log_request(q->session_id, q->phone, status, r, q->t0);
}

/* A request for a session whose hop runs here. Identical ones share its
 * answer; after a holding page any reply, or its retry, gets another (the
 * note counts the replies, so another gateway continues the same way). */
static void while_in_flight(ussd *u, flight *f, httpd_request *req, const ussd_req *q)
{
    const char *rest = NULL;
    if (!f->held && strcmp(q->text, f->text) == 0 && f->nreqs < USSD_MAX_WAITERS) {
        add_waiter(f, req, q->phone, q->t0);
        return;
    }
    if (f->held && (strcmp(q->text, f->text) == 0 || extends(q->text, f->text, strlen(f->text), &rest))) {
        int segments = segments_in(rest);
        if (segments > f->own.replies && !f->own.failed) {
            f->own.replies = segments;
            write_note(f, &f->own, req, q->phone, q->t0, R_HOLDING);
        } else {
            send_holding(u, f, req, q->phone, q->t0, R_RETRY);
        }
        return;
    }
    reply_local(u, req, q, 409, "END Another reply of this session is still being handled.", R_OUT_OF_STEP);
}

static void serve(ussd *u, httpd_request *req, const ussd_req *q)
{
    flight *f = find_flight(u, q->session_id);
    if (f)
        while_in_flight(u, f, req, q);
    else
        start_flight(u, req, q);
}

/* Parsing and validation -----------------------------------------------------------------*/

static bool form_content_type(struct evhttp_request *er)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(er), "Content-Type");
    return ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0 && (ct[33] == '\0' || ct[33] == ';');
}

static void refuse(ussd *u, httpd_request *req, int status, const char *why, const ussd_req *q)
{
    char body[256];
    snprintf(body, sizeof body, "END %s", why);
    send_text(u, req, status, body, R_BAD_REQUEST);
    bool sid_ok = q->session_id && ussd_wire_chars_ok(q->session_id, USSD_MAX_SESSION_ID, USSD_ID_CHARS);
    bool phone_ok = q->phone && ussd_wire_chars_ok(q->phone, USSD_MAX_PHONE, USSD_PHONE_CHARS);
    log_request(sid_ok ? q->session_id : "", phone_ok ? q->phone : "", status, R_BAD_REQUEST, q->t0);
}

/* Peers ------------------------------------------------------------------------------------*/

static const struct sockaddr *peer_of(httpd_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(httpd_request_evhttp(req));
    return conn ? evhttp_connection_get_addr(conn) : NULL;
}

static void refuse_peer(ussd *u, httpd_request *req, int status, const char *reason, const char *why)
{
    char body[256];
    snprintf(body, sizeof body, "END %s", why);
    allow_refused("ussd", reason, peer_of(req));
    send_text(u, req, status, body, R_REFUSED);
}

/* True when the request may be served; else it was answered 401/403. */
static bool peer_ok(ussd *u, httpd_request *req, const char *body, size_t len)
{
    if (u->allow && !allow_match(u->allow, peer_of(req))) {
        refuse_peer(u, req, 403, "source", "forbidden: this source address is not an allowed aggregator");
        return false;
    }
    if (!u->opt.secret) {
        if (u->opt.allow_unsigned)
            return true;
        refuse_peer(u, req, 401, "unconfigured", "unauthorized: no [ussd] secret is configured");
        return false;
    }
    struct evkeyvalq *h = evhttp_request_get_input_headers(httpd_request_evhttp(req));
    switch (ussd_wire_verify(u->opt.secret, evhttp_find_header(h, USSD_TIMESTAMP_HEADER),
                             evhttp_find_header(h, USSD_SIGNATURE_HEADER), body, len, time(NULL),
                             u->opt.max_clock_skew_s)) {
    case USSD_SIG_OK:
        return true;
    case USSD_SIG_MISSING:
        refuse_peer(u, req, 401, "signature",
                    "unauthorized: " USSD_TIMESTAMP_HEADER " and " USSD_SIGNATURE_HEADER " are required");
        return false;
    case USSD_SIG_STALE:
        refuse_peer(u, req, 401, "stale", "unauthorized: the timestamp is outside the allowed clock skew");
        return false;
    case USSD_SIG_BAD:
        break;
    }
    refuse_peer(u, req, 401, "signature", "unauthorized: the signature does not match");
    return false;
}

/* Session starts per number ------------------------------------------------------------------*/

static void starting_free(starting *st)
{
    if (st->u)
        LIST_REMOVE(st, link);
    free(st);
}

static void on_start_counted(store_status status, long long count, void *arg)
{
    starting *st = arg;
    ussd *u = st->u;
    if (!u) {
        starting_free(st);
        return;
    }
    ussd_req q = {.session_id = st->sid, .code = st->code, .phone = st->phone, .text = "", .t0 = st->t0};
    /* Redis down: the hop itself will say so; a counter must not turn that into "try later". */
    if (status == STORE_OK && count > u->opt.starts_per_number) {
        log_warn("ussd.start_limited", "phone=%s count=%lld", mask_phone(st->phone).s, count);
        reply_local(u, st->req, &q, 200, USSD_TRY_LATER, R_LIMITED);
    } else {
        serve(u, st->req, &q);
    }
    starting_free(st);
}

/* A new session (empty text) is counted against its number before it starts. */
static void count_start(ussd *u, httpd_request *req, const ussd_req *q)
{
    starting *st = mem_calloc(1, sizeof *st);
    st->u = u;
    st->req = req;
    snprintf(st->sid, sizeof st->sid, "%s", q->session_id);
    snprintf(st->code, sizeof st->code, "%s", q->code);
    snprintf(st->phone, sizeof st->phone, "%s", q->phone);
    st->t0 = q->t0;
    LIST_INSERT_HEAD(&u->starts, st, link);
    char key[sizeof USSD_START_KEY_PREFIX + USSD_MAX_PHONE];
    snprintf(key, sizeof key, USSD_START_KEY_PREFIX "%s", q->phone);
    store_count_take(engine_store(u->opt.engine), key, u->opt.number_window_s, on_start_counted, st);
}

/* Parses an authenticated body into `form` and serves it: a new session
 * is counted against its number first. */
static void serve_form(ussd *u, httpd_request *req, const char *body, size_t len, struct evkeyvalq *form,
                       ussd_req *q)
{
    int status = 400;
    ussd_fields fields;
    const char *why = ussd_wire_fields(body, len, u->opt.max_text_bytes, form, &fields, &status);
    q->session_id = fields.session_id;
    q->code = fields.code;
    q->phone = fields.phone;
    q->text = fields.text;
    if (why)
        refuse(u, req, status, why, q);
    else if (q->text[0] == '\0' && !find_flight(u, q->session_id))
        count_start(u, req, q);
    else
        serve(u, req, q);
}

/* The body is bounded, then authenticated, then read: a stranger learns
 * nothing of the form's rules. */
static void on_request(httpd_request *req, void *arg)
{
    ussd *u = arg;
    ussd_req q = {0};
    q.t0 = monotime_now();
    struct evhttp_request *er = httpd_request_evhttp(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(er);
    size_t len = evbuffer_get_length(in);
    if (len > (size_t)u->opt.max_text_bytes * 3 + 4096) {
        refuse(u, req, 413, "the body is too large", &q);
        return;
    }
    char *body = mem_calloc(1, len + 1);
    evbuffer_copyout(in, body, len);
    struct evkeyvalq form;
    TAILQ_INIT(&form);
    if (peer_ok(u, req, body, len)) {
        if (form_content_type(er))
            serve_form(u, req, body, len, &form, &q);
        else
            refuse(u, req, 415, "the body must be application/x-www-form-urlencoded", &q);
    }
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &form, next) explicit_bzero(kv->value, strlen(kv->value));
    evhttp_clear_headers(&form);
    explicit_bzero(body, len);
    free(body);
}

/* Lifecycle ------------------------------------------------------------------------------*/

static const conf_key ussd_conf_keys[] = {
    CONF_KEY_INT(ussd_options, "answer_deadline_ms", answer_deadline_ms, 100, 60000, "2500"),
    CONF_KEY_INT(ussd_options, "max_text_bytes", max_text_bytes, 16, USSD_MAX_TEXT_BYTES, "1024"),
    CONF_KEY_INT(ussd_options, "page_octets", page_octets, USSD_MIN_PAGE_OCTETS, USSD_MAX_PAGE_OCTETS, "160"),
    CONF_KEY_TEXT(ussd_options, "hop_key_secret", hop_key_secret, 16, 256, ""),
    CONF_KEY_TEXT(ussd_options, "secret", secret, 16, 256, ""),
    CONF_KEY_BOOL(ussd_options, "allow_unsigned", allow_unsigned, "0"),
    CONF_KEY(ussd_options, "allow_from", CONF_ALLOWLIST, allow_from, ""),
    CONF_KEY_INT(ussd_options, "max_clock_skew_s", max_clock_skew_s, 1, 3600, "300"),
};
const conf_section ussd_config = CONF_SECTION("ussd", ussd_conf_keys);

void ussd_options_default(ussd_options *opt)
{
    memset(opt, 0, sizeof *opt);
    conf_section_defaults(&ussd_config, opt);
    handlers_start_limit_default(&opt->starts_per_number, &opt->number_window_s);
}

static const char *options_problem(const ussd_options *o, char *buf, size_t size)
{
    if (!o->engine)
        return "engine is required";
    const char *problem = handlers_start_limit_problem(o->starts_per_number, o->number_window_s, buf, size);
    return problem ? problem : conf_section_problem(&ussd_config, o, buf, size);
}

ussd *ussd_new(struct event_base *base, struct httpd *http, const ussd_options *opt)
{
    char buf[96];
    const char *problem = options_problem(opt, buf, sizeof buf);
    if (problem) {
        log_error("ussd.option_invalid", "why=%s", log_quote(problem).s);
        return NULL;
    }
    char why[160];
    allow_list *allow = NULL;
    if (opt->allow_from && !(allow = allow_parse(opt->allow_from, why, sizeof why))) {
        log_error("ussd.option_invalid", "why=%s", log_quote(why).s);
        return NULL;
    }
    ussd *u = mem_calloc(1, sizeof *u);
    u->base = base;
    u->opt = *opt;
    u->allow = allow;
    u->opt.hop_key_secret = NULL;
    u->opt.allow_from = NULL;
    u->opt.secret = opt->secret ? mem_strdup(opt->secret) : NULL;
    if (!u->opt.secret && u->opt.allow_unsigned)
        log_warn("ussd.unsigned", "why=%s",
                 log_quote("[ussd] secret unset and allow_unsigned = 1: requests are not authenticated").s);
    else if (!u->opt.secret)
        log_warn("ussd.closed", "why=%s", log_quote("[ussd] secret unset: every request is refused").s);
    unsigned char secret[USSD_SECRET_BYTES];
    size_t secret_len = sizeof secret;
    if (opt->hop_key_secret) {
        secret_len = strlen(opt->hop_key_secret);
        if (secret_len > sizeof secret)
            secret_len = sizeof secret;
        memcpy(secret, opt->hop_key_secret, secret_len);
    } else {
        if (RAND_bytes(secret, (int)secret_len) != 1)
            abort();
        log_warn("ussd.random_secret", "why=%s", log_quote("hop_key_secret unset: USSD sessions do not survive a restart").s);
    }
    u->mac = keyed_mac(secret, secret_len);
    explicit_bzero(secret, sizeof secret);
    if (!u->mac)
        abort();
    for (int r = 0; r < R_COUNT; r++) {
        char labels[64];
        snprintf(labels, sizeof labels, "result=\"%s\"", result_names[r]);
        u->results[r] = metrics_counter("cardline_ussd_requests_total", "USSD requests by result.", labels);
    }
    struct timeval deadline = {u->opt.answer_deadline_ms / 1000, (u->opt.answer_deadline_ms % 1000) * 1000};
    u->deadline = event_base_init_common_timeout(base, &deadline);
    if (!u->deadline)
        abort();
    u->reply = evbuffer_new();
    if (!u->reply || httpd_route(http, USSD_PATH, EVHTTP_REQ_POST, on_request, u) != 0) {
        log_error("ussd.route_failed", "path=%s", USSD_PATH);
        ussd_free(u);
        return NULL;
    }
    return u;
}

void ussd_free(ussd *u)
{
    if (!u)
        return;
    /* Each flight still waits for its hop or a note write, whose callback frees it. */
    for (size_t b = 0; b < USSD_BUCKETS; b++) {
        for (flight *f = u->flights[b]; f; f = f->next) {
            f->u = NULL;
            f->nreqs = 0;
            evtimer_del(f->deadline);
        }
    }
    starting *st;
    LIST_FOREACH(st, &u->starts, link)
        st->u = NULL;   /* its count's callback frees it */
    allow_free(u->allow);
    if (u->opt.secret) {
        explicit_bzero((char *)u->opt.secret, strlen(u->opt.secret));
        free((char *)u->opt.secret);
    }
    if (u->reply)
        evbuffer_free(u->reply);
    EVP_MAC_CTX_free(u->mac);
    free(u);
}
