/* sms — Kannel's get-url to engine hops and back (see sms.h). Owns the
 * request checks, the sender key, the keyword rule, reply sizing, the
 * messages held for an agent (cl:held:{session}) and the requests waiting
 * for the engine or Redis; the conversation itself is the engine's session. */
#include "sms.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <sys/queue.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allow.h"
#include "dialplan.h"
#include "domain.h"
#include "engine.h"
#include "handlers.h"
#include "gsm.h"
#include "httpd.h"
#include "log.h"
#include "mask.h"
#include "mem.h"
#include "metrics.h"
#include "store.h"
#include "sms_wire.h"
#include "utf8.h"
#include "walltime.h"

#define SMS_PATH "/sms/kannel"
#define SMS_REPLY_MAX 4096
#define SMS_MAX_PARTS 10
#define SMS_MAX_TEXT 4096
#define SMS_HELD_PREFIX "cl:held:"
#define SMS_HELD_KEEP 50         /* newest held messages kept for the agent */
#define SMS_LANG_MAX 16
/* When the dialplans route nothing at all, or the engine cannot answer. */
#define SMS_HELP_TEXT "回复CX查询社保卡状态。Reply CX for your card status."
#define SMS_UNAVAILABLE_TEXT "抱歉，服务暂时不可用，请稍后再试。"
/* When the dialplans do not word `sms_held`. */
#define SMS_HELD_TEXT "您的消息已转给人工客服，客服将通过短信回复您。"
#define SMS_HELD_PROMPT "sms_held"
#define SMS_TRY_LATER_TEXT "您发起的会话过多，请稍后再试。Too many requests from your number; please try later."
#define SMS_START_KEY_PREFIX "cl:rl:start:sms:"

/* Appends a held message and keeps the newest ARGV[2], all expiring with
 * the conversation. KEYS: the held list. ARGV: message JSON, keep, ttl. */
static const char hold_script[] =
    "redis.call('RPUSH', KEYS[1], ARGV[1])\n"
    "redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "return redis.call('LLEN', KEYS[1])\n";

typedef struct sms_pending sms_pending;

struct sms {
    engine *engine;          /* runs the hops */
    sms_options opt;         /* limits; secret owned */
    allow_list *allow;       /* allowed sources, NULL = any */
    LIST_HEAD(, sms_pending) pending; /* requests waiting for a hop, newest first */
};

/* One Kannel request waiting for the engine. */
struct sms_pending {
    sms *owner;              /* NULL once sms_free answered the request */
    httpd_request *req;      /* the request to answer */
    char session[SMS_SESSION_MAX + 4]; /* "sms:" + normalized sender */
    char sender[SMS_SESSION_MAX];      /* normalized sender (masked in logs) */
    char *text;              /* the MO text (never logged) */
    char lang[SMS_LANG_MAX]; /* held: the conversation's language, for the acknowledgement */
    bool started;            /* the START hop was sent (no second fallback) */
    LIST_ENTRY(sms_pending) link; /* in owner->pending */
};

static metrics_series *counter(const char *result)
{
    char labels[64];
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    return metrics_counter("cardline_sms_requests_total", "Kannel MO requests by result", labels);
}

static const conf_key sms_conf_keys[] = {
    CONF_KEY_INT(sms_options, "max_messages", max_messages, 1, SMS_MAX_PARTS, "3"),
    CONF_KEY_INT(sms_options, "max_text_bytes", max_text_bytes, 1, SMS_MAX_TEXT, "480"),
    CONF_KEY_TEXT(sms_options, "secret", secret, 16, 256, ""),
    CONF_KEY_BOOL(sms_options, "allow_unsigned", allow_unsigned, "0"),
    CONF_KEY(sms_options, "allow_from", CONF_ALLOWLIST, allow_from, ""),
};
const conf_section sms_config = CONF_SECTION("sms", sms_conf_keys);

void sms_options_default(sms_options *opt)
{
    memset(opt, 0, sizeof *opt);
    conf_section_defaults(&sms_config, opt);
    handlers_start_limit_default(&opt->starts_per_number, &opt->number_window_s);
}

/* Text rules ------------------------------------------------------------------*/

/* Units the character takes: septets in GSM-7, UTF-16 units in UCS-2. */
static size_t char_units(const char *ch, size_t n, bool gsm)
{
    return gsm ? gsm_char_septets(ch, n) : gsm_char_ucs2(n);
}

static bool is_gsm7(const char *text)
{
    return gsm_is_gsm7(text, strlen(text));
}

bool sms_fit(char *text, size_t size, int max_messages)
{
    bool gsm = is_gsm7(text);
    size_t single = gsm ? 160 : 70, part = gsm ? 153 : 67;
    size_t limit = max_messages <= 1 ? single : part * (size_t)max_messages;
    size_t total = gsm ? gsm_septets(text, strlen(text)) : gsm_ucs2_units(text, strlen(text));
    if (total <= single || total <= limit)
        return false;
    const char *marker = gsm ? "..." : "…";
    size_t budget = limit - (gsm ? 3 : 1), units = 0, cut = 0, line_cut = 0;
    for (const char *p = text; *p;) {
        size_t n = utf8_char_len(p);
        size_t u = char_units(p, n, gsm);
        if (n == 0 || units + u > budget)
            break;
        units += u;
        p += n;
        cut = (size_t)(p - text);
        if (p[-1] == '\n')
            line_cut = cut;
    }
    cut = line_cut > 0 ? line_cut : cut;
    if (cut + strlen(marker) + 1 > size)
        cut = size - strlen(marker) - 1;
    cut = utf8_cut(text, cut);
    memcpy(text + cut, marker, strlen(marker) + 1);
    return true;
}

/* Replies ---------------------------------------------------------------------*/

static void reply_text(httpd_request *req, const char *text)
{
    char body[SMS_REPLY_MAX];
    snprintf(body, sizeof body, "%s", text[0] ? text : SMS_HELP_TEXT);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(httpd_request_evhttp(req));
    /* Kannel (accept-x-kannel-headers) sends UCS-2 only when told to. */
    evhttp_add_header(headers, "X-Kannel-Coding", is_gsm7(body) ? "0" : "2");
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, body, strlen(body));
    httpd_reply_text(req, 200, "text/plain; charset=utf-8", buf);
    evbuffer_free(buf);
}

static void refuse(httpd_request *req, int status, const char *code, const char *message)
{
    metrics_inc(counter(code));
    httpd_reply_error(req, status, code, message);
}

/* A prompt said outside any hop (no variables), in `lang` (NULL: the
 * default language), or `fallback` when the dialplans do not word it. */
static void render_prompt(const sms *s, const char *lang, const char *id, const char *fallback, char *out,
                          size_t size)
{
    const dialplan *dp = engine_dialplan(s->engine);
    if (!lang || !dialplan_has_language(dp, lang))
        lang = dialplan_language(dp, 0);
    if (!dialplan_render_text(dp, lang, CHANNEL_SMS, id, NULL, out, size))
        snprintf(out, size, "%s", fallback);
}

static void render_unavailable(const sms *s, char *out, size_t size)
{
    render_prompt(s, NULL, DP_PROMPT_UNAVAILABLE, SMS_UNAVAILABLE_TEXT, out, size);
}

/* Requests --------------------------------------------------------------------*/

static void pending_free(sms_pending *p)
{
    if (p->owner)
        LIST_REMOVE(p, link);
    free(p->text);
    free(p);
}

static void hop_done(const engine_result *r, void *arg);

static void run_hop(sms_pending *p, engine_event_kind kind)
{
    engine_event ev = {
        .kind = kind,
        .channel = CHANNEL_SMS,
        .session_id = p->session,
        .caller = p->sender,
        .entry = p->text,
        .input = p->text,
        .keep_held = true,
    };
    p->started = kind == ENGINE_EV_START;
    engine_hop(p->owner->engine, &ev, hop_done, p);
}

static void finish(sms_pending *p, const char *result, const char *text, bool cut);

static void on_start_counted(store_status st, long long count, void *arg)
{
    sms_pending *p = arg;
    if (p->owner == NULL) {
        pending_free(p);
        return;
    }
    /* Redis down: the hop itself will say so; a counter must not turn that into "try later". */
    if (st == STORE_OK && count > p->owner->opt.starts_per_number) {
        log_warn("sms.start_limited", "from=%s count=%lld", mask_phone(p->sender).s, count);
        finish(p, "limited", SMS_TRY_LATER_TEXT, false);
        return;
    }
    run_hop(p, ENGINE_EV_START);
}

/* A new conversation is counted against its sender before it starts. */
static void start_hop(sms_pending *p)
{
    char key[sizeof SMS_START_KEY_PREFIX + SMS_SESSION_MAX];
    snprintf(key, sizeof key, SMS_START_KEY_PREFIX "%s", p->sender);
    p->started = true;
    store_count_take(engine_store(p->owner->engine), key, p->owner->opt.number_window_s, on_start_counted, p);
}

static void finish(sms_pending *p, const char *result, const char *text, bool cut)
{
    log_info("sms.mo", "from=%s text_len=%zu result=%s reply_cut=%d",
             mask_phone(p->sender).s, strlen(p->text), result, cut);
    metrics_inc(counter(result));
    reply_text(p->req, text);
    pending_free(p);
}

/* Held messages ---------------------------------------------------------------*/

static void on_held(store_status st, const struct redisReply *reply, void *arg)
{
    sms_pending *p = arg;
    if (p->owner == NULL) {
        pending_free(p);
        return;
    }
    char text[SMS_REPLY_MAX];
    if (st != STORE_OK || reply->type != REDIS_REPLY_INTEGER) {
        log_warn("sms.hold_failed", "from=%s status=%s", mask_phone(p->sender).s, store_status_name(st));
        render_unavailable(p->owner, text, sizeof text);
        finish(p, "unavailable", text, false);
        return;
    }
    engine_note_change(p->owner->engine, p->session); /* the agent's console shows it */
    render_prompt(p->owner, p->lang, SMS_HELD_PROMPT, SMS_HELD_TEXT, text, sizeof text);
    bool cut = sms_fit(text, sizeof text, p->owner->opt.max_messages);
    finish(p, "held", text, cut);
}

/* The conversation is with an agent: the text waits in the session's held
 * list for the agent (the Agent API shows and clears it), and the sender
 * is told so. */
static void hold_message(sms_pending *p, json_t *output)
{
    const char *lang = json_string_value(json_object_get(output, "lang"));
    snprintf(p->lang, sizeof p->lang, "%s", lang ? lang : "");
    json_t *msg = json_pack("{s:I, s:s}", "at_ms", (json_int_t)walltime_ms(), "text", p->text);
    char *payload = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!payload)
        mem_out_of_memory("sms: json_dumps");
    char key[sizeof SMS_HELD_PREFIX + sizeof p->session], keep[16], ttl[16];
    snprintf(key, sizeof key, SMS_HELD_PREFIX "%s", p->session);
    snprintf(keep, sizeof keep, "%d", SMS_HELD_KEEP);
    snprintf(ttl, sizeof ttl, "%d", engine_session_ttl(p->owner->engine, CHANNEL_SMS));
    const char *argv[] = {"EVAL", hold_script, "1", key, payload, keep, ttl};
    store_command(engine_store(p->owner->engine), 7, argv, NULL, on_held, p);
    free(payload);
}

/* Hops ------------------------------------------------------------------------*/

static void hop_done(const engine_result *r, void *arg)
{
    sms_pending *p = arg;
    if (p->owner == NULL) {
        pending_free(p);
        return;
    }
    char reply[SMS_REPLY_MAX];
    reply[0] = '\0';
    /* No waiting conversation (none, ended, or with an agent): start anew. */
    if (!p->started && (r->status == ENGINE_NO_SESSION || r->status == ENGINE_BAD_EVENT)) {
        start_hop(p);
        return;
    }
    if (r->status == ENGINE_HELD) {
        hold_message(p, r->output);
    } else if (r->status == ENGINE_OK) {
        engine_render_text(p->owner->engine, r->output, CHANNEL_SMS, reply, sizeof reply - 4);
        bool cut = sms_fit(reply, sizeof reply, p->owner->opt.max_messages);
        finish(p, "ok", reply, cut);
    } else if (r->status == ENGINE_NO_ROUTE) {
        finish(p, "help", SMS_HELP_TEXT, false);
    } else {
        render_unavailable(p->owner, reply, sizeof reply);
        finish(p, engine_status_name(r->status), reply, false);
    }
}

/* True when `text` routes to a flow of its own, or in a language of its
 * own, not as the catch-all does (the route an empty text takes): HELP is
 * a keyword too, the English one. */
static bool is_keyword(const sms *s, const char *text)
{
    const dialplan *dp = engine_dialplan(s->engine);
    const dp_flow *flow = dialplan_route(dp, CHANNEL_SMS, text);
    const char *lang = dialplan_route_lang(dp, CHANNEL_SMS, text);
    const char *plain = dialplan_route_lang(dp, CHANNEL_SMS, "");
    bool other_lang = lang && (!plain || strcmp(lang, plain) != 0);
    return flow != NULL && (flow != dialplan_route(dp, CHANNEL_SMS, "") || other_lang);
}

/* The form text: the query string for GET, the body for POST (caller
 * frees); NULL when the body holds a NUL byte. */
static char *form_text(httpd_request *req)
{
    struct evhttp_request *evr = httpd_request_evhttp(req);
    if (evhttp_request_get_command(evr) == EVHTTP_REQ_POST) {
        struct evbuffer *in = evhttp_request_get_input_buffer(evr);
        size_t len = evbuffer_get_length(in);
        char *body = mem_malloc(len + 1);
        evbuffer_copyout(in, body, len);
        body[len] = '\0';
        if (memchr(body, '\0', len)) {
            free(body);
            return NULL;
        }
        return body;
    }
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(evr));
    char *copy = mem_strdup(query ? query : "");
    return copy;
}

static const struct sockaddr *peer_of(httpd_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(httpd_request_evhttp(req));
    return conn ? evhttp_connection_get_addr(conn) : NULL;
}

static void refuse_peer(httpd_request *req, int status, const char *reason, const char *message)
{
    allow_refused("sms", reason, peer_of(req));
    refuse(req, status, status == 403 ? "forbidden" : "unauthorized", message);
}

/* True when Kannel proved itself (or no proof is asked); else answered. */
static bool peer_ok(const sms *s, httpd_request *req, const sms_mo *mo)
{
    if (!s->opt.secret && s->opt.allow_unsigned)
        return true;
    if (!s->opt.secret)
        refuse_peer(req, 401, "unconfigured", "no [sms] secret is configured");
    else if (!mo->key)
        refuse_peer(req, 401, "secret", "the key parameter is required");
    else if (!sms_wire_key_ok(s->opt.secret, mo->key))
        refuse_peer(req, 401, "secret", "the key does not match");
    else
        return true;
    return false;
}

static void on_request(httpd_request *req, void *arg)
{
    sms *s = arg;
    if (s->allow && !allow_match(s->allow, peer_of(req))) {
        refuse_peer(req, 403, "source", "this source address is not an allowed Kannel");
        return;
    }
    struct evkeyvalq form;
    TAILQ_INIT(&form);
    char *text = form_text(req);
    sms_mo mo;
    sms_refusal why;
    bool parsed = sms_wire_parse(text, s->opt.max_text_bytes, &form, &mo, &why);
    /* The key is checked first: a stranger learns nothing of the form rules. */
    if (peer_ok(s, req, &mo)) {
        if (!parsed) {
            refuse(req, why.status, why.code, why.message);
        } else {
            sms_pending *p = mem_calloc(1, sizeof *p);
            p->owner = s;
            p->req = req;
            snprintf(p->sender, sizeof p->sender, "%s", mo.sender);
            snprintf(p->session, sizeof p->session, "sms:%s", mo.sender);
            p->text = mem_strdup(mo.text);
            LIST_INSERT_HEAD(&s->pending, p, link);
            if (is_keyword(s, mo.text))
                start_hop(p);
            else
                run_hop(p, ENGINE_EV_INPUT);
        }
    }
    evhttp_clear_headers(&form);
    free(text);
}

/* Lifecycle -------------------------------------------------------------------*/

sms *sms_new(engine *e, httpd *h, const sms_options *opt)
{
    char why[160];
    const char *problem = handlers_start_limit_problem(opt->starts_per_number, opt->number_window_s, why, sizeof why);
    if (problem == NULL)
        problem = conf_section_problem(&sms_config, opt, why, sizeof why);
    if (problem) {
        log_error("sms.option_invalid", "why=%s", log_quote(problem).s);
        return NULL;
    }
    allow_list *allow = NULL;
    if (opt->allow_from && !(allow = allow_parse(opt->allow_from, why, sizeof why))) {
        log_error("sms.option_invalid", "allow_from=%s", log_quote(why).s);
        return NULL;
    }
    sms *s = mem_calloc(1, sizeof *s);
    s->engine = e;
    s->opt = *opt;
    s->allow = allow;
    s->opt.allow_from = NULL;
    s->opt.secret = opt->secret ? mem_strdup(opt->secret) : NULL;
    if (!s->opt.secret && s->opt.allow_unsigned)
        log_warn("sms.unsigned", "why=%s",
                 log_quote("[sms] secret unset and allow_unsigned = 1: Kannel is not authenticated").s);
    else if (!s->opt.secret)
        log_warn("sms.closed", "why=%s", log_quote("[sms] secret unset: every request is refused").s);
    if (httpd_route(h, SMS_PATH, EVHTTP_REQ_GET | EVHTTP_REQ_POST, on_request, s) != 0) {
        log_error("sms.route_failed", "path=%s", SMS_PATH);
        sms_free(s);
        return NULL;
    }
    return s;
}

void sms_free(sms *s)
{
    if (!s)
        return;
    sms_pending *p;
    LIST_FOREACH(p, &s->pending, link) {
        p->owner = NULL;
        httpd_reply_error(p->req, 503, "shutting_down", "the gateway is stopping");
    }
    allow_free(s->allow);
    if (s->opt.secret) {
        explicit_bzero((char *)s->opt.secret, strlen(s->opt.secret));
        free((char *)s->opt.secret);
    }
    free(s);
}
