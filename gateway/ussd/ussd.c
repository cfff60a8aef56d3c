/* ussd — the aggregator wire (form parsing, validation, CON/END replies),
 * the derivation of the newest input from `text`, paging, holding pages and
 * the in-memory channel state per session (where pages are cut is
 * ussd_page.c's). The dialplan semantics, replays and races belong to the
 * engine; this file only decides which requests reach it and how its
 * outputs look on a handset. */
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

#define USSD_PATH "/ussd"
#define USSD_ID_PREFIX "ussd:"
#define USSD_MAX_WAITERS 16       /* identical requests answered by one hop */
#define USSD_BUCKETS 4096         /* hash buckets of the session table */
#define USSD_KEY_BYTES 16         /* HMAC bytes kept in a hop key */
#define USSD_KEY_LEN (2 + 2 * USSD_KEY_BYTES)
#define USSD_CONTINUE_KEY "1"
#define USSD_SECRET_BYTES 32
#define USSD_START_KEY_PREFIX "cl:rl:start:ussd:"
#define USSD_TRY_LATER "END 您的号码发起的会话过多，请稍后再试。Too many sessions from your number; please try later."

typedef enum {
    R_ENGINE = 0,   /* answered from an engine hop (applied or replayed) */
    R_PAGE,         /* a further page of an output */
    R_HOLDING,      /* a holding page */
    R_CONTINUED,    /* a held hop's output after the caller's reply */
    R_RETRY,        /* a retry of a locally answered request */
    R_BAD_REQUEST,  /* 4xx: malformed request, nothing done */
    R_OUT_OF_STEP,  /* 409: text does not continue the session, or another hop runs */
    R_NO_ROUTE,
    R_NO_SESSION,
    R_UNAVAILABLE,  /* engine busy/unavailable or the table is full */
    R_REFUSED,      /* 401/403: the peer did not authenticate, nothing done */
    R_LIMITED,      /* the number started too many sessions: a "try later" page */
    R_COUNT
} result_kind;

static const char *const result_names[R_COUNT] = {
    "engine", "page", "holding", "continued", "retry", "bad_request",
    "out_of_step", "no_route", "no_session", "unavailable", "refused", "limited"};

typedef struct usess usess;
typedef struct flight flight;
typedef struct starting starting;

/* The answer to one hop, split into pages ("CON …"/"END …" bodies). */
typedef struct {
    int status;                    /* HTTP status of every page */
    char **pages;                  /* page bodies */
    size_t count;                  /* pages */
    size_t next;                   /* the next page to show */
} pager;

/* A request waiting for a hop's answer. */
typedef struct {
    httpd_request *req;            /* to answer with the hop */
    char phone[USSD_MAX_PHONE + 1]; /* its caller, for the log */
    monotime t0;                   /* its arrival, for the log */
} waiter;

/* One engine hop in flight and the requests waiting for it. Self-contained
 * for derive_input: it may outlive its session state (ussd_free). Kept
 * small, the waiters apart: an allocation over ~1 KB takes glibc's slow
 * path, and nearly every hop has one waiter. */
struct flight {
    ussd *u;                       /* NULL once ussd_free orphaned it */
    usess *s;                      /* the session state it belongs to */
    char *text;                    /* the request's text (may hold a PIN: wiped) */
    char *consumed;                /* text consumed locally on top of base_key, or NULL */
    char base_key[USSD_KEY_LEN + 1]; /* the engine hop key `consumed` builds on */
    char key[USSD_KEY_LEN + 1];    /* this hop's key */
    char sid[sizeof USSD_ID_PREFIX + USSD_MAX_SESSION_ID]; /* the engine's session id */
    waiter *waiters;               /* identical requests answered by the hop */
    size_t nreqs;                  /* entries in waiters (at most USSD_MAX_WAITERS) */
    struct event *deadline;        /* answer_deadline_ms after the first request */
};

/* What the channel remembers of one session between requests. */
struct usess {
    usess *next;                   /* bucket chain */
    char id[USSD_MAX_SESSION_ID + 1]; /* the aggregator's sessionId */
    char lang[8];                  /* language of the last output ("zh" until one came) */
    time_t touched;                /* last request (monotonic seconds) */
    flight *fl;                    /* the hop in flight, or NULL */
    bool held;                     /* a holding page was the last answer of a hop */
    char *local_text;              /* the text last answered here (not by the engine), or NULL */
    char base_key[USSD_KEY_LEN + 1]; /* the engine hop key local_text builds on */
    char *last_answer;             /* what local_text was answered (for retries) */
    int last_status;               /* its HTTP status */
    pager pages;                   /* the output being shown (pages.next = next to show) */
    bool ready;                    /* pages holds a finished hop's output */
};

struct ussd {
    struct event_base *base;       /* the main loop */
    ussd_options opt;              /* limits */
    EVP_MAC_CTX *mac;              /* HMAC-SHA256 keyed with the hop key secret */
    const struct timeval *deadline; /* answer_deadline_ms, a libevent common timeout (O(1) timers) */
    struct evbuffer *reply;        /* the body of the reply being sent */
    allow_list *allow;             /* allowed sources, NULL = any */
    LIST_HEAD(, starting) starts;  /* session starts waiting for their count */
    usess *buckets[USSD_BUCKETS];  /* session state by sessionId */
    size_t nsessions;              /* entries in buckets */
    struct event *sweep;           /* drops silent sessions' state */
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

/* Session state table ----------------------------------------------------------------*/

static size_t bucket_of(const char *id)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    return (size_t)(h % USSD_BUCKETS);
}

static usess *find_session(ussd *u, const char *id)
{
    for (usess *s = u->buckets[bucket_of(id)]; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static void pager_clear(pager *p)
{
    for (size_t i = 0; i < p->count; i++)
        free(p->pages[i]);
    free(p->pages);
    *p = (pager){0};
}

static void forget_local(usess *s)
{
    wipe_free(s->local_text);
    free(s->last_answer);
    s->local_text = s->last_answer = NULL;
    s->held = false;
}

static void remove_session(ussd *u, usess *s)
{
    usess **pp = &u->buckets[bucket_of(s->id)];
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    forget_local(s);
    pager_clear(&s->pages);
    free(s);
    u->nsessions--;
}

/* A session keeps its entry only while the channel holds something for it. */
static void drop_if_idle(ussd *u, usess *s)
{
    if (!s->fl && !s->local_text && s->pages.next >= s->pages.count)
        remove_session(u, s);
}

static usess *add_session(ussd *u, const char *id)
{
    if (u->nsessions >= (size_t)u->opt.max_sessions)
        return NULL;
    usess *s = mem_calloc(1, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", id);
    snprintf(s->lang, sizeof s->lang, "zh");
    size_t b = bucket_of(id);
    s->next = u->buckets[b];
    u->buckets[b] = s;
    u->nsessions++;
    return s;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ussd *u = arg;
    time_t limit = (time_t)monotime_s() - u->opt.state_ttl_s;
    for (size_t b = 0; b < USSD_BUCKETS; b++) {
        usess *s = u->buckets[b];
        while (s) {
            usess *next = s->next;
            if (!s->fl && s->touched < limit)
                remove_session(u, s);
            s = next;
        }
    }
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

/* Pages -------------------------------------------------------------------------------*/

/* Keeps `cut` as the session's pages: "CON " on every page but the last,
 * which says whether more is to come. */
static void keep_pages(pager *p, int status, bool more_to_come, ussd_pages *cut)
{
    *p = (pager){.status = status, .pages = mem_calloc(cut->count, sizeof *p->pages), .count = cut->count};
    for (size_t i = 0; i < cut->count; i++) {
        const char *prefix = i + 1 < cut->count || more_to_come ? "CON " : "END ";
        size_t size = strlen(prefix) + strlen(cut->text[i]) + 1;
        p->pages[i] = mem_calloc(1, size);
        snprintf(p->pages[i], size, "%s%s", prefix, cut->text[i]);
    }
    ussd_pages_free(cut);
}

static void paginate(const ussd *u, pager *p, int status, const char *lang, const char *text)
{
    ussd_pages cut;
    ussd_paginate(text, strlen(text), lang, u->opt.page_octets, &cut);
    keep_pages(p, status, false, &cut);
}

/* The dialplan's own wording for a prompt, or `fallback`. */
static void prompt_text(const ussd *u, const char *lang, const char *id, const char *fallback, char *out, size_t size)
{
    json_t *o = json_pack("{s:s, s:[{s:s, s:{}}]}", "lang", lang, "prompts", "id", id, "vars");
    if (!o || engine_render_text(u->opt.engine, o, CHANNEL_USSD, out, size) == 0)
        snprintf(out, size, "%s", fallback);
    json_decref(o);
}

static void refusal_pages(const ussd *u, engine_status st, const char *lang, pager *p)
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
    paginate(u, p, status, lang, text);
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

static void output_pages(const ussd *u, json_t *output, pager *p)
{
    ussd_pages cut;
    ussd_output_pages(u->opt.engine, output, u->opt.page_octets, &cut);
    const char *state = json_string_value(json_object_get(output, "state"));
    keep_pages(p, 200, state && strcmp(state, "wait") == 0, &cut);
}

static void holding_text(const usess *s, char *out, size_t size)
{
    snprintf(out, size, "CON %s",
             is_english(s->lang) ? "Still checking — reply " USSD_CONTINUE_KEY " to continue"
                                 : "正在查询，请回复" USSD_CONTINUE_KEY "继续");
}

/* Remembers what the channel answered for `text` itself, for retries and
 * for deriving the next input. */
static void remember_local(usess *s, const char *text, const char *answer, int status)
{
    if (!s->local_text || strcmp(s->local_text, text) != 0) {
        wipe_free(s->local_text);
        s->local_text = mem_strdup(text);
    }
    free(s->last_answer);
    s->last_answer = mem_strdup(answer);
    s->last_status = status;
}

/* Shows the next page of s->pages for a request answered locally. */
static void send_next_page(ussd *u, usess *s, httpd_request *req, const char *text, result_kind r)
{
    const char *page = s->pages.pages[s->pages.next++];
    remember_local(s, text, page, s->pages.status);
    send_text(u, req, s->pages.status, page, r);
}

/* Flights: the engine hop ---------------------------------------------------------------*/

static void flight_free(flight *f)
{
    wipe_free(f->text);
    wipe_free(f->consumed);
    if (f->deadline)
        event_free(f->deadline);
    free(f->waiters);
    free(f);
}

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

/* The newest input is what `text` adds to the text the session consumed:
 * the locally consumed text when it builds on the engine's last hop, else
 * the prefix (at a `*`, or empty) whose key is the last hop's key. Inputs
 * containing `*` (an ID's X) come out whole. */
static bool derive(const char *previous_hop_key, char *out, size_t size, void *arg)
{
    flight *f = arg;
    const char *rest = NULL;
    if (!f->u)
        return false;
    if (f->consumed && strcmp(f->base_key, previous_hop_key) == 0)
        extends(f->text, f->consumed, strlen(f->consumed), &rest);
    for (size_t p = strlen(f->text); !rest && p-- > 0;) {
        char key[USSD_KEY_LEN + 1];
        if (f->text[p] != '*')
            continue;
        hop_key(f->u, f->text, p, key);
        if (strcmp(key, previous_hop_key) == 0)
            rest = f->text + p + 1;
    }
    if (!rest) {
        char key[USSD_KEY_LEN + 1];
        hop_key(f->u, "", 0, key);
        if (strcmp(key, previous_hop_key) == 0)
            rest = f->text;
    }
    if (!rest || strlen(rest) >= size)
        return false;
    snprintf(out, size, "%s", rest);
    return true;
}

static void answer_waiters(ussd *u, flight *f, int status, const char *body, result_kind r)
{
    for (size_t i = 0; i < f->nreqs; i++) {
        waiter *w = &f->waiters[i];
        send_text(u, w->req, status, body, r);
        log_request(f->sid + strlen(USSD_ID_PREFIX), w->phone, status, r, w->t0);
    }
    f->nreqs = 0;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flight *f = arg;
    usess *s = f->s;
    char body[256];
    holding_text(s, body, sizeof body);
    remember_local(s, f->text, body, 200);
    s->held = true;
    answer_waiters(f->u, f, 200, body, R_HOLDING);
}

static void on_hop(const engine_result *r, void *arg)
{
    flight *f = arg;
    ussd *u = f->u;
    if (!u) {
        flight_free(f);
        return;
    }
    usess *s = f->s;
    s->fl = NULL;
    pager_clear(&s->pages);
    const char *lang = r->output ? json_string_value(json_object_get(r->output, "lang")) : NULL;
    if (lang)
        snprintf(s->lang, sizeof s->lang, "%s", lang);
    if (r->status == ENGINE_OK)
        output_pages(u, r->output, &s->pages);
    else
        refusal_pages(u, r->status, s->lang, &s->pages);
    if (r->status == ENGINE_OK && s->held) {
        /* The caller saw a holding page: the output waits for the reply. */
        snprintf(s->base_key, sizeof s->base_key, "%s", f->key);
        s->ready = true;
    } else if (s->held) {
        s->ready = true;
    } else {
        result_kind rk = r->status == ENGINE_OK ? R_ENGINE : refusal_result(r->status);
        int status = s->pages.status;
        if (r->status == ENGINE_OK) {
            forget_local(s);
            if (s->pages.count > 1) {
                remember_local(s, f->text, s->pages.pages[0], status);
                snprintf(s->base_key, sizeof s->base_key, "%s", f->key);
            }
        }
        s->pages.next = 1;
        answer_waiters(u, f, status, s->pages.pages[0], rk);
        if (s->pages.next >= s->pages.count)
            pager_clear(&s->pages);
    }
    flight_free(f);
    drop_if_idle(u, s);
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

static void start_flight(ussd *u, usess *s, httpd_request *req, const ussd_req *q)
{
    flight *f = mem_calloc(1, sizeof *f);
    f->u = u;
    f->s = s;
    f->text = mem_strdup(q->text);
    snprintf(f->sid, sizeof f->sid, USSD_ID_PREFIX "%s", q->session_id);
    hop_key(u, q->text, strlen(q->text), f->key);
    if (s->local_text && !s->held) {
        f->consumed = mem_strdup(s->local_text);
        snprintf(f->base_key, sizeof f->base_key, "%s", s->base_key);
    }
    add_waiter(f, req, q->phone, q->t0);
    f->deadline = evtimer_new(u->base, on_deadline, f);
    if (!f->deadline)
        mem_out_of_memory("ussd: evtimer_new");
    evtimer_add(f->deadline, u->deadline);
    s->fl = f;
    s->held = false;
    s->ready = false;
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

/* A request for a session whose hop is still running. */
static void while_in_flight(ussd *u, usess *s, httpd_request *req, const ussd_req *q)
{
    flight *f = s->fl;
    const char *rest;
    if (!s->held && strcmp(q->text, f->text) == 0 && f->nreqs < USSD_MAX_WAITERS) {
        add_waiter(f, req, q->phone, q->t0);
        return;
    }
    /* After a holding page any reply, or its retry, gets the holding page. */
    if (s->held && s->local_text &&
        (strcmp(q->text, s->local_text) == 0 || extends(q->text, s->local_text, strlen(s->local_text), &rest))) {
        char body[256];
        holding_text(s, body, sizeof body);
        remember_local(s, q->text, body, 200);
        reply_local(u, req, q, 200, body, R_HOLDING);
        return;
    }
    reply_local(u, req, q, 409, "END Another reply of this session is still being handled.", R_OUT_OF_STEP);
}

static void serve(ussd *u, httpd_request *req, const ussd_req *q)
{
    usess *s = find_session(u, q->session_id);
    if (s && s->fl) {
        s->touched = (time_t)monotime_s();
        while_in_flight(u, s, req, q);
        return;
    }
    const char *rest = NULL;
    if (s && s->local_text) {
        if (strcmp(q->text, s->local_text) == 0) {
            s->touched = (time_t)monotime_s();
            reply_local(u, req, q, s->last_status, s->last_answer, R_RETRY);
            return;
        }
        extends(q->text, s->local_text, strlen(s->local_text), &rest);
    }
    if (rest && s->held && s->ready) {
        /* Any reply to a holding page continues; none of it reaches the engine. */
        s->held = s->ready = false;
        s->touched = (time_t)monotime_s();
        send_next_page(u, s, req, q->text, R_CONTINUED);
        log_request(q->session_id, q->phone, s->last_status, R_CONTINUED, q->t0);
        return;
    }
    if (rest && strcmp(rest, USSD_MORE_KEY) == 0 && s->pages.next < s->pages.count) {
        s->touched = (time_t)monotime_s();
        send_next_page(u, s, req, q->text, R_PAGE);
        log_request(q->session_id, q->phone, s->last_status, R_PAGE, q->t0);
        return;
    }
    if (!s)
        s = add_session(u, q->session_id);
    if (!s) {
        reply_local(u, req, q, 503, "END Sorry, the service is busy. Please try again later.", R_UNAVAILABLE);
        return;
    }
    s->touched = (time_t)monotime_s();
    pager_clear(&s->pages);
    start_flight(u, s, req, q);
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
    else if (q->text[0] == '\0' && !find_session(u, q->session_id))
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
    CONF_KEY_INT(ussd_options, "max_sessions", max_sessions, 1, 1000000, "10000"),
    CONF_KEY_INT(ussd_options, "state_ttl_s", state_ttl_s, 10, 86400, "300"),
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
    u->sweep = event_new(base, -1, EV_PERSIST, on_sweep, u);
    struct timeval every = {u->opt.state_ttl_s / 4 + 1, 0};
    if (!u->reply || !u->sweep || event_add(u->sweep, &every) != 0 ||
        httpd_route(http, USSD_PATH, EVHTTP_REQ_POST, on_request, u) != 0) {
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
    for (size_t b = 0; b < USSD_BUCKETS; b++) {
        while (u->buckets[b]) {
            usess *s = u->buckets[b];
            if (s->fl) {
                s->fl->u = NULL;   /* its hop's callback frees it */
                s->fl->s = NULL;
                evtimer_del(s->fl->deadline);
                s->fl = NULL;
            }
            remove_session(u, s);
        }
    }
    starting *st;
    LIST_FOREACH(st, &u->starts, link)
        st->u = NULL;   /* its count's callback frees it */
    if (u->sweep)
        event_free(u->sweep);
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
