/* sms_out — owns the sendsms requests in flight (one per open "sms"
 * attempt), the message records `cl:m:{id}` and the DLR route. Kannel's
 * answers decide each attempt: 2xx done, 400/401/403 a configuration
 * error (given up, logged as an error), anything else or no answer retry
 * later. Message records are written without waiting: they report, they
 * never decide delivery.
 *
 * Each attempt draws a report token (RAND_bytes) that goes into its
 * dlr-url and into the record's `dlr_token`; a report is recorded only
 * when its token matches (CRYPTO_memcmp), and an unknown id gets the very
 * answer a wrong token gets, so the route tells a guesser nothing. */
#include "sms_out.h"

#include "allow.h"
#include "httpc.h"
#include "httpd.h"
#include "log.h"
#include "mask.h"
#include "mem.h"
#include "walltime.h"
#include "outbox.h"
#include "pending.h"
#include "store.h"

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SO_KEY_PREFIX "cl:m:"
#define SO_MAX_ID 48
#define SO_MAX_URL 256
#define SO_MAX_CRED 64
#define SO_TOKEN_BYTES 16

/* Records a delivery report unless the message is unknown (0) or already
 * has its final state (delivered, failed: 2): the first final report
 * stands, with its status and time. KEYS: the message. ARGV: state, dlr
 * status, dlr ts, now. */
static const char dlr_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "local cur = redis.call('HGET', KEYS[1], 'state')\n"
    "if cur == 'delivered' or cur == 'failed' then return 2 end\n"
    "redis.call('HSET', KEYS[1], 'state', ARGV[1], 'dlr_status', ARGV[2], 'dlr_ts', ARGV[3], 'updated', ARGV[4])\n"
    "return 1\n";

/* Records our side's state: "sent" and "queued" never replace what a
 * delivery report said (a report may overtake Kannel's answer to us), and
 * nothing replaces a final state. KEYS: the message. ARGV: state, now,
 * last error, ttl. */
static const char state_script[] =
    "local cur = redis.call('HGET', KEYS[1], 'state')\n"
    "local ours = {queued = true, sent = true}\n"
    "if cur == false or cur == 'queued' or (cur == 'sent' and ARGV[1] ~= 'queued')\n"
    "   or (ARGV[1] == 'failed' and ours[cur]) then\n"
    "  redis.call('HSET', KEYS[1], 'state', ARGV[1])\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'updated', ARGV[2], 'last_error', ARGV[3])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "return 1\n";

typedef struct so_send so_send;
typedef struct so_dlr so_dlr;

struct so_send {
    sms_out *so;              /* owner */
    outbox_attempt *attempt;  /* the attempt this request decides */
    masked to;                /* the number, masked, for logs */
};

struct sms_out {
    struct event_base *base;  /* the main loop */
    store *st;                /* message records */
    outbox *ob;               /* where "sms" entries come from */
    httpc *http;              /* sendsms requests */
    sms_out_options opt;      /* copy; strings owned */
    pending_set dlrs;         /* reports waiting for Redis, oldest first */
};

/* Small helpers -------------------------------------------------------------*/

static bool valid_number(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    size_t start = len && n[0] == '+' ? 1 : 0;
    return len > start && len <= SMS_OUT_MAX_NUMBER &&
           strspn(n + start, "0123456789") == len - start;
}

static bool valid_entry_id(const char *id)
{
    size_t len = id ? strlen(id) : 0;
    const char *dash = id ? strchr(id, '-') : NULL;
    return len > 2 && len < SO_MAX_ID && dash && dash != id && dash[1] != '\0' &&
           strspn(id, "0123456789") == (size_t)(dash - id) &&
           strspn(dash + 1, "0123456789") == strlen(dash + 1);
}

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

static void record_written(store_status st, const struct redisReply *r, void *arg)
{
    (void)arg;
    if (st != STORE_OK || r->type == REDIS_REPLY_ERROR)
        log_warn("sms_out.record_failed", "status=%s", store_status_name(st));
}

/* HSET cl:m:ID with up to 6 field/value pairs, then EXPIRE. */
static void record(sms_out *so, const char *id, int npairs, const char **pairs)
{
    char key[sizeof SO_KEY_PREFIX + SO_MAX_ID], ttl[16];
    snprintf(key, sizeof key, "%s%s", SO_KEY_PREFIX, id);
    snprintf(ttl, sizeof ttl, "%d", so->opt.message_ttl_s);
    const char *argv[2 + 12];
    argv[0] = "HSET", argv[1] = key;
    for (int i = 0; i < 2 * npairs; i++)
        argv[2 + i] = pairs[i];
    store_command(so->st, 2 + 2 * npairs, argv, NULL, record_written, NULL);
    const char *expire[] = {"EXPIRE", key, ttl};
    store_command(so->st, 3, expire, NULL, record_written, NULL);
}

static void record_state(sms_out *so, const char *id, const char *state, const char *error)
{
    char key[sizeof SO_KEY_PREFIX + SO_MAX_ID], now[24], ttl[16];
    snprintf(key, sizeof key, "%s%s", SO_KEY_PREFIX, id);
    snprintf(now, sizeof now, "%lld", (long long)(walltime_ms() / 1000));
    snprintf(ttl, sizeof ttl, "%d", so->opt.message_ttl_s);
    const char *argv[] = {"EVAL", state_script, "1", key, state, now, error ? error : "", ttl};
    store_command(so->st, 8, argv, NULL, record_written, NULL);
}

/* Delivering ----------------------------------------------------------------*/

/* A report token: SO_TOKEN_BYTES from the CSPRNG, in hex. */
static bool draw_token(char out[SMS_OUT_TOKEN_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[SO_TOKEN_BYTES];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return false;
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[SMS_OUT_TOKEN_LEN] = '\0';
    return true;
}

/* Appends `name=escaped(value)` to the URL being built. */
static bool add_param(char *url, size_t cap, const char *name, const char *value)
{
    char *esc = curl_easy_escape(NULL, value, (int)strlen(value));
    if (esc == NULL)
        return false;
    size_t len = strlen(url);
    int n = snprintf(url + len, cap - len, "%s%s=%s", strchr(url, '?') ? "&" : "?", name, esc);
    curl_free(esc);
    return n >= 0 && (size_t)n < cap - len;
}

static bool build_url(const sms_out *so, const char *id, const char *token, const char *to,
                      const char *text, char *url, size_t cap)
{
    const sms_out_options *o = &so->opt;
    snprintf(url, cap, "%s", o->sendsms_url);
    bool ok = add_param(url, cap, "username", o->username) &&
              add_param(url, cap, "password", o->password) &&
              add_param(url, cap, "from", o->from) && add_param(url, cap, "to", to) &&
              add_param(url, cap, "text", text) && add_param(url, cap, "charset", "UTF-8");
    if (ok && !is_ascii(text))
        ok = add_param(url, cap, "coding", "2");
    if (ok && o->dlr_url && id) {
        /* Kannel fills %d (the report type) and %T (its time) itself. */
        char dlr[SO_MAX_URL + SO_MAX_ID + SMS_OUT_TOKEN_LEN + 48];
        snprintf(dlr, sizeof dlr, "%s?id=%s&token=%s&status=%%d&ts=%%T", o->dlr_url, id, token);
        ok = add_param(url, cap, "dlr-mask", "31") && add_param(url, cap, "dlr-url", dlr);
    }
    return ok;
}

/* A direct send (a one-time code) has no entry and no record: the outcome
 * is logged, and a caller who got nothing asks for a new code. */
static void sent_now(const httpc_response *res, void *arg)
{
    so_send *q = arg;
    long http = res->http_status;
    if (res->status == HTTPC_OK && http >= 200 && http < 300)
        log_info("sms_out.sent_now", "to=%s http=%ld", q->to.s, http);
    else
        log_warn("sms_out.send_now_failed", "to=%s http=%ld error=%s", q->to.s, http,
                 log_quote(res->error ? res->error : "kannel_http_error").s);
    free(q);
}

bool sms_out_send_now(sms_out *so, const char *to, const char *text)
{
    if (!so || !valid_number(to) || !text || !*text || strlen(text) > SMS_OUT_MAX_TEXT)
        return false;
    size_t cap = 4 * SMS_OUT_MAX_TEXT + 2048;
    char *url = mem_calloc(1, cap);
    bool built = build_url(so, NULL, NULL, to, text, url, cap);
    if (built) {
        so_send *q = mem_calloc(1, sizeof *q);
        q->so = so;
        q->to = mask_phone(to);
        httpc_request req = {
            .method = "GET",
            .url = url,
            .timeout_ms = so->opt.timeout_ms,
            .connect_timeout_ms = so->opt.timeout_ms,
        };
        httpc_send(so->http, &req, sent_now, q);
    }
    explicit_bzero(url, cap);
    free(url);
    return built;
}

static void sendsms_done(const httpc_response *res, void *arg)
{
    so_send *q = arg;
    sms_out *so = q->so;
    outbox_attempt *a = q->attempt;
    const char *id = outbox_attempt_id(a);
    long http = res->http_status;
    if (res->status == HTTPC_OK && http >= 200 && http < 300) {
        record_state(so, id, "sent", NULL);
        log_info("sms_out.sent", "entry=%s to=%s http=%ld", id, q->to.s, http);
        outbox_finish(a, OUTBOX_DONE, NULL);
    } else if (res->status == HTTPC_OK && (http == 400 || http == 401 || http == 403)) {
        /* Kannel refuses our credentials or parameters: no retry fixes that. */
        record_state(so, id, "failed", "kannel_refused");
        log_error("sms_out.refused_by_kannel", "entry=%s to=%s http=%ld hint=%s", id, q->to.s,
                  http, log_quote("check [kannel] username, password and from").s);
        outbox_finish(a, OUTBOX_GIVE_UP, "kannel_refused");
    } else {
        const char *why = res->status == HTTPC_OK ? "kannel_http_error" : "kannel_unreachable";
        record_state(so, id, "queued", why);
        log_warn("sms_out.retry", "entry=%s to=%s http=%ld error=%s", id, q->to.s, http,
                 log_quote(res->error ? res->error : why).s);
        outbox_finish(a, OUTBOX_RETRY, why);
    }
    free(q);
}

static void deliver_sms(outbox_attempt *a, void *arg)
{
    sms_out *so = arg;
    json_t *p = outbox_attempt_payload(a);
    const char *id = outbox_attempt_id(a);
    const char *to = json_string_value(json_object_get(p, "to"));
    const char *text = json_string_value(json_object_get(p, "text"));
    const char *ref = json_string_value(json_object_get(p, "ref"));
    if (!valid_number(to) || text == NULL || text[0] == '\0' ||
        strlen(text) > SMS_OUT_MAX_TEXT || (ref && strlen(ref) > 64)) {
        log_error("sms_out.bad_payload", "entry=%s", id);
        outbox_finish(a, OUTBOX_GIVE_UP, "bad_payload");
        return;
    }
    char attempts[16], now[24], token[SMS_OUT_TOKEN_LEN + 1];
    snprintf(attempts, sizeof attempts, "%d", outbox_attempt_number(a));
    snprintf(now, sizeof now, "%lld", (long long)(walltime_ms() / 1000));
    if (!draw_token(token)) {
        outbox_finish(a, OUTBOX_RETRY, "random");
        return;
    }
    /* Written before the sendsms request on the same connection: Redis
     * has the token before Kannel can call back with it. */
    const char *pairs[] = {"to", to, "ref", ref ? ref : "", "attempts", attempts,
                           "updated", now, "dlr_token", token};
    record(so, id, 5, pairs);
    if (outbox_attempt_number(a) == 1) {
        const char *first[] = {"created", now};
        record(so, id, 1, first);
        record_state(so, id, "queued", NULL);
    }

    size_t cap = 4 * SMS_OUT_MAX_TEXT + 2048;
    char *url = calloc(1, cap);
    if (url == NULL || !build_url(so, id, token, to, text, url, cap)) {
        free(url);
        outbox_finish(a, OUTBOX_RETRY, "url");
        return;
    }
    so_send *q = mem_calloc(1, sizeof *q);
    q->so = so;
    q->attempt = a;
    q->to = mask_phone(to);
    httpc_request req = {
        .method = "GET",
        .url = url,
        .timeout_ms = so->opt.timeout_ms,
        .connect_timeout_ms = so->opt.timeout_ms,
    };
    httpc_send(so->http, &req, sendsms_done, q);
    explicit_bzero(url, cap); /* it held the text, maybe a one-time code */
    free(url);
}

/* Delivery reports ----------------------------------------------------------*/

struct so_dlr {
    sms_out *so;             /* owner; NULL once sms_out_free ran (no reply then) */
    pending_op op;           /* in the owner's waiting reports until answered */
    httpd_request *req;      /* the report's HTTP request, answered when Redis is */
    sms_out_dlr report;      /* what Kannel reported */
};

static const char *state_for_dlr(long status)
{
    switch (status) {
    case 1: return "delivered";
    case 2: return "failed";
    case 4: return "buffered";
    case 8: return "smsc_accepted";
    case 16: return "smsc_rejected";
    }
    return NULL;
}

static bool parse_long(const char *s, long *out)
{
    if (s == NULL || *s == '\0' || strlen(s) > 12 || strspn(s, "0123456789") != strlen(s))
        return false;
    *out = strtol(s, NULL, 10);
    return true;
}

const char *sms_out_dlr_parse(const char *query, sms_out_dlr *out)
{
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    *out = (sms_out_dlr){0};
    if (query == NULL || evhttp_parse_query_str(query, &params) != 0) {
        evhttp_clear_headers(&params);
        return "id and status are required";
    }
    const char *id = evhttp_find_header(&params, "id");
    const char *ts = evhttp_find_header(&params, "ts");
    const char *token = evhttp_find_header(&params, "token");
    const char *why = NULL;
    if (!valid_entry_id(id) || !parse_long(evhttp_find_header(&params, "status"), &out->status) ||
        (out->state = state_for_dlr(out->status)) == NULL || (ts && *ts && !parse_long(ts, &out->ts)))
        why = "id, status or ts is malformed";
    else if (token && strlen(token) <= SMS_OUT_TOKEN_LEN)
        snprintf(out->token, sizeof out->token, "%s", token);
    if (!why)
        snprintf(out->id, sizeof out->id, "%s", id);
    evhttp_clear_headers(&params);
    return why;
}

/* pending's completion: the report was answered, or dropped. */
static void dlr_completed(pending_op *op, int status)
{
    (void)status;
    free(pending_owner(op, so_dlr, op));
}

static void dlr_end(so_dlr *d)
{
    pending_complete(&d->op, 0);
}

/* The one answer to a report without a valid token, known id or not. */
static void dlr_refuse(so_dlr *d)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(httpd_request_evhttp(d->req));
    allow_refused("dlr", "token", conn ? evhttp_connection_get_addr(conn) : NULL);
    httpd_reply_error(d->req, 401, "unauthorized", "the report's id and token do not name a message");
    dlr_end(d);
}

static void dlr_recorded(store_status st, const struct redisReply *r, void *arg)
{
    so_dlr *d = arg;
    if (d->so == NULL) {
        dlr_end(d);
        return;
    }
    if (st != STORE_OK || r->type != REDIS_REPLY_INTEGER) {
        httpd_reply_error(d->req, 503, "unavailable", "the message store is unavailable");
    } else if (r->integer == 0) {
        dlr_refuse(d);  /* expired between the token check and now */
        return;
    } else {
        log_info("sms_out.dlr", "entry=%s status=%s recorded=%d", d->report.id, d->report.state,
                 r->integer == 1);
        httpd_reply_json(d->req, 200, json_pack("{s:b}", "recorded", r->integer == 1));
    }
    dlr_end(d);
}

static void dlr_token_read(store_status st, const struct redisReply *r, void *arg)
{
    so_dlr *d = arg;
    if (d->so == NULL) {
        dlr_end(d);
        return;
    }
    if (st != STORE_OK || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
        httpd_reply_error(d->req, 503, "unavailable", "the message store is unavailable");
        dlr_end(d);
        return;
    }
    bool match = r->type == REDIS_REPLY_STRING && r->len == SMS_OUT_TOKEN_LEN &&
                 strlen(d->report.token) == SMS_OUT_TOKEN_LEN &&
                 CRYPTO_memcmp(r->str, d->report.token, SMS_OUT_TOKEN_LEN) == 0;
    if (!match) {
        dlr_refuse(d);
        return;
    }
    char key[sizeof SO_KEY_PREFIX + SO_MAX_ID], code[16], stamp[24], now[24];
    snprintf(key, sizeof key, "%s%s", SO_KEY_PREFIX, d->report.id);
    snprintf(code, sizeof code, "%ld", d->report.status);
    snprintf(stamp, sizeof stamp, "%ld", d->report.ts);
    snprintf(now, sizeof now, "%lld", (long long)(walltime_ms() / 1000));
    const char *argv[] = {"EVAL", dlr_script, "1", key, d->report.state, code, stamp, now};
    store_command(d->so->st, 8, argv, NULL, dlr_recorded, d);
}

static void serve_dlr(httpd_request *req, void *arg)
{
    sms_out *so = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(httpd_request_evhttp(req));
    so_dlr *d = mem_calloc(1, sizeof *d);
    const char *why = sms_out_dlr_parse(uri ? evhttp_uri_get_query(uri) : NULL, &d->report);
    if (why) {
        free(d);
        httpd_reply_error(req, 400, "bad_request", why);
        return;
    }
    d->so = so;
    d->req = req;
    pending_start(&so->dlrs, &d->op, dlr_completed);
    char key[sizeof SO_KEY_PREFIX + SO_MAX_ID];
    snprintf(key, sizeof key, "%s%s", SO_KEY_PREFIX, d->report.id);
    const char *argv[] = {"HGET", key, "dlr_token"};
    store_command(so->st, 3, argv, NULL, dlr_token_read, d);
}

int sms_out_dlr_route(sms_out *so, httpd *h)
{
    return httpd_route(h, "/sms/dlr", EVHTTP_REQ_GET, serve_dlr, so);
}

/* Lifecycle -----------------------------------------------------------------*/

static const conf_key sms_out_conf_keys[] = {
    CONF_KEY(sms_out_options, "sendsms_url", CONF_URL, sendsms_url, "http://127.0.0.1:13013/cgi-bin/sendsms"),
    CONF_KEY(sms_out_options, "username", CONF_STRING, username, ""),
    CONF_KEY(sms_out_options, "password", CONF_STRING, password, ""),
    CONF_KEY(sms_out_options, "from", CONF_STRING, from, "cardline"),
    CONF_KEY(sms_out_options, "dlr_url", CONF_STRING, dlr_url, ""),
    CONF_KEY_INT(sms_out_options, "timeout_ms", timeout_ms, 100, 60000, "5000"),
    CONF_KEY_INT(sms_out_options, "message_ttl_s", message_ttl_s, 60, STORE_MAX_TTL_S, "2592000"),
};
const conf_section sms_out_config = CONF_SECTION("kannel", sms_out_conf_keys);

void sms_out_options_default(sms_out_options *opt)
{
    memset(opt, 0, sizeof *opt);
    conf_section_defaults(&sms_out_config, opt);
}

static bool url_ok(const char *u)
{
    size_t n = u ? strlen(u) : 0;
    return n > 7 && n <= SO_MAX_URL && strncmp(u, "http", 4) == 0 && strstr(u, "://") &&
           !strpbrk(u, " ?#\r\n");
}

static const char *options_problem(const sms_out_options *o, char *buf, size_t size)
{
    if (!url_ok(o->sendsms_url))
        return "sendsms_url must be an http(s) URL without query, at most 256";
    if (o->dlr_url && !url_ok(o->dlr_url))
        return "dlr_url must be an http(s) URL without query, at most 256";
    if (!o->username || !o->password || strlen(o->username) > SO_MAX_CRED ||
        strlen(o->password) > SO_MAX_CRED)
        return "username and password must be set, at most 64";
    if (!o->from || !*o->from || strlen(o->from) > SMS_OUT_MAX_NUMBER)
        return "from must be 1-20 characters";
    return conf_section_problem(&sms_out_config, o, buf, size);
}

static char *dup(const char *s)
{
    char *d = s ? mem_strdup(s) : NULL;
    return d;
}

static void release(sms_out *so)
{
    /* Reports still waiting for Redis end without a reply: the listener
     * is being drained or freed. */
    while (!TAILQ_EMPTY(&so->dlrs.ops)) {
        so_dlr *d = pending_owner(TAILQ_FIRST(&so->dlrs.ops), so_dlr, op);
        d->so = NULL;
        pending_detach(&d->op);
    }
    httpc_free(so->http);
    free((char *)so->opt.sendsms_url);
    free((char *)so->opt.username);
    if (so->opt.password) {
        explicit_bzero((char *)so->opt.password, strlen(so->opt.password));
        free((char *)so->opt.password);
    }
    free((char *)so->opt.from);
    free((char *)so->opt.dlr_url);
    free(so);
}

sms_out *sms_out_new(struct event_base *base, store *st, outbox *ob, const sms_out_options *opt)
{
    char buf[96];
    const char *problem = options_problem(opt, buf, sizeof buf);
    if (problem) {
        log_error("sms_out.config", "problem=%s", log_quote(problem).s);
        return NULL;
    }
    sms_out *so = calloc(1, sizeof *so);
    if (so == NULL)
        return NULL;
    so->base = base;
    so->st = st;
    so->ob = ob;
    pending_set_init(&so->dlrs, base);
    so->opt = *opt;
    so->opt.sendsms_url = dup(opt->sendsms_url);
    so->opt.username = dup(opt->username);
    so->opt.password = dup(opt->password);
    so->opt.from = dup(opt->from);
    so->opt.dlr_url = dup(opt->dlr_url);
    httpc_options hopt;
    httpc_options_default(&hopt);
    hopt.max_connections = 8;
    hopt.max_response_bytes = 4096;
    so->http = httpc_new(base, &hopt);
    if (so->http == NULL || outbox_register(ob, "sms", OUTBOX_LIMIT_ATTEMPTS_AND_AGE, deliver_sms, so) != 0) {
        log_error("sms_out.config", "problem=%s", log_quote("http client or outbox kind").s);
        release(so);
        return NULL;
    }
    return so;
}

void sms_out_free(sms_out *so)
{
    if (so)
        release(so);
}
