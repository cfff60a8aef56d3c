/* agents — owns the API's routes on its listener, the requests in flight,
 * authentication, the role check, the audit entry and the log line of
 * every request (see agents.h). The endpoints themselves are in
 * sessions.c, callbacks.c, stream.c (the live stream) and overview.c (me,
 * overview, funnel); the console's files are console.c's; what a role may
 * see is view.c's.
 *
 * Every path of the listener reaches dispatch() (a catch-all route). The
 * console's files (/ and /console/NAME) hold no data and are served
 * without a token; every other path is refused after authentication and
 * audited like everything else, so an unauthenticated client learns
 * nothing about which API paths exist. */
#include "agents_int.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mask.h"
#include "mem.h"
#include "metrics.h"
#include "walltime.h"

#define WWW_AUTHENTICATE "Bearer realm=\"cardline-agents\""
#define WWW_AUTHENTICATE_BAD "Bearer realm=\"cardline-agents\", error=\"invalid_token\""

typedef void endpoint_fn(agent_req *r);

/* The API. `collection` and `verb` are path segments after /v1/; `has_id`
 * says whether a segment (session id or callback ref) sits between them. */
typedef struct {
    const char *collection;   /* "sessions", "callbacks", "audit" */
    bool has_id;              /* /v1/collection/{id}… */
    const char *verb;         /* last segment, or NULL */
    enum evhttp_cmd_type method; /* the one method served */
    const char *action;       /* audit action */
    agent_role min_role;      /* lowest role allowed */
    const char *params;       /* accepted query parameters, comma-separated */
    endpoint_fn *fn;          /* the handler */
} endpoint;

static const endpoint endpoints[] = {
    {"sessions", false, NULL, EVHTTP_REQ_GET, "list", AGENT_OBSERVER, "channel,state,queue,limit", agents_ep_list},
    {"sessions", true, NULL, EVHTTP_REQ_GET, "context", AGENT_OBSERVER, "", agents_ep_context},
    {"sessions", true, "transfer", EVHTTP_REQ_POST, "transfer", AGENT_AGENT, "", agents_ep_transfer},
    {"sessions", true, "resume", EVHTTP_REQ_POST, "resume", AGENT_AGENT, "", agents_ep_resume},
    {"sessions", true, "reply", EVHTTP_REQ_POST, "reply", AGENT_AGENT, "", agents_ep_reply},
    {"sessions", true, "release", EVHTTP_REQ_POST, "release", AGENT_AGENT, "", agents_ep_release},
    {"callbacks", false, NULL, EVHTTP_REQ_GET, "callback_list", AGENT_OBSERVER, "state,limit", agents_ep_callbacks},
    {"callbacks", true, "claim", EVHTTP_REQ_POST, "callback_claim", AGENT_AGENT, "", agents_ep_claim},
    {"callbacks", true, "done", EVHTTP_REQ_POST, "callback_done", AGENT_AGENT, "", agents_ep_done},
    {"audit", false, NULL, EVHTTP_REQ_GET, "audit_read", AGENT_SUPERVISOR, "limit", agents_ep_audit},
    {"queue", false, NULL, EVHTTP_REQ_GET, "queue", AGENT_OBSERVER, "offset,limit", agents_ep_queue},
    {"me", false, NULL, EVHTTP_REQ_GET, "me", AGENT_OBSERVER, "", agents_ep_me},
    {"stream", false, NULL, EVHTTP_REQ_GET, "stream", AGENT_OBSERVER, "", agents_ep_stream},
    {"overview", false, NULL, EVHTTP_REQ_GET, "overview", AGENT_SUPERVISOR, "", agents_ep_overview},
    {"funnel", false, NULL, EVHTTP_REQ_GET, "funnel", AGENT_SUPERVISOR, "", agents_ep_funnel},
};

#define ENDPOINT_COUNT (sizeof endpoints / sizeof endpoints[0])

/* Listener paths: all lead to dispatch; the specific ones give the
 * listener's per-route metrics a useful label. */
static const char *const routes[] = {"/v1/sessions", "/v1/sessions/", "/v1/callbacks", "/v1/callbacks/",
                                     "/v1/audit", "/v1/queue", "/v1/me", "/v1/stream", "/v1/overview", "/v1/funnel",
                                     "/console/", "/"};

#define ALL_METHODS                                                                                          \
    (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |               \
     EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS)

bool agents_one_of(const char *s, const char *const *names)
{
    for (size_t i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0)
            return true;
    return false;
}

/* Settings ----------------------------------------------------------------------*/

static const conf_key agents_conf_keys[] = {
    CONF_KEY_BOOL(agents_options, "enabled", enabled, "0"),
    CONF_KEY_ADDRESS(agents_options, "listen", listen_host, listen_port, "127.0.0.1:8081"),
    CONF_KEY(agents_options, "tokens_file", CONF_STRING, tokens_file, "configs/agents.yaml"),
    CONF_KEY_INT(agents_options, "resume_ttl_s", resume_ttl_s, 10, 600, "60"),
    CONF_KEY_INT(agents_options, "audit_max", audit_max, 1000, 10000000, "100000"),
    CONF_KEY(agents_options, "console_dir", CONF_STRING, console_dir, "console"),
    CONF_KEY_INT(agents_options, "max_streams", max_streams, 1, 4096, "256"),
    CONF_KEY_INT(agents_options, "stream_heartbeat_ms", stream_heartbeat_ms, 1000, 300000, "15000"),
    CONF_KEY_INT(agents_options, "stream_poll_ms", stream_poll_ms, 100, 60000, "1000"),
};
const conf_section agents_config = CONF_SECTION("agents", agents_conf_keys);



/* Through the durable lane: an audit entry only the master holds is lost
 * with it, so a short acknowledgement is said and counted. */
static void audit_written(store_status st, const struct redisReply *reply, store_durability d, void *arg)
{
    (void)arg;
    if (st != STORE_OK || reply->type == REDIS_REPLY_ERROR) {
        log_warn("agents.audit_failed", "why=%s", st != STORE_OK ? store_status_name(st) : "redis_error");
    } else if (!d.replicated) {
        log_warn("agents.audit_unreplicated", "acked=%d", d.acked);
        metrics_inc(metrics_counter("cardline_agents_audit_unreplicated_total",
                                    "Audit entries not acknowledged by enough Redis replicas in time.", NULL));
    }
}

void agents_audit_write(agents *a, const char *agent, const char *role, const char *action, const char *session,
                 int status, const char *detail)
{
    char result[8], at[24];
    snprintf(result, sizeof result, "%d", status);
    snprintf(at, sizeof at, "%lld", (long long)walltime_ms());
    const char *argv[] = {"XADD",   AGENTS_AUDIT_STREAM, "MAXLEN", "~",      a->audit_max, "*",       "agent",
                          agent,    "role",              role,     "action", action,       "session", session,
                          "result", result,              "at_ms",  at,       "detail",     detail};
    store_command_durable(a->store, (int)(sizeof argv / sizeof argv[0]), argv, NULL, audit_written, NULL);
}

/* Requests ------------------------------------------------------------------------*/

#define REQ_SHUTDOWN 0 /* a request's completion status from agents_free: no HTTP status */

static void req_answered(pending_op *op, int status);

static agent_req *req_new(agents *a, httpd_request *http)
{
    agent_req *r = mem_calloc(1, sizeof *r);
    r->owner = a;
    r->http = http;
    r->action = "denied";
    TAILQ_INIT(&r->query);
    agents_security_headers(httpd_request_evhttp(http));
    r->started = monotime_now();
    pending_start(&a->pending, &r->op, req_answered);
    return r;
}

static void req_free(agent_req *r)
{
    evhttp_clear_headers(&r->query);
    json_decref(r->body);
    json_decref(r->doc);
    json_decref(r->events);
    json_decref(r->held);
    json_decref(r->result);
    json_decref(r->list.seen);
    json_decref(r->list.items);
    json_decref(r->list.page);
    OPENSSL_cleanse(r->token, sizeof r->token);
    free(r);
}

void agents_req_wait(agent_req *r)
{
    r->waiting++;
}

bool agents_req_back(agent_req *r)
{
    r->waiting--;
    if (r->owner != NULL)
        return true;
    if (r->waiting == 0)
        req_free(r);
    return false;
}

agent_req *agents_req_back_ok(void *arg, store_status st)
{
    agent_req *r = arg;
    if (!agents_req_back(r))
        return NULL;
    if (st != STORE_OK) {
        agents_req_fail_store(r, st);
        return NULL;
    }
    return r;
}

void agents_req_command(agent_req *r, int argc, const char **argv, const size_t *argvlen, store_reply_cb *done)
{
    agents_req_wait(r);
    store_command(r->owner->store, argc, argv, argvlen, done, r);
}

bool agents_req_unmasked(const agent_req *r)
{
    return r->who != NULL && r->who->role == AGENT_SUPERVISOR;
}

void agents_req_detail(agent_req *r, const char *fmt, ...)
{
    size_t used = strlen(r->detail);
    if (used + 1 >= sizeof r->detail)
        return;
    if (used > 0)
        r->detail[used++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail + used, sizeof r->detail - used, fmt, ap);
    va_end(ap);
}

/* The audit entry and the log line of an answered request. */
static void record(agent_req *r, int status)
{
    const char *agent = r->who ? r->who->name : "";
    const char *role = r->who ? agents_auth_role_name(r->who->role) : "";
    agents_audit_write(r->owner, agent, role, r->action, r->target, status, r->detail);
    log_info("agents.request", "agent=%s action=%s session=%s status=%d ms=%.1f", agent[0] ? agent : "-",
             r->action, log_quote(mask_session(r->target).s).s, status, monotime_ms_since(r->started));
}

/* The request's completion: its one answer, the status and body req_end
 * handed over, or "shutting down" from agents_free (REQ_SHUTDOWN). The
 * request is freed now, or by the last callback still out. */
static void req_answered(pending_op *op, int status)
{
    agent_req *r = pending_owner(op, agent_req, op);
    json_t *body = r->reply;
    r->reply = NULL;
    if (status == REQ_SHUTDOWN) {
        status = 503;
        body = json_pack("{s:{s:s, s:s}}", "error", "code", "shutting_down", "message", "The gateway is stopping.");
    }
    record(r, status);
    if (r->http)
        httpd_reply_json(r->http, status, body);
    else
        json_decref(body);
    r->http = NULL;
    r->owner = NULL;
    if (r->waiting == 0)
        req_free(r);
}

/* Answers the request with `body` (taken). */
static void req_end(agent_req *r, int status, json_t *body)
{
    r->reply = body;
    pending_complete(&r->op, status);
}

httpd_request *agents_req_detach(agent_req *r)
{
    httpd_request *http = r->http;
    r->http = NULL;
    return http;
}

void agents_req_reply(agent_req *r, int status, json_t *body)
{
    req_end(r, status, body);
}

void agents_req_fail(agent_req *r, int status, const char *code, const char *message)
{
    req_end(r, status, json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message));
}

void agents_req_fail_store(agent_req *r, store_status st)
{
    agents_req_detail(r, "store=%s", store_status_name(st));
    if (st == STORE_TIMEOUT)
        agents_req_fail(r, 504, "store_timeout", "Redis did not answer in time; try again.");
    else
        agents_req_fail(r, 503, "store_unavailable", "Sessions cannot be reached right now; try again.");
}

const char *agents_req_param(agent_req *r, const char *name)
{
    return evhttp_find_header(&r->query, name);
}

bool agents_req_limit(agent_req *r, int dflt, int max, int *out)
{
    const char *s = agents_req_param(r, "limit");
    char *end = NULL;
    long v = s ? strtol(s, &end, 10) : dflt;
    if (s && (*s == '\0' || *end != '\0' || v < 1 || v > max)) {
        agents_req_fail(r, 400, "bad_limit", "limit must be a whole number within the allowed range.");
        return false;
    }
    *out = (int)v;
    return true;
}

json_t *agents_body_parse(const char *text, size_t len, const char *const *allowed, bool *unknown_field)
{
    json_error_t err;
    json_t *body = json_loadb(len ? text : "{}", len ? len : 2, JSON_REJECT_DUPLICATES, &err);
    *unknown_field = false;
    if (!json_is_object(body)) {
        json_decref(body);
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        if (!agents_one_of(key, allowed)) {
            json_decref(body);
            *unknown_field = true;
            return NULL;
        }
    }
    return body;
}

json_t *agents_req_json_body(agent_req *r, const char *const *allowed)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(httpd_request_evhttp(r->http));
    size_t len = evbuffer_get_length(in);
    const char *text = len ? (const char *)evbuffer_pullup(in, (ev_ssize_t)len) : "";
    bool unknown_field;
    json_t *body = agents_body_parse(text, len, allowed, &unknown_field);
    if (body == NULL) {
        if (unknown_field)
            agents_req_fail(r, 400, "unknown_field", "The body has a field this endpoint does not take.");
        else
            agents_req_fail(r, 400, "bad_json", "The body must be a JSON object.");
        return NULL;
    }
    r->body = body;
    return body;
}

/* Routing ---------------------------------------------------------------------------*/

/* The path split after "/v1/": up to three segments, none empty. */
typedef struct {
    char collection[16];      /* first segment */
    char *id;                 /* second segment, decoded (malloc'd), or NULL */
    char verb[16];            /* third segment, or "" */
    bool valid;               /* the path has that shape */
} path_parts;

static bool copy_segment(const char *s, size_t n, char *out, size_t size)
{
    if (n == 0 || n >= size)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* A session id or ref: printable, no spaces, within the store's limit. */
static char *decode_id(const char *s, size_t n)
{
    char raw[3 * STORE_MAX_ID_LEN + 1];
    if (n == 0 || n >= sizeof raw)
        return NULL;
    memcpy(raw, s, n);
    raw[n] = '\0';
    size_t len = 0;
    char *id = evhttp_uridecode(raw, 0, &len);
    bool ok = id && len == strlen(id) && len >= 1 && len <= STORE_MAX_ID_LEN;
    for (size_t i = 0; ok && i < len; i++)
        ok = (unsigned char)id[i] > ' ' && id[i] != 0x7f;
    if (!ok) {
        free(id);
        return NULL;
    }
    return id;
}

static path_parts split_path(const char *path)
{
    path_parts p = {.valid = false};
    if (path == NULL || strncmp(path, "/v1/", 4) != 0)
        return p;
    const char *s = path + 4, *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (!copy_segment(s, n, p.collection, sizeof p.collection))
        return p;
    if (slash == NULL) {
        p.valid = true;
        return p;
    }
    s = slash + 1;
    slash = strchr(s, '/');
    n = slash ? (size_t)(slash - s) : strlen(s);
    if ((p.id = decode_id(s, n)) == NULL)
        return p;
    if (slash == NULL) {
        p.valid = true;
        return p;
    }
    s = slash + 1;
    p.valid = strchr(s, '/') == NULL && copy_segment(s, strlen(s), p.verb, sizeof p.verb);
    return p;
}

static bool same_shape(const endpoint *e, const path_parts *p)
{
    return strcmp(e->collection, p->collection) == 0 && e->has_id == (p->id != NULL) &&
           strcmp(e->verb ? e->verb : "", p->verb) == 0;
}

/* The endpoint for the path and method; *shape_found tells a 405 from a 404. */
static const endpoint *find_endpoint(const path_parts *p, enum evhttp_cmd_type method, bool *shape_found)
{
    *shape_found = false;
    for (size_t i = 0; p->valid && i < ENDPOINT_COUNT; i++) {
        if (!same_shape(&endpoints[i], p))
            continue;
        *shape_found = true;
        if (endpoints[i].method == method)
            return &endpoints[i];
    }
    return NULL;
}

static const char *method_name(enum evhttp_cmd_type m)
{
    return m == EVHTTP_REQ_GET ? "GET" : m == EVHTTP_REQ_POST ? "POST" : "OTHER";
}

/* Every query parameter is one the endpoint takes (given once). */
static bool params_ok(agent_req *r, const char *accepted)
{
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &r->query, next) {
        size_t n = strlen(kv->key);
        const char *at = strstr(accepted, kv->key);
        bool listed = false;
        for (; at && !listed; at = strstr(at + 1, kv->key))
            listed = (at == accepted || at[-1] == ',') && (at[n] == ',' || at[n] == '\0');
        if (!listed || n == 0)
            return false;
        for (struct evkeyval *o = TAILQ_FIRST(&r->query); o != kv; o = TAILQ_NEXT(o, next))
            if (strcmp(o->key, kv->key) == 0)
                return false;
    }
    return true;
}

static void refuse_unauthenticated(agent_req *r, auth_result why)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(httpd_request_evhttp(r->http));
    evhttp_add_header(out, "WWW-Authenticate", why == AUTH_MISSING ? WWW_AUTHENTICATE : WWW_AUTHENTICATE_BAD);
    agents_req_detail(r, "why=%s", agents_auth_result_name(why));
    agents_req_fail(r, 401, why == AUTH_EXPIRED ? "token_expired" : "unauthorized",
             why == AUTH_EXPIRED ? "The token has expired." : "A valid bearer token is required.");
}

static void set_allow(agent_req *r, const path_parts *p)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(httpd_request_evhttp(r->http));
    for (size_t i = 0; i < ENDPOINT_COUNT; i++)
        if (same_shape(&endpoints[i], p))
            evhttp_add_header(out, "Allow", method_name(endpoints[i].method));
}

/* Authenticated: the endpoint, the role, the parameters, then the handler. */
static void route(agent_req *r, const path_parts *p, enum evhttp_cmd_type method, const char *query)
{
    bool shape_found;
    const endpoint *e = find_endpoint(p, method, &shape_found);
    if (e == NULL) {
        agents_req_detail(r, "why=%s", shape_found ? "method" : "no_endpoint");
        if (shape_found) {
            set_allow(r, p);
            agents_req_fail(r, 405, "method_not_allowed", "The path does not accept this method.");
        } else {
            agents_req_fail(r, 404, "not_found", "No such endpoint.");
        }
        return;
    }
    if (p->id && strcmp(p->collection, "sessions") == 0)
        snprintf(r->target, sizeof r->target, "%s", p->id);
    else if (p->id)
        snprintf(r->ref, sizeof r->ref, "%.*s", (int)sizeof r->ref - 1, p->id);
    if (r->who->role < e->min_role) {
        agents_req_detail(r, "why=role tried=%s", e->action);
        agents_req_fail(r, 403, "forbidden", "The agent's role does not allow this.");
        return;
    }
    r->action = e->action;
    if (evhttp_parse_query_str(query ? query : "", &r->query) != 0 || !params_ok(r, e->params)) {
        agents_req_fail(r, 400, "bad_query", "The query has a parameter this endpoint does not take.");
        return;
    }
    e->fn(r);
}

static void dispatch(httpd_request *http, void *arg)
{
    agents *a = arg;
    struct evhttp_request *ev = httpd_request_evhttp(http);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    if (agents_console_path(evhttp_uri_get_path(uri))) {
        agents_console_serve(a, http, evhttp_uri_get_path(uri));
        return;
    }
    agent_req *r = req_new(a, http);
    path_parts p = split_path(evhttp_uri_get_path(uri));
    const char *header = evhttp_find_header(evhttp_request_get_input_headers(ev), "Authorization");
    auth_result ar = agents_auth_check(a->auth, header, time(NULL), &r->who);
    if (ar != AUTH_OK)
        refuse_unauthenticated(r, ar);
    else
        route(r, &p, evhttp_request_get_command(ev), evhttp_uri_get_query(uri));
    free(p.id);
}

/* Lifecycle -------------------------------------------------------------------------*/

static bool options_ok(const agents_options *opt)
{
    char buf[96];
    return opt->engine && opt->store && opt->outbox && opt->tokens_file && opt->resume_host && opt->console_dir &&
           opt->resume_port > 0 && opt->resume_port <= 65535 &&
           conf_section_problem(&agents_config, opt, buf, sizeof buf) == NULL;
}

static auth_table *load_tokens(const char *path)
{
    agents_errors errs;
    auth_table *t = agents_auth_load(path, &errs);
    for (size_t i = 0; i < errs.count; i++)
        log_error("agents.tokens_invalid", "error=%s", log_quote(errs.lines[i]).s);
    agents_errors_free(&errs);
    return t;
}

agents *agents_new(httpd *http, const agents_options *opt)
{
    if (!options_ok(opt)) {
        log_error("agents.option_invalid", "resume_ttl_s=%d audit_max=%d", opt->resume_ttl_s, opt->audit_max);
        return NULL;
    }
    auth_table *t = load_tokens(opt->tokens_file);
    if (t == NULL)
        return NULL;
    agents *a = mem_calloc(1, sizeof *a);
    *a = (agents){.engine = opt->engine, .store = opt->store, .outbox = opt->outbox,
                  .auth = t, .resume_ttl_s = opt->resume_ttl_s, .max_streams = opt->max_streams,
                  .heartbeat_ms = opt->stream_heartbeat_ms, .poll_ms = opt->stream_poll_ms,
                  .console_dir = mem_strdup(opt->console_dir),
                  .node_name = mem_strdup(opt->node_name ? opt->node_name : "")};
    pending_set_init(&a->pending, httpd_base(http));
    snprintf(a->audit_max, sizeof a->audit_max, "%d", opt->audit_max);
    bool v6 = strchr(opt->resume_host, ':') != NULL;
    snprintf(a->resume_at, sizeof a->resume_at, "%s%s%s:%d", v6 ? "[" : "", opt->resume_host, v6 ? "]" : "",
             opt->resume_port);
    if (!agents_streams_start(a, httpd_base(http))) {
        log_error("agents.stream_timer_failed", "why=%s", log_quote("event_new").s);
        agents_free(a);
        return NULL;
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (httpd_route(http, routes[i], ALL_METHODS, dispatch, a) != 0) {
            log_error("agents.route_failed", "path=%s", routes[i]);
            agents_free(a);
            return NULL;
        }
    }
    log_info("agents.start", "port=%d agents=%zu tokens_file=%s", httpd_port(http), agents_auth_count(t),
             log_quote(opt->tokens_file).s);
    return a;
}

void agents_free(agents *a)
{
    if (a == NULL)
        return;
    agents_streams_stop(a);
    pending_complete_all(&a->pending, REQ_SHUTDOWN);
    agents_auth_free(a->auth);
    free((char *)a->console_dir);
    free((char *)a->node_name);
    free(a);
}
