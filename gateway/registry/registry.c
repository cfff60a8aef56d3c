/* registry — the card registry client, on the asynchronous HTTP client.
 *
 * Owns every request from registry_request until its callback has run: the
 * contract's checks, headers, the read-retry policy, the mapping of HTTP
 * answers to registry_status, one log line and the metrics per request.
 * Transfers themselves (libcurl multi on the loop, deadlines, the response
 * cap) are httpc's. Request bodies are serialized straight into a buffer of
 * our own and wiped as soon as httpc has copied them (httpc wipes its copy
 * when the transfer ends); bodies are never logged. */
#include "registry.h"

#include "httpc.h"
#include "log.h"
#include "mask.h"
#include "mem.h"
#include "metrics.h"
#include "monotime.h"
#include "pending.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define REGISTRY_MAX_RESPONSE (1024 * 1024) /* a longer response is BAD_RESPONSE */
#define REGISTRY_MAX_BODY (16 * 1024)       /* the contract's request body cap */
#define REGISTRY_MAX_PATH 1024              /* path plus query, escaped */
#define REGISTRY_MAX_BASE_URL 256
#define REGISTRY_MAX_TOKEN 512
#define REGISTRY_MAX_NUMBER 32              /* an ssn or card number path segment */
#define REGISTRY_MAX_REPORT_ID 64
#define REGISTRY_MAX_PAGE_TOKEN 256
#define REGISTRY_MAX_PIN 16                 /* the registry judges the format */
#define REGISTRY_MAX_KEY 64                 /* Idempotency-Key, per the contract */
#define REGISTRY_RETRY_DELAY_MS 50          /* pause before a read is tried again */
#define REGISTRY_HEALTH_PATH "/v1/health"

/* A request is in exactly one phase until it completes. */
typedef enum {
    REQ_REFUSED,     /* refused before sending; completes on a later turn */
    REQ_TRANSFER,    /* an httpc request is in flight for it */
    REQ_RETRY_WAIT   /* a read waiting on `ev` to be tried again */
} req_phase;

typedef struct registry_req registry_req;

struct registry_req {
    registry *reg;                  /* owner */
    pending_op op;                  /* in the owner's unfinished requests */
    req_phase phase;                /* what is going on for it now */
    struct event *ev;               /* the retry pause */
    char *url;                      /* base URL + path, kept for a read's retry */
    char *body;                     /* serialized request body, wiped once sent */
    size_t body_len;                /* its length */
    bool is_read;                   /* a GET: may be tried again after UNAVAILABLE */
    int attempts;                   /* transfers started so far */
    long end_http;                  /* completing: the HTTP status, 0 if none */
    json_t *end_body;               /* completing: the body (owned), or NULL */
    const char *end_cause;          /* completing: static text for the log line */
    char method[8];                 /* GET, POST, PATCH or DELETE */
    char log_path[256];             /* the path with IDs masked and no query */
    char request_id[40];            /* X-Request-Id sent and logged */
    monotime started;               /* when the caller asked */
    registry_cb *cb;                /* the caller's callback */
    void *arg;                      /* and its argument */
};

struct registry {
    struct event_base *base;        /* the main loop */
    httpc *http;                    /* the transfers */
    registry_options opt;           /* options, strings owned (copied) */
    pending_set reqs;               /* unfinished requests, oldest first */
    int in_flight;                  /* accepted requests not yet complete */
    bool closing;                   /* registry_free has started */
    uint32_t id_tag;                /* random per instance, part of request ids */
    uint64_t id_seq;                /* request counter, part of request ids */
    metrics_series *m_result[REGISTRY_BAD_RESPONSE + 1]; /* requests by result */
    metrics_series *m_seconds_sum;  /* total request time */
    metrics_series *m_seconds_count;/* requests timed */
    metrics_series *m_connects;     /* new connections opened */
};

static const char *status_names[] = {
    "ok", "not_found", "conflict", "rejected", "locked", "unavailable", "bad_response",
};

/* A count is a JSON integer within 0..REGISTRY_COUNT_MAX. */
static int pin_count(const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return REGISTRY_COUNT_ABSENT;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > REGISTRY_COUNT_MAX)
        return REGISTRY_COUNT_BAD;
    return (int)json_integer_value(v);
}

int registry_pin_remaining(const json_t *body)
{
    if (!json_is_object(body))
        return REGISTRY_COUNT_ABSENT;
    const json_t *error = json_object_get(body, "error");
    if (json_is_object(error))
        body = error;
    const json_t *pin = json_object_get(body, "pin");
    if (pin != NULL && !json_is_null(pin))
        return json_is_object(pin) ? pin_count(json_object_get(pin, "remaining_attempts"))
                                   : REGISTRY_COUNT_BAD;
    return pin_count(json_object_get(body, "remaining_attempts"));
}

const char *registry_status_name(registry_status st)
{
    if (st < REGISTRY_OK || st > REGISTRY_BAD_RESPONSE)
        return "unknown";
    return status_names[st];
}

static const conf_key registry_conf_keys[] = {
    CONF_KEY(registry_options, "url", CONF_URL, base_url, "http://127.0.0.1:8090"),
    CONF_KEY(registry_options, "token", CONF_STRING, token, ""),
    CONF_KEY(registry_options, "ca_file", CONF_PATH, ca_file, ""),
    CONF_KEY(registry_options, "cert_file", CONF_PATH, cert_file, ""),
    CONF_KEY(registry_options, "key_file", CONF_PATH, key_file, ""),
    CONF_KEY_INT(registry_options, "timeout_ms", timeout_ms, 1, 600000, "2000"),
    CONF_KEY_INT(registry_options, "connect_timeout_ms", connect_timeout_ms, 1, 600000, "500"),
    CONF_KEY_INT(registry_options, "max_connections", max_connections, 1, 1024, "32"),
    CONF_KEY_INT(registry_options, "max_pending", max_pending, 1, 1000000, "10000"),
    CONF_KEY_INT(registry_options, "read_retries", read_retries, 0, 5, "1"),
    CONF_KEY_INT(registry_options, "health_interval_ms", health_interval_ms, 10, 3600000, "5000"),
};
/* The connect deadline is part of the whole request's. */
static const conf_order registry_conf_orders[] = {{"connect_timeout_ms", "timeout_ms", NULL}};

const conf_section registry_config = CONF_SECTION_ORDERED("registry", registry_conf_keys, registry_conf_orders);

void registry_options_default(registry_options *opt)
{
    memset(opt, 0, sizeof *opt);
    conf_section_defaults(&registry_config, opt);
}

/* Small helpers -------------------------------------------------------------*/

static bool is_write_method(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PATCH") == 0 || strcmp(m, "DELETE") == 0;
}

static bool method_known(const char *m)
{
    return m && (strcmp(m, "GET") == 0 || is_write_method(m));
}

static bool key_valid(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n == 0 || n > REGISTRY_MAX_KEY)
        return false;
    return strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") == n;
}

/* A path we send as given: /v1 then URL-safe characters, no dot segments
 * (curl would squash them and reach a different resource). */
static bool path_valid(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    if (n == 0 || n >= REGISTRY_MAX_PATH || strncmp(path, "/v1", 3) != 0 ||
        (path[3] != '\0' && path[3] != '/' && path[3] != '?'))
        return false;
    if (strspn(path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                     "-._~%/?=&:@+!$'()*,;") != n)
        return false;
    const char *end = path + strcspn(path, "?");
    for (const char *s = path; s < end;) {
        size_t len = strcspn(s + 1, "/?");
        if ((len == 1 || len == 2) && strspn(s + 1, ".") >= len)
            return false;
        s += 1 + len;
    }
    return true;
}

/* The path as it may appear in a log: the segment after `persons` masked as
 * an ID, after `cards` as a card number, the query (page tokens) left out. */
static void path_for_log(const char *path, char *out, size_t cap)
{
    enum { SEG_PLAIN, SEG_ID, SEG_CARD } kind = SEG_PLAIN;
    size_t o = 0;
    out[0] = '\0';
    for (const char *s = path; *s == '/' && o < cap;) {
        char seg[REGISTRY_MAX_PATH];
        size_t len = strcspn(s + 1, "/?");
        memcpy(seg, s + 1, len);
        seg[len] = '\0';
        masked m;
        const char *shown = seg;
        if (kind == SEG_ID) {
            m = mask_id(seg);
            shown = m.s;
        } else if (kind == SEG_CARD) {
            m = mask_card(seg);
            shown = m.s;
        }
        int w = snprintf(out + o, cap - o, "/%s", shown);
        if (w < 0)
            break;
        o += (size_t)w;
        kind = strcmp(seg, "persons") == 0 ? SEG_ID
             : strcmp(seg, "cards") == 0   ? SEG_CARD
                                           : SEG_PLAIN;
        s += 1 + len;
    }
}

/* Request list and completion -----------------------------------------------*/

static void req_wipe_body(registry_req *q)
{
    if (q->body) {
        explicit_bzero(q->body, q->body_len);
        free(q->body);
        q->body = NULL;
        q->body_len = 0;
    }
}

static void req_free(registry_req *q)
{
    req_wipe_body(q);
    free(q->url);
    event_free(q->ev);
    free(q);
}

static log_level outcome_level(registry_status st, const registry_req *q)
{
    if (q->phase == REQ_REFUSED && st == REGISTRY_REJECTED)
        return LOG_ERROR; /* the caller built a request the contract forbids */
    if (st == REGISTRY_UNAVAILABLE || st == REGISTRY_BAD_RESPONSE)
        return LOG_WARN;
    /* /healthz probes every few seconds: a healthy answer is no event (the
     * prober logs the registry going down and coming back). */
    if (st == REGISTRY_OK && strcmp(q->log_path, REGISTRY_HEALTH_PATH) == 0)
        return LOG_DEBUG;
    return LOG_INFO;
}

static void record_outcome(registry *r, const registry_req *q, const registry_result *res,
                           const char *cause)
{
    log_event(outcome_level(res->status, q), "registry.request",
              "method=%s path=%s result=%s http=%ld ms=%.1f attempts=%d request_id=%s%s%s",
              q->method, q->log_path, registry_status_name(res->status), res->http_status,
              res->elapsed_ms, q->attempts, q->request_id, cause ? " error=" : "",
              cause ? log_quote(cause).s : "");
    metrics_inc(r->m_result[res->status]);
    metrics_add(r->m_seconds_sum, res->elapsed_ms / 1000.0);
    metrics_inc(r->m_seconds_count);
}

/* registry_free's status for what is still pending: UNAVAILABLE, "shutdown". */
#define REQ_SHUTDOWN (-1)

/* pending's completion, the only place callbacks are called: one log line,
 * metrics, the callback, then the memory. The body is released after the
 * callback. */
static void req_completed(pending_op *op, int status)
{
    registry_req *q = pending_owner(op, registry_req, op);
    registry *r = q->reg;
    registry_status st = status == REQ_SHUTDOWN ? REGISTRY_UNAVAILABLE : (registry_status)status;
    long http = status == REQ_SHUTDOWN ? 0 : q->end_http;
    json_t *body = status == REQ_SHUTDOWN ? NULL : q->end_body;
    const char *cause = status == REQ_SHUTDOWN ? "shutdown" : q->end_cause;
    registry_result res = {
        .status = st,
        .http_status = http,
        .body = body,
        .elapsed_ms = monotime_ms_since(q->started),
    };
    json_t *err = json_object_get(body, "error");
    res.error_code = json_string_value(json_object_get(err, "code"));
    record_outcome(r, q, &res, res.error_code ? res.error_code : cause);
    if (q->phase != REQ_REFUSED)
        r->in_flight--;
    q->cb(&res, q->arg);
    json_decref(body);
    req_free(q);
}

/* Ends a request now. `body` is owned. */
static void req_complete(registry_req *q, registry_status st, long http, json_t *body,
                         const char *cause)
{
    q->end_http = http;
    q->end_body = body;
    q->end_cause = cause;
    pending_complete(&q->op, (int)st);
}

static void on_retry_due(evutil_socket_t fd, short what, void *arg);

static registry_req *req_new(registry *r, const char *method, registry_cb *cb, void *arg)
{
    registry_req *q = mem_calloc(1, sizeof *q);
    q->reg = r;
    q->cb = cb;
    q->arg = arg;
    q->ev = evtimer_new(r->base, on_retry_due, q);
    if (q->ev == NULL)
        mem_out_of_memory("registry: evtimer_new");
    q->started = monotime_now();
    /* An unknown method is the caller's mistake; it is not echoed. */
    snprintf(q->method, sizeof q->method, "%s", method_known(method) ? method : "?");
    snprintf(q->log_path, sizeof q->log_path, "-");
    snprintf(q->request_id, sizeof q->request_id, "cl-%08x-%llu", (unsigned)r->id_tag,
             (unsigned long long)++r->id_seq);
    pending_start(&r->reqs, &q->op, req_completed);
    return q;
}

/* Completes `q` with `st` on the next turn of the loop: callers never see
 * their callback run inside the call that made the request. */
static void req_refuse(registry_req *q, registry_status st, const char *reason)
{
    q->phase = REQ_REFUSED;
    q->end_cause = reason;
    pending_complete_soon(&q->op, (int)st);
}

/* Transfers ----------------------------------------------------------------*/

static long remaining_ms(const registry_req *q)
{
    return (long)q->reg->opt.timeout_ms - (long)monotime_ms_since(q->started);
}

/* Header lines for one send; `bearer` holds the token and is wiped by the
 * caller once httpc has copied the lines. */
typedef struct {
    char request_id[64];                  /* X-Request-Id */
    char key[REGISTRY_MAX_KEY + 24];      /* Idempotency-Key */
    char bearer[REGISTRY_MAX_TOKEN + 32]; /* Authorization */
    const char *lines[8];                 /* NULL-terminated, for httpc */
} header_set;

static void build_headers(header_set *h, const registry_req *q, const char *key)
{
    const registry_options *o = &q->reg->opt;
    int n = 0;
    h->lines[n++] = "Accept: application/json";
    snprintf(h->request_id, sizeof h->request_id, "X-Request-Id: %s", q->request_id);
    h->lines[n++] = h->request_id;
    if (strcmp(q->method, "GET") != 0) /* else curl would send a form type */
        h->lines[n++] = "Content-Type: application/json";
    if (key) {
        snprintf(h->key, sizeof h->key, "Idempotency-Key: %s", key);
        h->lines[n++] = h->key;
    }
    if (o->token) {
        snprintf(h->bearer, sizeof h->bearer, "Authorization: Bearer %s", o->token);
        h->lines[n++] = h->bearer;
    }
    h->lines[n] = NULL;
}

static void on_transfer_done(const httpc_response *res, void *arg);

/* Hands the request to httpc with the time it has left; the body is wiped
 * at once (httpc holds its own copy until the transfer ends). */
static void req_send(registry_req *q, const char *key, long timeout_ms)
{
    const registry_options *o = &q->reg->opt;
    header_set h;
    build_headers(&h, q, key);
    httpc_request hr = {
        .method = q->method,
        .url = q->url,
        .headers = h.lines,
        .body = q->body,
        .body_len = q->body_len,
        .timeout_ms = (int)timeout_ms,
        .connect_timeout_ms = o->connect_timeout_ms < timeout_ms ? o->connect_timeout_ms
                                                                 : (int)timeout_ms,
        .ca_file = o->ca_file,
        .cert_file = o->cert_file,
        .key_file = o->key_file,
    };
    q->phase = REQ_TRANSFER;
    q->attempts++;
    httpc_send(q->reg->http, &hr, on_transfer_done, q);
    explicit_bzero(h.bearer, sizeof h.bearer);
    req_wipe_body(q);
}

/* Serializes `body` straight into one buffer of ours (json_dumpb has no
 * intermediate copies), so a PIN in it exists in one place we wipe. */
static const char *serialize_body(registry_req *q, json_t *body)
{
    if (body == NULL)
        return NULL;
    if (!json_is_object(body))
        return "body_not_object";
    size_t need = json_dumpb(body, NULL, 0, JSON_COMPACT);
    if (need == 0)
        return "body_not_serializable";
    if (need > REGISTRY_MAX_BODY)
        return "body_too_large";
    q->body = mem_calloc(1, need);
    q->body_len = json_dumpb(body, q->body, need, JSON_COMPACT);
    return q->body_len == need ? NULL : "body_not_serializable";
}

static void req_start(registry_req *q, const char *path, json_t *body, const char *key)
{
    registry *r = q->reg;
    const char *refused = serialize_body(q, body);
    if (refused) {
        req_wipe_body(q);
        req_refuse(q, REGISTRY_REJECTED, refused);
        return;
    }
    if (r->closing || r->in_flight >= r->opt.max_pending) {
        req_wipe_body(q);
        req_refuse(q, REGISTRY_UNAVAILABLE, r->closing ? "closing" : "too_many_pending");
        return;
    }
    size_t url_len = strlen(r->opt.base_url) + strlen(path) + 1;
    q->url = mem_calloc(1, url_len);
    snprintf(q->url, url_len, "%s%s", r->opt.base_url, path);
    r->in_flight++;
    req_send(q, key, r->opt.timeout_ms);
}

static void req_retry_now(registry_req *q)
{
    long left = remaining_ms(q);
    if (left <= 0) {
        req_complete(q, REGISTRY_UNAVAILABLE, 0, NULL, "retry_failed");
        return;
    }
    req_send(q, NULL, left);
}

static void on_retry_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    req_retry_now(arg);
}

static registry_status status_for_http(long code)
{
    if (code >= 200 && code < 300)
        return REGISTRY_OK;
    switch (code) {
    case 404:
        return REGISTRY_NOT_FOUND;
    case 409:
        return REGISTRY_CONFLICT;
    case 400:
    case 401:
    case 403:
    case 413:
    case 422:
        return REGISTRY_REJECTED;
    case 423:
        return REGISTRY_LOCKED;
    case 429:
        return REGISTRY_UNAVAILABLE;
    default:
        return code >= 500 && code < 600 ? REGISTRY_UNAVAILABLE : REGISTRY_BAD_RESPONSE;
    }
}

/* The response body when it is a JSON object, else NULL. */
static json_t *parse_object(const httpc_response *res)
{
    if (res->body_len == 0)
        return NULL;
    json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A read that ended UNAVAILABLE (refused, dropped, 5xx, 429, connect
 * timeout) is tried again while the request's deadline leaves time after the
 * pause. timeout_ms bounds the whole request, retries included, so one that
 * ran into its deadline has none left and is not repeated. */
static bool should_retry(const registry_req *q, registry_status st)
{
    return q->is_read && st == REGISTRY_UNAVAILABLE && !q->reg->closing &&
           q->attempts <= q->reg->opt.read_retries &&
           remaining_ms(q) > REGISTRY_RETRY_DELAY_MS;
}

static void on_transfer_done(const httpc_response *res, void *arg)
{
    registry_req *q = arg;
    registry *r = q->reg;
    metrics_add(r->m_connects, (double)res->connects);

    registry_status st;
    json_t *body = NULL;
    const char *cause = NULL;
    long http = res->http_status;
    switch (res->status) {
    case HTTPC_OK:
        st = status_for_http(http);
        body = parse_object(res);
        if (st == REGISTRY_OK && body == NULL) {
            st = REGISTRY_BAD_RESPONSE;
            cause = "body_not_json_object";
        } else if (st == REGISTRY_BAD_RESPONSE) {
            cause = "unexpected_status";
        }
        break;
    case HTTPC_TOO_LARGE:
        st = REGISTRY_BAD_RESPONSE;
        cause = res->error;
        break;
    default:
        st = REGISTRY_UNAVAILABLE;
        cause = res->error;
        break;
    }

    if (should_retry(q, st)) {
        const struct timeval pause = {0, REGISTRY_RETRY_DELAY_MS * 1000};
        json_decref(body);
        log_info("registry.retry", "method=%s path=%s attempt=%d request_id=%s http=%ld",
                 q->method, q->log_path, q->attempts, q->request_id, http);
        q->phase = REQ_RETRY_WAIT;
        evtimer_add(q->ev, &pause);
        return;
    }
    req_complete(q, st, http, body, cause);
}

/* Lifecycle -----------------------------------------------------------------*/

static const char *options_problem(const registry_options *o, char *buf, size_t size)
{
    size_t url_len = o->base_url ? strlen(o->base_url) : 0;
    if (url_len == 0 || url_len > REGISTRY_MAX_BASE_URL ||
        (strncmp(o->base_url, "http://", 7) != 0 && strncmp(o->base_url, "https://", 8) != 0))
        return "base_url must be http:// or https://, at most 256 characters";
    if (strpbrk(o->base_url, " \r\n\t?#"))
        return "base_url holds a space, query or fragment";
    if (o->token && (strlen(o->token) == 0 || strlen(o->token) > REGISTRY_MAX_TOKEN ||
                     strpbrk(o->token, "\r\n")))
        return "token must be 1-512 characters on one line";
    return conf_section_problem(&registry_config, o, buf, size);
}

static char *dup_or_null(const char *s)
{
    if (s == NULL)
        return NULL;
    return mem_strdup(s);
}

static void register_metrics(registry *r)
{
    static const char *help = "Registry requests by final result";
    for (int st = REGISTRY_OK; st <= REGISTRY_BAD_RESPONSE; st++) {
        char labels[40];
        snprintf(labels, sizeof labels, "result=\"%s\"", status_names[st]);
        r->m_result[st] = metrics_counter("cardline_registry_requests_total", help, labels);
    }
    r->m_seconds_sum = metrics_counter("cardline_registry_request_seconds_sum",
                                       "Total time of registry requests, retries included", NULL);
    r->m_seconds_count = metrics_counter("cardline_registry_request_seconds_count",
                                         "Registry requests timed", NULL);
    r->m_connects = metrics_counter("cardline_registry_connections_total",
                                    "Connections opened to the registry", NULL);
}

static void free_options(registry_options *o)
{
    free((char *)o->base_url);
    if (o->token) {
        explicit_bzero((char *)o->token, strlen(o->token));
        free((char *)o->token);
    }
    free((char *)o->ca_file);
    free((char *)o->cert_file);
    free((char *)o->key_file);
}

registry *registry_new(struct event_base *base, const registry_options *opt)
{
    char buf[96];
    const char *problem = options_problem(opt, buf, sizeof buf);
    if (problem) {
        log_error("registry.config", "problem=%s", log_quote(problem).s);
        return NULL;
    }
    registry *r = mem_calloc(1, sizeof *r);
    pending_set_init(&r->reqs, base);
    r->base = base;
    r->opt = *opt;
    r->opt.base_url = dup_or_null(opt->base_url);
    r->opt.token = dup_or_null(opt->token);
    r->opt.ca_file = dup_or_null(opt->ca_file);
    r->opt.cert_file = dup_or_null(opt->cert_file);
    r->opt.key_file = dup_or_null(opt->key_file);
    size_t url_len = strlen(r->opt.base_url);
    if (r->opt.base_url[url_len - 1] == '/')
        ((char *)r->opt.base_url)[url_len - 1] = '\0';
    if (getrandom(&r->id_tag, sizeof r->id_tag, 0) != sizeof r->id_tag)
        r->id_tag = (uint32_t)time(NULL);
    register_metrics(r);
    httpc_options hopt;
    httpc_options_default(&hopt);
    hopt.max_connections = r->opt.max_connections;
    hopt.max_pending = r->opt.max_pending;
    hopt.max_response_bytes = REGISTRY_MAX_RESPONSE;
    r->http = httpc_new(base, &hopt);
    if (r->http == NULL) {
        log_error("registry.init", "problem=\"http client setup failed\"");
        registry_free(r);
        return NULL;
    }
    return r;
}

void registry_free(registry *r)
{
    if (r == NULL)
        return;
    r->closing = true;
    /* Transfers end first (httpc reports them cancelled: UNAVAILABLE, no
     * retry while closing); requests made from any of these callbacks are
     * refused, join the list and end here too. */
    httpc_free(r->http);
    pending_complete_all(&r->reqs, REQ_SHUTDOWN);
    free_options(&r->opt);
    free(r);
}

/* Generic request -----------------------------------------------------------*/

static const char *request_problem(const char *method, const char *path, json_t *body,
                                   const char *key)
{
    if (!method_known(method))
        return "unknown_method";
    if (!path_valid(path))
        return "bad_path";
    if (strcmp(method, "GET") == 0)
        return body ? "body_on_read" : NULL;
    if (key == NULL)
        return "idempotency_key_missing";
    return key_valid(key) ? NULL : "idempotency_key_invalid";
}

void registry_request(registry *r, const char *method, const char *path, json_t *body,
                      const char *idempotency_key, registry_cb *cb, void *arg)
{
    registry_req *q = req_new(r, method, cb, arg);
    if (path_valid(path))
        path_for_log(path, q->log_path, sizeof q->log_path);
    const char *problem = request_problem(method, path, body, idempotency_key);
    if (problem) {
        req_refuse(q, REGISTRY_REJECTED, problem);
        return;
    }
    q->is_read = strcmp(method, "GET") == 0;
    req_start(q, path, body, q->is_read ? NULL : idempotency_key);
}

/* The contract's calls ------------------------------------------------------*/

/* A path assembled from literals and escaped caller-supplied segments; `bad`
 * names the first segment that was missing or too long. */
typedef struct {
    char s[REGISTRY_MAX_PATH];  /* the path so far */
    size_t len;                 /* its length */
    const char *bad;            /* why it cannot be sent, or NULL */
} path_buf;

static void path_add(path_buf *p, const char *text)
{
    size_t n = strlen(text);
    if (p->bad)
        return;
    if (n >= sizeof p->s - p->len) {
        p->bad = "path_too_long";
        return;
    }
    memcpy(p->s + p->len, text, n + 1);
    p->len += n;
}

static void path_segment(path_buf *p, const char *value, size_t max_len, const char *what)
{
    size_t n = value ? strlen(value) : 0;
    if (p->bad)
        return;
    if (n == 0 || n > max_len || strcmp(value, ".") == 0 || strcmp(value, "..") == 0) {
        p->bad = what;
        return;
    }
    char *esc = curl_easy_escape(NULL, value, (int)n);
    if (esc == NULL) {
        p->bad = what;
        return;
    }
    path_add(p, esc);
    curl_free(esc);
}

static void path_page(path_buf *p, int page_size, const char *page_token)
{
    char size[32];
    if (page_size < 0) {
        p->bad = "bad_page_size";
        return;
    }
    if (page_size > 0) {
        snprintf(size, sizeof size, "?page_size=%d", page_size);
        path_add(p, size);
    }
    if (page_token) {
        path_add(p, page_size > 0 ? "&page_token=" : "?page_token=");
        path_segment(p, page_token, REGISTRY_MAX_PAGE_TOKEN, "bad_page_token");
    }
}

static void send_built(registry *r, const char *method, const path_buf *p, json_t *body,
                       const char *key, registry_cb *cb, void *arg)
{
    if (p->bad) {
        req_refuse(req_new(r, method, cb, arg), REGISTRY_REJECTED, p->bad);
        return;
    }
    registry_request(r, method, p->s, body, key, cb, arg);
}

/* Wipes the string values of a body we built, then drops it: jansson keeps
 * its own copy of a PIN, and that copy must not linger in freed memory. */
static void body_release_wiped(json_t *body)
{
    const char *name;
    json_t *value;
    json_object_foreach(body, name, value) {
        if (json_is_string(value))
            explicit_bzero((char *)json_string_value(value), json_string_length(value));
    }
    json_decref(body);
}

static void set_string(json_t *obj, const char *name, const char *value)
{
    if (value)
        json_object_set_new(obj, name, json_string(value));
}

void registry_health(registry *r, registry_cb *cb, void *arg)
{
    registry_request(r, "GET", REGISTRY_HEALTH_PATH, NULL, NULL, cb, arg);
}

void registry_get_settings(registry *r, registry_cb *cb, void *arg)
{
    registry_request(r, "GET", "/v1/settings", NULL, NULL, cb, arg);
}

void registry_get_person(registry *r, const char *ssn, registry_cb *cb, void *arg)
{
    path_buf p = {0};
    path_add(&p, "/v1/persons/");
    path_segment(&p, ssn, REGISTRY_MAX_NUMBER, "bad_ssn");
    send_built(r, "GET", &p, NULL, NULL, cb, arg);
}

void registry_update_contact(registry *r, const char *ssn, const char *mobile,
                             const char *address, const char *idempotency_key,
                             registry_cb *cb, void *arg)
{
    path_buf p = {0};
    path_add(&p, "/v1/persons/");
    path_segment(&p, ssn, REGISTRY_MAX_NUMBER, "bad_ssn");
    if (mobile == NULL && address == NULL)
        p.bad = "nothing_to_update";
    json_t *body = json_object();
    set_string(body, "mobile", mobile);
    set_string(body, "address", address);
    send_built(r, "PATCH", &p, body, idempotency_key, cb, arg);
    json_decref(body);
}

void registry_verify_pin(registry *r, const char *ssn, const char *pin,
                         const char *idempotency_key, registry_cb *cb, void *arg)
{
    path_buf p = {0};
    path_add(&p, "/v1/persons/");
    path_segment(&p, ssn, REGISTRY_MAX_NUMBER, "bad_ssn");
    path_add(&p, "/pin-verifications");
    if (pin == NULL || pin[0] == '\0' || strlen(pin) > REGISTRY_MAX_PIN)
        p.bad = "bad_pin";
    json_t *body = json_object();
    set_string(body, "pin", p.bad ? NULL : pin);
    send_built(r, "POST", &p, body, idempotency_key, cb, arg);
    body_release_wiped(body);
}

static void list_of_person(registry *r, const char *ssn, const char *what, int page_size,
                           const char *page_token, registry_cb *cb, void *arg)
{
    path_buf p = {0};
    path_add(&p, "/v1/persons/");
    path_segment(&p, ssn, REGISTRY_MAX_NUMBER, "bad_ssn");
    path_add(&p, what);
    path_page(&p, page_size, page_token);
    send_built(r, "GET", &p, NULL, NULL, cb, arg);
}

void registry_list_cards(registry *r, const char *ssn, int page_size,
                         const char *page_token, registry_cb *cb, void *arg)
{
    list_of_person(r, ssn, "/cards", page_size, page_token, cb, arg);
}

void registry_list_applications(registry *r, const char *ssn, int page_size,
                                const char *page_token, registry_cb *cb, void *arg)
{
    list_of_person(r, ssn, "/applications", page_size, page_token, cb, arg);
}

void registry_get_card(registry *r, const char *card, registry_cb *cb, void *arg)
{
    path_buf p = {0};
    path_add(&p, "/v1/cards/");
    path_segment(&p, card, REGISTRY_MAX_NUMBER, "bad_card");
    send_built(r, "GET", &p, NULL, NULL, cb, arg);
}

void registry_report_loss(registry *r, const char *card, const char *channel,
                          const char *reference, const char *idempotency_key,
                          registry_cb *cb, void *arg)
{
    path_buf p = {0};
    path_add(&p, "/v1/cards/");
    path_segment(&p, card, REGISTRY_MAX_NUMBER, "bad_card");
    path_add(&p, "/loss-reports");
    json_t *body = json_object();
    set_string(body, "kind", "temporary");
    set_string(body, "channel", channel);
    set_string(body, "reference", reference);
    send_built(r, "POST", &p, body, idempotency_key, cb, arg);
    json_decref(body);
}

void registry_cancel_loss(registry *r, const char *card, const char *report_id,
                          const char *channel, const char *idempotency_key,
                          registry_cb *cb, void *arg)
{
    path_buf p = {0};
    path_add(&p, "/v1/cards/");
    path_segment(&p, card, REGISTRY_MAX_NUMBER, "bad_card");
    path_add(&p, "/loss-reports/");
    path_segment(&p, report_id, REGISTRY_MAX_REPORT_ID, "bad_report_id");
    path_add(&p, "/cancellation");
    json_t *body = json_object();
    set_string(body, "channel", channel);
    send_built(r, "POST", &p, body, idempotency_key, cb, arg);
    json_decref(body);
}

void registry_activate_card(registry *r, const char *card, const char *ssn,
                            const char *new_pin, const char *idempotency_key,
                            registry_cb *cb, void *arg)
{
    path_buf p = {0};
    path_add(&p, "/v1/cards/");
    path_segment(&p, card, REGISTRY_MAX_NUMBER, "bad_card");
    path_add(&p, "/activation");
    if (ssn == NULL || ssn[0] == '\0' || strlen(ssn) > REGISTRY_MAX_NUMBER)
        p.bad = "bad_ssn";
    if (new_pin == NULL || new_pin[0] == '\0' || strlen(new_pin) > REGISTRY_MAX_PIN)
        p.bad = "bad_pin";
    json_t *body = json_object();
    set_string(body, "ssn", ssn);
    set_string(body, "new_pin", p.bad ? NULL : new_pin);
    send_built(r, "POST", &p, body, idempotency_key, cb, arg);
    body_release_wiped(body);
}
